from __future__ import annotations

import pandas as pd
import pytest

from genrecall.data.schema import ITEMS, REQUESTS, read_table, sid_from_str, sid_to_str, write_table


def test_write_read_round_trip_keeps_types_and_lists(tmp_path) -> None:
    ts = pd.Timestamp("2026-01-01", tz="UTC")
    req = pd.DataFrame(
        {
            "request_id": [1, 2],
            "ts": [ts, ts],
            "user_id": ["u1", None],
            "query": ["red kettle", "kettle"],
            "query_kind": ["attr_noun", "synonym"],
            "exposed": [[1, 2, 3], [4]],
            "clicked": [[2], []],
            "purchased": [[], []],
        }
    )
    write_table(req, REQUESTS, tmp_path)
    back = read_table(REQUESTS, tmp_path)
    assert list(back.columns) == REQUESTS.columns
    assert back["exposed"].tolist() == [[1, 2, 3], [4]]
    assert back["user_id"].isna().tolist() == [False, True]


def test_missing_column_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="missing columns"):
        write_table(pd.DataFrame({"item_id": [1]}), ITEMS, tmp_path)
    with pytest.raises(FileNotFoundError, match="items"):
        read_table(ITEMS, tmp_path)


def test_sid_string_round_trip() -> None:
    assert sid_to_str((12, 5, 33, 0)) == "12-5-33-0"
    assert sid_from_str("12-5-33-0") == (12, 5, 33, 0)
    with pytest.raises(ValueError):
        sid_from_str("12-x")


def test_arrow_backed_list_columns_read_back(tmp_path) -> None:
    """Frames whose list columns are Arrow-backed (as the marketplace builds them) round-trip."""
    import pyarrow as pa

    from genrecall.data.schema import CATEGORIES

    df = pd.DataFrame(
        {
            "category_id": [1],
            "parent_id": [None],
            "level": [1],
            "name": ["Home"],
            "path": ["Home"],
            "noun": [None],
            "synonyms": pd.Series([["house"]], dtype=pd.ArrowDtype(pa.list_(pa.string()))),
        }
    )
    write_table(df, CATEGORIES, tmp_path)
    assert read_table(CATEGORIES, tmp_path)["synonyms"].tolist() == [["house"]]
