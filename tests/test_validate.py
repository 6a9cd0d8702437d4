"""Validation + quarantine on small hand-built marketplace tables (real GX, ephemeral context)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import genrecall.data.marketplace as mp
from genrecall.data import schema as S
from genrecall.data.validate import ValidateConfig, ValidationError, validate_tables
from genrecall.pipeline.validate import validate

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def clean_tables() -> dict[str, pd.DataFrame]:
    """A consistent tiny marketplace: 3 categories, 8 items, 3 users, 6 requests."""
    categories = pd.DataFrame(
        {
            "category_id": [1, 2, 3],
            "parent_id": [None, 1, 1],
            "level": [1, 2, 2],
            "name": ["Kitchen", "Kettles", "Pans"],
            "path": ["Kitchen", "Kitchen > Kettles", "Kitchen > Pans"],
            "noun": [None, "kettle", "pan"],
            "synonyms": [[], ["boiler"], ["skillet"]],
        }
    )
    n = 8
    items = pd.DataFrame(
        {
            "item_id": list(range(100, 100 + n)),
            "title": [f"Acme steel kettle {i}" for i in range(n)],
            "brand": ["Acme"] * n,
            "category_id": [2, 2, 3, 3, 2, 3, None, 2],
            "color": ["red"] * n,
            "material": ["steel"] * n,
            "size": ["1l"] * n,
            "style": ["modern"] * n,
            "price": [10.0 + i for i in range(n)],
            "listed_at": [T0] * n,
            "delisted_at": [None] * n,
            "updated_at": [T0 + pd.Timedelta(days=1)] * n,
        }
    )
    price_events = pd.DataFrame(
        {"item_id": [100, 100, 101], "ts": [T0, T0 + pd.Timedelta(hours=1), T0], "price": [10.0, 9.5, 11.0]}
    )
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "gender": ["f", "m", "u"],
            "age_band": ["18-24", "25-34", "35-44"],
            "price_tier": ["low", "mid", "high"],
            "brand_affinity": [["Acme"], [], ["Acme"]],
            "category_interests": [[1], [1], []],
            "created_at": [T0] * 3,
        }
    )
    requests = pd.DataFrame(
        {
            "request_id": list(range(1, 7)),
            "ts": [T0 + pd.Timedelta(hours=h) for h in range(6)],
            "user_id": ["u1", None, "u2", "u3", None, "u1"],
            "query": ["kettle", "red kettle", "pan", "steel pan", "kettle acme", "skillet"],
            "query_kind": ["synonym"] * 6,
            "exposed": [[100, 101, 102], [101, 103], [102, 103], [103, 104], [100, 105], [104, 105]],
            "clicked": [[100], [], [102, 103], [104], [100], []],
            "purchased": [[100], [], [103], [], [], []],
        }
    )
    ground_truth = pd.DataFrame(
        {
            "request_id": list(range(1, 7)),
            "intent_category_id": [2, 2, 3, 3, 2, 3],
            "relevant": [[100, 101], [101], [102], [103], [100], [104]],
        }
    )
    return {
        "categories": categories,
        "items": items,
        "price_events": price_events,
        "users": users,
        "requests": requests,
        "ground_truth": ground_truth,
    }


def check_split(res, table: str, bad_rows: dict[int, str], clean: pd.DataFrame) -> None:
    """Rows in == good + quarantined; quarantined rows are exactly ``bad_rows`` with their reasons."""
    q, good = res.quarantine[table], res.good[table]
    assert len(good) + len(q) == len(clean)
    assert sorted(q["source_row"]) == sorted(bad_rows)
    for row, reason in bad_rows.items():
        assert reason in list(q.loc[q["source_row"] == row, "reasons"].iloc[0])
    keep = [i for i in range(len(clean)) if i not in bad_rows]
    key = S.ALL_TABLES[table].key[0]
    assert list(good[key]) == [clean[key].iloc[i] for i in keep]
    rep = res.report.tables[table]
    assert (rep.rows_in, rep.good, rep.quarantined) == (len(clean), len(keep), len(bad_rows))


def test_clean_tables_validate_with_nothing_quarantined():
    res = validate_tables(clean_tables())
    assert res.report.passed
    for name, t in res.report.tables.items():
        assert t.quarantined == 0, (name, res.quarantine[name])
        assert t.skipped == []
    # good rows carry the contract types: they convert to the Arrow schema without loss
    for name, df in res.good.items():
        assert S.to_arrow(df, S.ALL_TABLES[name]).schema == S.ALL_TABLES[name].schema


@pytest.mark.parametrize(
    "col,row,value,reason",
    [
        ("item_id", 2, None, "item_id:not_null"),
        ("title", 3, None, "title:not_null"),
        ("title", 3, "   ", "title:not_blank"),
        ("title", 3, "x" * 600, "title:max_length"),
        ("price", 4, -3.0, "price:positive"),
        ("price", 4, "cheap", "price:type"),
        ("price", 4, None, "price:not_null"),
        ("category_id", 5, 99, "category_id:in_tree"),
        ("listed_at", 1, "not a date", "listed_at:type"),
        ("listed_at", 1, pd.Timestamp("1970-01-01", tz="UTC"), "listed_at:in_range"),
        ("delisted_at", 1, T0 - pd.Timedelta(days=3), "delisted_at:not_before_listed_at"),
    ],
)
def test_corrupted_item_is_quarantined_and_good_rows_survive(col, row, value, reason):
    tables = clean_tables()
    items = tables["items"].astype({col: object})
    items.at[row, col] = value
    res = validate_tables({"categories": tables["categories"], "items": items})
    check_split(res, "items", {row: reason}, items)
    assert res.report.tables["items"].reasons == {reason: 1} or reason.endswith(":type")


def test_duplicate_key_keeps_the_first_and_quarantines_the_copy():
    tables = clean_tables()
    items = pd.concat([tables["items"], tables["items"].iloc[[3]]], ignore_index=True)
    res = validate_tables({"categories": tables["categories"], "items": items})
    check_split(res, "items", {8: "item_id:unique"}, items)
    assert list(res.good["items"]["item_id"]) == list(tables["items"]["item_id"])


def test_compound_key_duplicate_in_price_events():
    tables = clean_tables()
    pe = pd.concat([tables["price_events"], tables["price_events"].iloc[[1]]], ignore_index=True)
    res = validate_tables({"items": tables["items"], "price_events": pe})
    check_split(res, "price_events", {3: "item_id+ts:unique"}, pe)


@pytest.mark.parametrize(
    "col,row,value,reason",
    [
        ("clicked", 0, [100, 999], "clicked:subset_of_exposed"),
        ("purchased", 0, [101], "purchased:subset_of_clicked"),
        ("exposed", 3, [103, 104, 555], "exposed:known_items"),
        ("exposed", 3, [103, 104, 104], "exposed:distinct"),
        ("exposed", 3, [103, "x"], "exposed:type"),
        ("exposed", 3, None, "exposed:not_null"),
        ("user_id", 2, "u404", "user_id:known_user"),
        ("request_id", 4, None, "request_id:not_null"),
        ("ts", 5, "2024-13-45T99:00", "ts:type"),
        ("query", 1, "", "query:not_blank"),
    ],
)
def test_corrupted_request_is_quarantined(col, row, value, reason):
    tables = clean_tables()
    req = tables["requests"].astype({col: object})
    req.at[row, col] = value
    res = validate_tables({"items": tables["items"], "users": tables["users"], "requests": req})
    check_split(res, "requests", {row: reason}, req)


@pytest.mark.parametrize(
    "table,col,row,value,reason",
    [
        ("categories", "parent_id", 2, 42, "parent_id:in_tree"),
        ("categories", "level", 1, 7, "level:in_1_2_3"),
        ("users", "gender", 1, "x", "gender:in_set"),
        ("users", "user_id", 2, "u1", "user_id:unique"),
        ("users", "category_interests", 0, [1, 99], "category_interests:in_tree"),
        ("price_events", "price", 2, 0.0, "price:positive"),
        ("price_events", "item_id", 2, 31337, "item_id:known_item"),
        ("ground_truth", "relevant", 1, [101, 4242], "relevant:known_items"),
        ("ground_truth", "request_id", 3, 99, "request_id:known_request"),
    ],
)
def test_corrupted_rows_in_other_tables(table, col, row, value, reason):
    tables = clean_tables()
    df = tables[table].astype({col: object})
    df.at[row, col] = value
    tables[table] = df
    res = validate_tables(tables, ValidateConfig(max_bad_share=1.0))
    check_split(res, table, {row: reason}, df)


def test_anonymous_requests_pass_and_user_check_is_skipped_without_users():
    tables = clean_tables()
    res = validate_tables({"items": tables["items"], "requests": tables["requests"]})
    assert res.report.tables["requests"].quarantined == 0
    assert res.report.tables["requests"].skipped == ["user_id:known_user"]


def test_quarantined_item_cascades_to_requests_that_expose_it():
    tables = clean_tables()
    tables["items"].loc[0, "price"] = -1.0  # item 100 is exposed by requests 1 and 5
    res = validate_tables(tables, ValidateConfig(max_bad_share=1.0))
    q = res.quarantine["requests"]
    assert sorted(q["source_row"]) == [0, 4]
    assert all("exposed:known_items" in r for r in q["reasons"])


def test_delta_validates_against_reference_tables():
    tables = clean_tables()
    known = validate_tables(tables).good
    new_items = tables["items"].iloc[:1].assign(item_id=[200], title=["Acme pan 200"])
    delta_requests = pd.DataFrame(
        {
            "request_id": [50, 51],
            "ts": [T0, T0],
            "user_id": ["u2", "u9"],
            "query": ["pan", "pan"],
            "query_kind": ["synonym"] * 2,
            "exposed": [[200, 101], [200, 777]],
            "clicked": [[200], []],
            "purchased": [[], []],
        }
    )
    res = validate_tables(
        {"items": new_items, "requests": delta_requests},
        reference={k: known[k] for k in ("categories", "items", "users")},
    )
    assert res.report.tables["items"].quarantined == 0
    q = res.quarantine["requests"]
    assert list(q["source_row"]) == [1]
    assert set(q["reasons"].iloc[0]) == {"user_id:known_user", "exposed:known_items"}


def test_stage_writes_outputs_and_threshold_fails_above_and_passes_below(tmp_path: Path):
    tables = clean_tables()
    items = tables["items"].astype({"price": str})  # price stored as strings: a malformed source file
    items.at[1, "price"] = "n/a"  # 1 of 8 items bad = 12.5%
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, df in tables.items():
        if name != "items":
            S.write_table(df, S.ALL_TABLES[name], raw)
    items.to_parquet(raw / "items.parquet")
    # keep the cascade (rows pointing at the bad item 101) out of this test
    pe = tables["price_events"]
    S.write_table(pe[pe["item_id"] != 101], S.PRICE_EVENTS, raw)
    req, gt = tables["requests"], tables["ground_truth"]
    S.write_table(req[~req["exposed"].map(lambda v: 101 in v)], S.REQUESTS, raw)
    S.write_table(gt[~gt["relevant"].map(lambda v: 101 in v)], S.GROUND_TRUTH, raw)

    out, quar, report = tmp_path / "validated", tmp_path / "quarantine", tmp_path / "reports" / "validation.json"
    with pytest.raises(ValidationError, match=r"items: 1/8 rows bad \(12.5%"):
        validate(ValidateConfig(max_bad_share=0.10), raw, out, quar, report)
    assert json.loads(report.read_text())["passed"] is False  # the report is written before raising

    rep = validate(ValidateConfig(max_bad_share=0.05, per_table={"items": 0.2}), raw, out, quar, report)
    assert rep.passed
    got = json.loads(report.read_text())["tables"]["items"]
    assert (got["rows_in"], got["good"], got["quarantined"], got["reasons"]) == (8, 7, 1, {"price:type": 1})
    assert report.with_suffix(".md").read_text().startswith("# Validation: PASS")
    good_items = S.read_table(S.ITEMS, out)
    assert 101 not in set(good_items["item_id"]) and len(good_items) == 7
    assert pq.read_schema(out / "items.parquet").equals(S.ITEMS.schema, check_metadata=False)
    q = pq.read_table(quar / "items.parquet").to_pandas()
    assert list(q["item_id"]) == [101] and list(q["price"]) == ["n/a"] and list(q["reasons"][0]) == ["price:type"]
    assert pq.read_table(quar / "users.parquet").num_rows == 0  # every table gets a quarantine file


def test_marketplace_output_and_its_next_day_delta_validate_clean():
    market = mp.generate_marketplace(mp.MarketplaceConfig(preset="tiny"))
    res = validate_tables(market.tables())
    assert {k: t.reasons for k, t in res.report.tables.items() if t.quarantined} == {}
    assert res.report.tables["requests"].rows_in > 0 and res.report.tables["items"].rows_in > 0
    # the daily rebuild's use: a day's new rows, checked against the validated tables so far
    delta = mp.next_day(market)
    batch = {
        "items": delta.new_items,
        "price_events": delta.price_events,
        "users": delta.new_users,
        "requests": delta.requests,
        "ground_truth": delta.ground_truth,
    }
    day = validate_tables(batch, reference=res.good)
    assert {k: t.reasons for k, t in day.report.tables.items() if t.quarantined} == {}
    assert all(t.skipped == [] for t in day.report.tables.values())
    assert day.report.tables["requests"].rows_in == len(delta.requests) > 0
