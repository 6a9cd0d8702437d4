"""Corrupted marketplace rows (hypothesis): whatever rows are broken, and however, each is quarantined
with a reason, the others pass untouched, and rows in = good + quarantined. A damaged Parquet file
fails with its path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrecall.data import schema as S
from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
from genrecall.data.validate import ValidateConfig, validate_tables
from genrecall.pipeline.validate import read_raw, validate

N = 60
# column -> values that break the items contract (each must make the row bad on its own)
CORRUPTIONS: dict[str, list[object]] = {
    "item_id": ["abc", None, "1.5"],
    "title": ["", "   ", "x" * 600, None],
    "price": ["free", "-3", "0", None],
    "listed_at": ["yesterday", None, "1970-01-01T00:00:00+00:00", "9999-01-01T00:00:00+00:00"],
    "category_id": ["999999", "shoes"],
    "duplicate_id": [0],  # the item_id of row 0: the later row is the duplicate
}


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    m = generate_marketplace(MarketplaceConfig(preset="tiny", seed=11))
    return m.items.head(N).reset_index(drop=True), m.categories


def _corrupt(items: pd.DataFrame, edits: dict[int, tuple[str, object]], path: Path) -> None:
    """Write ``items`` with ``edits`` (row -> (column, value)) as Parquet, touched columns as strings."""
    df = items.astype(object).where(items.notna(), None)
    for row, (col, value) in edits.items():
        if col == "duplicate_id":
            col, value = "item_id", items["item_id"].iloc[0]
        df.at[row, col] = value
    touched = {("item_id" if c == "duplicate_id" else c) for c, _ in edits.values()}
    arrays = {}
    for col in df.columns:
        if col in touched:
            vals = [None if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v)) for v in df[col]]
            arrays[col] = pa.array(vals, type=pa.string())
        else:
            arrays[col] = pa.array(items[col], from_pandas=True)
    pq.write_table(pa.table(arrays), path)


edits_strategy = st.dictionaries(
    keys=st.integers(min_value=1, max_value=N - 1),  # row 0 stays clean: it is the duplicate's original
    values=st.sampled_from(sorted(CORRUPTIONS)).flatmap(
        lambda c: st.tuples(st.just(c), st.sampled_from(CORRUPTIONS[c]))
    ),
    min_size=1,
    max_size=10,
)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits_strategy)
def test_corrupted_rows_are_quarantined_never_lost(market, tmp_path_factory, edits) -> None:
    items, categories = market
    path = tmp_path_factory.mktemp("corrupt") / "items.parquet"
    _corrupt(items, edits, path)
    res = validate_tables({"items": read_raw(path)}, reference={"categories": categories})
    rep = res.report.tables["items"]
    assert rep.rows_in == N == rep.good + rep.quarantined
    q = res.quarantine["items"]
    assert sorted(q["source_row"]) == sorted(edits), {int(r): list(x) for r, x in zip(q["source_row"], q["reasons"])}
    assert all(len(r) > 0 for r in q["reasons"])
    clean = [i for i in range(N) if i not in edits]
    assert list(res.good["items"]["item_id"]) == list(items["item_id"].iloc[clean])
    pd.testing.assert_frame_equal(
        res.good["items"].reset_index(drop=True),
        items.iloc[clean][S.ITEMS.columns].reset_index(drop=True),
        check_dtype=False,
    )


def test_a_damaged_parquet_file_fails_with_its_path(market, tmp_path: Path) -> None:
    items, categories = market
    raw = tmp_path / "raw"
    raw.mkdir()
    S.write_table(items, S.ITEMS, raw)
    S.write_table(categories, S.CATEGORIES, raw)
    path = raw / S.ITEMS.filename()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated mid-file
    with pytest.raises(ValueError, match=r"items.parquet: not a readable Parquet file"):
        validate(ValidateConfig(), raw, tmp_path / "ok", tmp_path / "q", tmp_path / "v.json")
    assert not (tmp_path / "ok").exists() or not any((tmp_path / "ok").iterdir()), "nothing half-written"
