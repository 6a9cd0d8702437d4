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


def _pandas_upsert(live: pd.DataFrame, delta: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    both = pd.concat([live, delta], ignore_index=True)
    return both.drop_duplicates(key, keep="last").reset_index(drop=True)


def test_upsert_table_matches_concat_and_keep_last(tmp_path) -> None:
    """The daily merge in Arrow gives the rows and order a pandas concat + drop_duplicates would:
    live rows in place, a delta row replacing the live one with its key, list columns intact."""
    import numpy as np

    from genrecall.data.schema import PRICE_EVENTS, upsert_table

    ts = pd.Timestamp("2026-01-01", tz="UTC")
    rng = np.random.default_rng(0)

    def requests(ids: list[int], tag: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "request_id": ids,
                "ts": [ts] * len(ids),
                "user_id": [f"u{i}" for i in ids],
                "query": [f"{tag} {i}" for i in ids],
                "query_kind": ["noun"] * len(ids),
                "exposed": [list(rng.integers(0, 9, 3)) for _ in ids],
                "clicked": [[] for _ in ids],
                "purchased": [[] for _ in ids],
            }
        )

    live, delta = requests([5, 1, 9, 3], "old"), requests([9, 11, 2, 11], "new")  # 9 replaced, 11 twice
    write_table(live, REQUESTS, tmp_path / "live")
    write_table(delta, REQUESTS, tmp_path / "delta")
    upsert_table(REQUESTS, tmp_path / "live", tmp_path / "delta", tmp_path / "out")
    got = read_table(REQUESTS, tmp_path / "out")
    want = _pandas_upsert(live, delta, ["request_id"])
    assert got["request_id"].tolist() == [5, 1, 3, 9, 2, 11]
    assert got["query"].tolist() == want.set_index("request_id").loc[got["request_id"], "query"].tolist()
    assert got["query"].tolist()[3:] == ["new 9", "new 2", "new 11"]
    assert got["exposed"].tolist() == want.set_index("request_id").loc[got["request_id"], "exposed"].tolist()

    prices = pd.DataFrame({"item_id": [1, 1, 2], "ts": [ts, ts + pd.Timedelta("1D"), ts], "price": [1.0, 2.0, 3.0]})
    new_prices = pd.DataFrame({"item_id": [1, 3], "ts": [ts, ts], "price": [9.0, 4.0]})  # (1, ts) replaced
    write_table(prices, PRICE_EVENTS, tmp_path / "live")
    write_table(new_prices, PRICE_EVENTS, tmp_path / "delta")
    upsert_table(PRICE_EVENTS, tmp_path / "live", tmp_path / "delta", tmp_path / "out", sort_by_key=True)
    got = read_table(PRICE_EVENTS, tmp_path / "out")
    assert list(zip(got["item_id"], got["price"])) == [(1, 9.0), (1, 2.0), (2, 3.0), (3, 4.0)]


def test_upsert_table_without_delta_copies_live(tmp_path) -> None:
    from genrecall.data.schema import upsert_table

    ts = pd.Timestamp("2026-01-01", tz="UTC")
    live = pd.DataFrame(
        {
            "request_id": [1],
            "ts": [ts],
            "user_id": [None],
            "query": ["q"],
            "query_kind": ["noun"],
            "exposed": [[1]],
            "clicked": [[1]],
            "purchased": [[]],
        }
    )
    write_table(live, REQUESTS, tmp_path / "live")
    upsert_table(REQUESTS, tmp_path / "live", tmp_path / "nothing", tmp_path / "out")
    pd.testing.assert_frame_equal(read_table(REQUESTS, tmp_path / "out"), read_table(REQUESTS, tmp_path / "live"))
