"""What the search page offers to try: a few known users and frequent queries, chosen at package time.

The bundle carries them (``examples.json``) so the page shows users whose history the feature store
holds and queries the catalog answers, without the server reading the log (``bundle.EXAMPLES``). Chosen from the search
log of the data the bundle was built from:

- users: those with the most clicked requests (ties by id), so a personalised prompt has history;
- queries: the most frequent queries that led to a click (ties alphabetically).

Deterministic for the same log. A log without users or clicks gives empty lists (the page then
offers anonymous search only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrecall.data.schema import REQUESTS


@dataclass(frozen=True)
class Showcase:
    users: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Showcase:
        d = d or {}
        return cls([str(u) for u in d.get("users", [])], [str(q) for q in d.get("queries", [])])


def _top(table: pa.Table, key: str, weight: str, n: int) -> list[str]:
    """The ``n`` values of ``key`` with the largest summed ``weight`` (ties by value, ascending)."""
    if table.num_rows == 0 or n <= 0:
        return []
    sums = table.group_by(key).aggregate([(weight, "sum")])
    order = pc.sort_indices(sums, sort_keys=[(f"{weight}_sum", "descending"), (key, "ascending")])
    return [str(v) for v in sums.take(order[:n]).column(key).to_pylist()]


def showcase(data_dir: str | Path, *, users: int = 5, queries: int = 8) -> Showcase:
    """Pick the page's example users and queries from ``<data_dir>/requests.parquet`` (empty without it)."""
    path = Path(data_dir) / REQUESTS.filename()
    if not path.exists():
        return Showcase()
    log = pq.read_table(path, columns=["user_id", "query", "clicked"])
    clicked = pc.fill_null(pc.list_value_length(log.column("clicked")), 0)
    log = pa.table(
        {
            "user_id": log.column("user_id"),
            "query": log.column("query"),
            "hit": pc.cast(pc.greater(clicked, 0), pa.int64()),
        }
    )
    hits = log.filter(pc.equal(log.column("hit"), 1))
    known = hits.filter(pc.is_valid(hits.column("user_id")))
    named = hits.filter(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(hits.column("query"))), 0))
    return Showcase(
        _top(known.select(["user_id", "hit"]), "user_id", "hit", users),
        _top(named.select(["query", "hit"]), "query", "hit", queries),
    )
