"""Text normalisation shared by every place that compares or encodes queries."""

from __future__ import annotations


def normalize_query(query: str) -> str:
    """The form two queries are compared in: lower-case, whitespace collapsed."""
    return " ".join(str(query).lower().split())
