"""Choose the decode prior's weight and temperature on held-out *training* queries (never the test set).

    genrecall eval-real ... --out reports/hd-base.json --set 'methods=[cq_sid]'   # trains, saves under reports/hd-base/
    python benchmarks/bench_decode_prior.py --work reports/hd-base \\
        --products ../shared/data/homedepot/products.csv --train data/hd/train.csv --test data/hd/test.csv \\
        --grid 0:0.001 1:0.003 1:0.001 2:0.001 2:0.003 4:0.003 100:0.003

The validation queries are the ones Q2SID held out of its own training (gen/sft.py `validation_split`:
a hash of (seed, query text) below ``val_share``), so the generator never trained on them. For each
``weight:temperature`` the saved CQ-SID generator is decoded with its SID tokenizer's prior
(gen/sid_prior.py; ``--kind centroid``: its trie nodes' item centroids, gen/centroid_prior.py, where the
temperature is in cosine units, e.g. 0.05) and scored like eval-real (items@N, hitrate@B).
``--split test`` scores the test queries instead, for the one final check of the chosen setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import zlib
from pathlib import Path

import pandas as pd
import torch
import yaml

from genrecall.config import from_dict
from genrecall.eval.inputs import GeneratorRun
from genrecall.eval.metrics import GeneratorMetrics
from genrecall.gen.centroid_prior import NodeCentroids, centroid_beam
from genrecall.pipeline.eval_real import EvalRealConfig, JudgedRun, decode_prior, load_run, score_run, search
from genrecall.pipeline.evaluate import EvaluateConfig
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer


def held_out(run: JudgedRun, share: float, seed: int) -> pd.DataFrame:
    """The training queries Q2SID's validation split held out (same hash as gen/sft.py), with a click."""
    cut = int(share * 2**32)
    held = run.train_log["query"].map(lambda q: zlib.crc32(f"{seed}\x00{q}".encode()) < cut)
    return run.train_log[held & (run.train_log["clicked"].map(len) > 0)].reset_index(drop=True)


def judged_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every benchmark on a saved eval-real run takes: its work dir, the judged data, params."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="an eval-real work dir (sid/, index/, generator/)")
    ap.add_argument("--products", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--params", default="params.yaml")
    return ap


def main() -> None:
    ap = judged_parser(__doc__)
    ap.add_argument("--method", default="cq_sid")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--kind", choices=("tokenizer", "centroid"), default="tokenizer", help="decode_prior.kind")
    ap.add_argument("--grid", nargs="+", default=["0:0.001", "1:0.001", "2:0.001", "2:0.003", "4:0.003"])
    args = ap.parse_args()
    torch.set_num_threads(1)

    block = yaml.safe_load(Path(args.params).read_text())["eval_real"]
    cfg = from_dict(EvalRealConfig, {**block, "methods": [args.method]})
    ev = from_dict(EvaluateConfig, cfg.evaluate)
    q2sid = dict(cfg.train.get("q2sid") or {})  # its val_share and seed decide which queries it held out
    run = load_run(cfg, args.products, args.train, args.test)
    log = (
        held_out(run, float(q2sid.get("val_share", 0.1)), int(q2sid.get("seed", 0)))
        if args.split == "val"
        else run.test_log
    )
    work = Path(args.work)
    tok, index = SidTokenizer.load(work / "sid" / args.method), SidIndex.load(work / "index" / args.method)
    # eval-real's own search and scoring, on these queries
    scored = dataclasses.replace(run, test_log=log, test_vectors=run.encode(log["query"].tolist()))
    print(f"{args.split}: {len(log)} queries", flush=True)
    nodes = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, index.sid_of(run.ids), run.x)
    if args.kind == "centroid":  # the prior alone, no generator (eval-real's centroid_beam row)
        alone = GeneratorRun.from_sids(centroid_beam(nodes, scored.test_vectors, max(ev.beams)))
        print(json.dumps({"centroid_beam": True} | scores(score_run(ev, scored, alone, index))), flush=True)
    for cell in args.grid:
        weight, temperature = (float(x) for x in cell.split(":"))
        spec = {"kind": args.kind, "weight": weight, "temperature": temperature}
        start = time.perf_counter()
        prior = decode_prior(dataclasses.replace(cfg, decode_prior=spec), tok, index, scored, nodes)
        out = search(cfg, index, scored, work / "generator" / args.method, prior=prior)
        row = {"weight": weight, "temperature": temperature, "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(row | scores(score_run(ev, scored, out, index))), flush=True)


def scores(m: GeneratorMetrics) -> dict[str, float]:
    """The printed metrics of one row: items@N and hitrate@1/@10."""
    row = {f"items@{n}": round(float(v), 4) for n, v in m.items.items()}
    return row | {f"hitrate@{b}": round(m.hitrate_at(b), 4) for b in (1, 10) if b in m.beams}


if __name__ == "__main__":
    main()
