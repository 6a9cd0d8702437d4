"""Real judged query-product sets (e.g. Home Depot) into the PRODUCTS / JUDGMENTS contracts.

Input files: ``products`` = ``item_id,title[,category]`` and ``judgments`` = ``query,item_id,relevance``
(the Kaggle column names ``product_uid``, ``product_title``, ``search_term`` are accepted too).
Reading accounts for every line (``csv_lines.py``): each non-blank line below the header is one row,
and a line that does not parse (an unterminated quote, a field over 128 KiB, a NUL byte, bytes that
are not UTF-8 in a UTF-8 file, more fields than the header) is still a row, carrying a
``_parse_error`` note that validation quarantines as ``row:parses``; every row carries its file line
in ``_line``. BOMs (UTF-8/16/32), CRLF line ends and latin-1 files read as they should. A header
that cannot be used (two columns meaning the same thing, e.g. ``item_id`` and its Kaggle alias
``product_uid``; a required column missing) fails with the file and line. Rows are then strict:
every row goes through ``validate_tables`` with the same machinery as the marketplace tables, so an
empty title, a duplicate ``item_id``, a relevance outside [1, 3] or not a number, or a judgment for
an unknown product lands in quarantine with its reasons. Rows in = good + quarantined.

``split_judgments`` makes a deterministic query-disjoint split (queries compared lower-cased with
whitespace collapsed); ``relevant_pairs`` gives query -> relevant item ids for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrecall.data import schema as S
from genrecall.data.csv_lines import CsvFormatError, read_csv_lines
from genrecall.data.text import normalize_query
from genrecall.data.validate import (
    PARSE_ERROR_COLUMN,
    ValidateConfig,
    ValidationError,
    ValidationReport,
    validate_tables,
)

ALIASES = {"product_uid": "item_id", "product_title": "title", "search_term": "query"}  # Kaggle names
LINE_COLUMN = "_line"  # the row's line in the file it was read from (kept in the quarantine)


@dataclass
class JudgedSet:
    """A validated judged set: contract-typed good rows, quarantined rows and the report."""

    products: pd.DataFrame  # PRODUCTS contract
    judgments: pd.DataFrame  # JUDGMENTS contract
    quarantine: dict[str, pd.DataFrame]  # "products"/"judgments" -> raw rows + source_row + reasons
    report: ValidationReport


@dataclass
class JudgedSplit:
    """A query-disjoint split of judgments."""

    train: pd.DataFrame
    test: pd.DataFrame


def _clean_text(v: object) -> object:
    """Strip and collapse whitespace (incl. non-breaking spaces); ``""`` stays ``""`` (caught later)."""
    return " ".join(v.split()) if isinstance(v, str) else v


def read_judged_csv(path: str | Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """A judged CSV as strings, whitespace-cleaned, with exactly ``columns`` (+ ``_parse_error``, ``_line``).

    One row per non-blank line below the header, nothing merged or dropped (see the module
    docstring). A line with more fields than the header keeps its first fields and gets a
    ``_parse_error``; a short line has its missing trailing fields empty. A ``_parse_error`` column in
    the file (``genrecall split-judged`` writes one) is carried over, so a malformed line of the
    original file stays malformed after a split. ``optional`` columns may be absent (then null).
    """
    f = read_csv_lines(path)
    names = [c.strip().lower() for c in f.header]
    header = [ALIASES.get(c, c) for c in names]
    seen: dict[str, str] = {}
    for raw, c in zip(names, header):
        if c and c in seen:
            also = f" (an alias of {c!r})" if raw != c or seen[c] != c else ""
            raise CsvFormatError(f"{path}: line 1 (the header): columns {seen[c]!r} and {raw!r} both give {c!r}{also}")
        seen[c] = raw
    missing = [c for c in columns if c not in seen and c not in optional]
    if missing:
        raise CsvFormatError(
            f"{path}: line 1 (the header): no {', '.join(map(repr, missing))} column "
            f"(found {f.header}; expected {', '.join(columns)})"
        )
    width = len(header)
    carried = header.index(PARSE_ERROR_COLUMN) if PARSE_ERROR_COLUMN in header else None
    records, errors = [], []
    for rec in f.records:
        notes = [f"line {rec.line}: {rec.error}"] if rec.error else []
        if len(rec.fields) > width:
            notes.append(f"line {rec.line}: {len(rec.fields)} fields for {width} columns; extra: {rec.fields[width:]}")
        fields = (rec.fields + [""] * width)[:width]  # short rows: missing trailing fields
        if carried is not None and fields[carried].strip():
            notes.insert(0, fields[carried].strip())
        errors.append("; ".join(notes) or None)
        records.append(fields)
    df = pd.DataFrame(records, columns=[c or f"_unnamed_{i}" for i, c in enumerate(header)], dtype=object)
    for c in columns:
        if c not in df.columns:
            df[c] = None
    df = df[list(columns)].apply(lambda col: col.map(lambda v: _clean_text(v) or None))  # empty = missing
    df[PARSE_ERROR_COLUMN] = errors
    df[LINE_COLUMN] = np.array([r.line for r in f.records], dtype=np.int64)
    return df


def read_products(path: str | Path) -> pd.DataFrame:
    """Raw products (``item_id,title[,category]``), cleaned but not yet validated."""
    return read_judged_csv(path, ("item_id", "title", "category"), optional=("category",))  # empty category = unknown


def read_judgments(path: str | Path) -> pd.DataFrame:
    """Raw judgments (``query,item_id,relevance``), cleaned but not yet validated."""
    return read_judged_csv(path, ("query", "item_id", "relevance"))


def load_judged(
    products_path: str | Path,
    judgments_path: str | Path,
    *,
    cfg: ValidateConfig | None = None,
    raise_on_fail: bool = True,
) -> JudgedSet:
    """Read and validate a judged set; raises ``ValidationError`` past the bad-share threshold."""
    res = validate_tables({"products": read_products(products_path), "judgments": read_judgments(judgments_path)}, cfg)
    if raise_on_fail and not res.report.passed:
        raise ValidationError(res.report)
    return JudgedSet(
        products=res.good["products"], judgments=res.good["judgments"], quarantine=res.quarantine, report=res.report
    )


def write_raw(products_path: str | Path, judgments_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the cleaned, unvalidated CSVs as ``products.parquet``/``judgments.parquet`` (string
    columns) for the validate stage, which then types and checks them like any other source."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec, df in ((S.PRODUCTS, read_products(products_path)), (S.JUDGMENTS, read_judgments(judgments_path))):
        path = out / spec.filename()
        df = df.drop(columns=[LINE_COLUMN])  # the parse notes name their lines; the validate stage numbers rows
        df.astype(object).where(df.notna(), None).to_parquet(path, index=False)
        paths.append(path)
    return paths


def split_judgments(judgments: pd.DataFrame, test_share: float = 0.5, seed: int = 0) -> JudgedSplit:
    """Split by query so no (normalised) query is in both halves; deterministic in (queries, seed).

    ``round(test_share * n_queries)`` distinct queries go to test, drawn by a seeded permutation of
    the sorted normalised queries (row order and pandas version do not matter).
    """
    if not 0.0 <= test_share <= 1.0:
        raise ValueError(f"test_share must be in [0, 1], got {test_share}")
    keys = judgments["query"].map(normalize_query)
    uniq = np.array(sorted(keys.unique()), dtype=object)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    test_keys = set(uniq[perm[: round(test_share * len(uniq))]])
    in_test = keys.isin(test_keys).to_numpy()
    return JudgedSplit(train=judgments[~in_test].reset_index(drop=True), test=judgments[in_test].reset_index(drop=True))


def relevant_pairs(judgments: pd.DataFrame, threshold: float = 2.5) -> dict[str, np.ndarray]:
    """query -> sorted int64 ids of the items judged relevant (``relevance >= threshold``).

    Queries with no relevant item are left out (they cannot score a hit).
    """
    rel = judgments[judgments["relevance"].astype(float) >= threshold]
    return {q: np.sort(g["item_id"].to_numpy(dtype=np.int64)) for q, g in rel.groupby("query", sort=True)}
