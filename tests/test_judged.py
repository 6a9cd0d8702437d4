"""The judged-data adapter on a hand-written fixture in the Home Depot format (and the real set if present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecall.data import schema as S
from genrecall.data.judged import (
    load_judged,
    normalize_query,
    read_products,
    relevant_pairs,
    split_judgments,
    write_raw,
)
from genrecall.data.validate import ValidateConfig, ValidationError
from genrecall.pipeline.validate import validate

FIXTURE = Path(__file__).parent / "fixtures" / "judged"
PRODUCTS, JUDGMENTS = FIXTURE / "fixture_products.csv", FIXTURE / "fixture_judgments.csv"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "homedepot"  # beside the repo
LENIENT = ValidateConfig(max_bad_share=0.5)


@pytest.fixture(scope="module")
def judged():
    return load_judged(PRODUCTS, JUDGMENTS, cfg=LENIENT)


def reasons_by_row(q: pd.DataFrame) -> dict[int, list[str]]:
    return {int(r): list(x) for r, x in zip(q["source_row"], q["reasons"])}


def test_products_counts_and_quarantine(judged):
    rep = judged.report.tables["products"]
    assert (rep.rows_in, rep.good, rep.quarantined) == (13, 9, 4)
    assert reasons_by_row(judged.quarantine["products"]) == {
        3: ["title:not_null"],
        5: ["item_id:unique"],
        10: ["row:parses"],
        11: ["item_id:type"],
    }
    assert "extra: [' 9 ft. Market Tilt']" in judged.quarantine["products"]["_parse_error"].iloc[2]
    p = judged.products
    assert list(p.columns) == S.PRODUCTS.columns
    assert list(p["item_id"]) == [200001, 200002, 200003, 200005, 200006, 200007, 200008, 200009, 200011]
    # whitespace cleaned, quoted comma kept, first of a duplicate id kept, non-ascii intact
    titles = dict(zip(p["item_id"], p["title"]))
    assert titles[200002] == "Brushed Nickel Cabinet Pull 3 in."
    assert titles[200003] == "Garden Hose, 50 ft. Heavy Duty"
    assert titles[200005].endswith("Soft White")
    assert titles[200011] == "Toilet Seat Elongated White"
    assert titles[200008].startswith("Crème")
    assert S.to_arrow(p, S.PRODUCTS).num_rows == 9


def test_judgments_counts_and_quarantine(judged):
    rep = judged.report.tables["judgments"]
    assert (rep.rows_in, rep.good, rep.quarantined) == (19, 13, 6)
    assert reasons_by_row(judged.quarantine["judgments"]) == {
        8: ["query+item_id:unique"],
        12: ["item_id:known_product"],
        13: ["item_id:known_product"],  # its product line was malformed, so it is not a known product
        14: ["relevance:in_range"],
        15: ["relevance:type"],
        16: ["query:not_null"],
    }
    j = judged.judgments
    assert j["relevance"].between(1, 3).all() and j["item_id"].isin(judged.products["item_id"]).all()
    assert "Cordless Drill" in set(j["query"])  # whitespace collapsed, case kept
    assert S.to_arrow(j, S.JUDGMENTS).num_rows == 13


def test_default_threshold_rejects_the_broken_fixture():
    with pytest.raises(ValidationError, match="products: 4/13 rows bad"):
        load_judged(PRODUCTS, JUDGMENTS)


def test_latin1_file_and_kaggle_column_names(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_bytes("product_uid,product_title\n1,Crème brûlée torch\n2,Café table\n".encode("latin-1"))
    p = read_products(path)
    assert list(p["title"]) == ["Crème brûlée torch", "Café table"]
    assert p["category"].isna().all()


def test_query_disjoint_split_is_deterministic(judged):
    j = judged.judgments
    split = split_judgments(j, test_share=0.5, seed=3)
    train_q = set(split.train["query"].map(normalize_query))
    test_q = set(split.test["query"].map(normalize_query))
    assert train_q.isdisjoint(test_q)
    assert len(split.train) + len(split.test) == len(j)
    n_queries = j["query"].map(normalize_query).nunique()
    assert n_queries == 11 and len(test_q) == round(0.5 * n_queries)
    # "cordless drill" and "Cordless Drill" are one query: same side
    side = {q: "test" if normalize_query(q) in test_q else "train" for q in ("cordless drill", "Cordless Drill")}
    assert len(set(side.values())) == 1
    again = split_judgments(j.sample(frac=1.0, random_state=0), test_share=0.5, seed=3)
    assert set(again.test["query"].map(normalize_query)) == test_q  # row order does not matter
    other = split_judgments(j, test_share=0.5, seed=4)
    assert set(other.test["query"].map(normalize_query)) != test_q or n_queries < 3
    assert len(split_judgments(j, test_share=0.0).test) == 0
    with pytest.raises(ValueError):
        split_judgments(j, test_share=1.5)


def test_relevant_pairs(judged):
    rel = relevant_pairs(judged.judgments, threshold=2.5)
    assert set(rel) == {
        "cordless drill",
        "cabinet pull",
        "garden hose",
        "kitchen faucet",
        "deck stain",
        "circular saw",
        "hose",
    }
    assert rel["garden hose"].tolist() == [200003] and rel["garden hose"].dtype == np.int64
    assert "toilet seat" not in rel  # 2.33 < 2.5
    assert set(relevant_pairs(judged.judgments, threshold=1.0)) == set(judged.judgments["query"])


def test_validate_stage_on_raw_judged_tables(tmp_path: Path):
    write_raw(PRODUCTS, JUDGMENTS, tmp_path / "raw")
    rep = validate(LENIENT, tmp_path / "raw", tmp_path / "ok", tmp_path / "q", tmp_path / "validation.json")
    assert (rep.tables["products"].good, rep.tables["judgments"].good) == (9, 13)
    assert len(S.read_table(S.JUDGMENTS, tmp_path / "ok")) == 13


@pytest.mark.skipif(not (REAL / "products.csv").exists(), reason="Home Depot dev set not beside the repo")
def test_real_home_depot_dev_set():
    js = load_judged(REAL / "products.csv", REAL / "judgments_dev.csv")
    assert js.report.passed
    assert len(js.products) > 50_000 and len(js.judgments) > 30_000
    split = split_judgments(js.judgments, test_share=0.5, seed=0)
    assert set(split.train["query"].map(normalize_query)).isdisjoint(split.test["query"].map(normalize_query))
    assert len(relevant_pairs(split.test)) > 1000
