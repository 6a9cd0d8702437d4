"""`genrecall split-judged` + `genrecall eval-real` end to end on a small judged set.

The judged set is made from the tiny marketplace (titles; a query's clicked items are relevant,
its other exposed items are not), written as the CSV format of the Home Depot files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from genrecall.cli import app
from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
from genrecall.eval.report import check_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judged_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("judged")
    market = generate_marketplace(MarketplaceConfig(preset="tiny", seed=3))
    market.items[["item_id", "title"]].to_csv(root / "products.csv", index=False)
    rows = []
    for r in market.requests.itertuples(index=False):
        clicked = set(map(int, r.clicked))
        rows += [(r.query, int(i), 3.0 if int(i) in clicked else 1.33) for i in r.exposed]
    pd.DataFrame(rows, columns=["query", "item_id", "relevance"]).drop_duplicates(["query", "item_id"]).to_csv(
        root / "judgments.csv", index=False
    )
    return root


def test_split_then_eval_real_writes_a_judged_block(judged_csv: Path) -> None:
    runner = CliRunner()
    root = judged_csv
    res = runner.invoke(
        app,
        [
            "split-judged",
            "--judgments",
            str(root / "judgments.csv"),
            "--train-out",
            str(root / "train.csv"),
            "--test-out",
            str(root / "test.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    train, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv")
    assert not set(train["query"].str.lower()) & set(test["query"].str.lower())  # query-disjoint
    assert len(train) + len(test) == len(pd.read_csv(root / "judgments.csv"))  # nothing lost

    params = {
        "eval_real": {
            "cache_dir": str(root / "cache"),
            "embed": {"encoder": "hash", "hash_dim": 32},
            "sid": {
                "epochs": 2,
                "hidden_dims": [32],
                "latent_dim": 8,
                "codebook_sizes": [8, 4, 4],
                "kmeans_iters": 5,
                "batch_size": 64,
            },
            "train": {
                "tokenizer": {"vocab_size": 300, "semantic_tokens": 2},
                "pseudo": {"per_item": 1},
                "model": {
                    "hidden_size": 32,
                    "num_layers": 1,
                    "num_heads": 2,
                    "num_kv_heads": 1,
                    "intermediate_size": 64,
                },
                "i2sid": {"max_steps": 10, "batch_size": 32, "num_threads": 1},
                "q2sid": {"max_steps": 10, "batch_size": 32, "num_threads": 1},
            },
            "evaluate": {"max_requests": 40, "beams": [1, 5, 10, 20], "report_beams": [1, 10]},
            "variants": {
                "cq_sid_plain": {"tokenizer": {"semantic_tokens": 0}, "pseudo": {"per_item": 0}},
                "cq_sid_teacher": {"teacher": {"share": 1.0, "top_items": 20}},  # pseudo-queries -> dense clusters
            },
            "decode_prior": {"kind": "centroid", "weight": 2.0, "temperature": 0.1},
        }
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = root / "judged_metrics.json"
    res = runner.invoke(
        app,
        [
            "eval-real",
            "--products",
            str(root / "products.csv"),
            "--train",
            str(root / "train.csv"),
            "--test",
            str(root / "test.csv"),
            "--out",
            str(out),
            "--params",
            str(root / "params.yaml"),
            "--set",
            "sid.target_items_per_sid=3",
            "--set",
            "sid.min_level_size=2",
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    check_metrics(m)
    assert set(m["judged"]) == {
        "cq_sid",
        "rq_vae",
        "bm25",
        "dense",
        "tokenizer_beam",
        "centroid_beam",
        "sid_hybrid",
        "fusion",
        "cq_sid_plain",
        "cq_sid_teacher",
        "cluster_oracle",
        "cq_sid+prior",  # each method's generator decoded with its own trie nodes' centroids
        "rq_vae+prior",
    }
    assert "generator/cq_sid_teacher" in m["data"]["seconds"]
    assert "pseudo-queries relabelled" in res.output  # the variant's pseudo-queries went through the teacher
    assert m["judged"]["cq_sid+prior"]["items@1000"] >= 0.0 and "prior/cq_sid" in m["data"]["seconds"]
    assert m["judged"]["centroid_beam"]["items@1000"] > 0  # hash vectors of title words still find some
    # BM25 over each SID's titles finds the clusters of items whose title words the queries use
    assert m["judged"]["sid_hybrid"]["items@1000"] > 0 and m["judged"]["sid_hybrid"]["hitrate@10"] > 0
    assert "sid_hybrid" in m["data"]["seconds"]
    assert json.loads((root / "judged_metrics" / "config.json").read_text())["sid"]["target_items_per_sid"] == 3
    fusion = m["judged"]["fusion"]
    assert set(fusion) >= {"union_bm25@1000", "union_dense@1000", "rrf@1000", "generator_only@1000"}
    # the baselines those rows must beat: BM25 and dense fused without the generator
    assert {"union_bm25_dense@1000", "rrf_bm25_dense@1000"} <= set(fusion)
    assert all(0.0 <= v <= 1.0 for v in fusion.values())
    # the union of two halves can't beat both channels' full lists together, and RRF sees all three
    assert fusion["generator_only@1000"] <= fusion["generator@1000"]
    assert fusion["bm25@1000"] == pytest.approx(m["judged"]["bm25"]["items@1000"])
    assert m["data"]["test_queries"] == 40 and m["data"]["test_pairs"] >= 40
    # BM25 on titles finds some relevant items for queries made of title words
    assert m["judged"]["bm25"]["items@1000"] > 0
    final = root / "judged_metrics" / "generator" / "cq_sid" / "q2sid" / "final"
    assert final.is_dir()
    from genrecall.gen.model import load_generator
    from genrecall.gen.semantic import SemanticQwen2ForCausalLM

    assert isinstance(load_generator(final).model, SemanticQwen2ForCausalLM)  # the prompt carried the vectors
    plain = load_generator(root / "judged_metrics" / "generator" / "cq_sid_plain" / "q2sid" / "final")
    assert not isinstance(plain.model, SemanticQwen2ForCausalLM)  # the ablation variant turned it off


def test_eval_real_refuses_overlapping_splits(judged_csv: Path, tmp_path: Path) -> None:
    from genrecall.pipeline.eval_real import EvalRealConfig, eval_real

    j = judged_csv / "judgments.csv"
    with pytest.raises(ValueError, match="both train and test"):
        eval_real(EvalRealConfig(embed={"encoder": "hash"}), judged_csv / "products.csv", j, j, tmp_path / "m.json")


def test_decode_prior_kinds_and_a_bad_kind() -> None:
    from genrecall.pipeline.eval_real import EvalRealConfig, decode_prior

    off = [{}, {"kind": "tokenizer", "weight": 0.0}, {"kind": "centroid", "weight": 0.0}]
    for spec in off:  # weight 0 is the generator alone: no prior is built (nothing else is read)
        assert decode_prior(EvalRealConfig(decode_prior=spec), None, None, None) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'tokenizer' or 'centroid'"):
        decode_prior(EvalRealConfig(decode_prior={"kind": "items", "weight": 1.0}), None, None, None)  # type: ignore[arg-type]
