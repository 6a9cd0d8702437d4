"""Train ``centroid_beam``'s trie instead of averaging it (a TDM-style learned tree), on real queries.

    genrecall eval-real ... --train data/hd/dev-train.csv --test data/hd/dev-val.csv \\
        --out reports/dev-base.json --set 'methods=[cq_sid]'          # fits the SIDs under reports/dev-base/
    python benchmarks/bench_learned_tree.py --work reports/dev-base --products ../shared/data/homedepot/products.csv \\
        --train data/hd/dev-train.csv --test data/hd/dev-val.csv --train-nodes --lr 2e-4
    python benchmarks/bench_learned_tree.py ... --adapter --lr 1e-3

``centroid_beam`` (gen/centroid_prior.py) beats the trained generator on queries it never saw. This asks
whether training *that* model helps: every trie node keeps an embedding initialised to its centroid
(``--train-nodes`` lets them move) and the query's MiniLM vector passes a residual linear map initialised
to zero (``--adapter``), so epoch 0 *is* ``centroid_beam``. Loss: per level, softmax cross-entropy of the
cosine to every node of that level / ``--tau`` (the beam ranks children of all beams against each other,
so the softmax runs over the whole level), on every product's title vector → its SID path, plus
``--query-batch`` training queries per step → each relevant product's path. The epoch is chosen on
the training queries Q2SID holds out (bench_decode_prior's ``val`` split, items@1000); the test queries
are scored once, at that epoch. Measured negative (docs/BENCHMARKS.md), so a script, not a pipeline option.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from bench_decode_prior import held_out, judged_parser, scores

from genrecall.config import from_dict
from genrecall.eval.inputs import GeneratorRun
from genrecall.gen.centroid_prior import NodeCentroids, centroid_beam
from genrecall.pipeline.eval_real import EvalRealConfig, JudgedRun, load_run, score_run
from genrecall.pipeline.evaluate import EvaluateConfig
from genrecall.sid.index import SidIndex


class LearnedTree(torch.nn.Module):
    """Node embeddings per level (init: the centroids) and a residual query map (init: identity)."""

    def __init__(self, nodes: NodeCentroids, dim: int, train_nodes: bool, adapter: bool) -> None:
        super().__init__()
        self.child = nodes.child
        self.nodes = torch.nn.ParameterList(torch.nn.Parameter(torch.from_numpy(c.copy())) for c in nodes.centroids)
        self.nodes.requires_grad_(train_nodes)
        self.adapter = torch.nn.Parameter(torch.zeros(dim, dim), requires_grad=adapter)

    def query(self, v: torch.Tensor) -> torch.Tensor:
        v = F.normalize(v, dim=1)
        return F.normalize(v + v @ self.adapter, dim=1)

    def loss(self, v: torch.Tensor, paths: torch.Tensor, tau: float) -> torch.Tensor:
        q = self.query(v)
        return sum(F.cross_entropy(q @ F.normalize(e, dim=1).T / tau, paths[:, t]) for t, e in enumerate(self.nodes))

    @torch.no_grad()
    def search(self, vectors: np.ndarray, beams: int) -> GeneratorRun:
        frozen = NodeCentroids(self.child, tuple(F.normalize(e, dim=1).numpy() for e in self.nodes))
        q = self.query(torch.as_tensor(np.asarray(vectors, np.float32))).numpy()
        return GeneratorRun.from_sids(centroid_beam(frozen, q, beams))


def node_paths(child: tuple[np.ndarray, ...], sids: np.ndarray) -> np.ndarray:
    """(n, D): the trie node of every item's SID prefix at every level."""
    out = np.zeros(sids.shape, dtype=np.int64)
    node = np.zeros(len(sids), dtype=np.int64)
    for t, table in enumerate(child):
        node = table[node, sids[:, t]]
        out[:, t] = node
    return out


def query_pairs(run: JudgedRun, log: pd.DataFrame, paths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(query vector, relevant product's path) for every relevant pair of ``log``."""
    row = pd.Series(np.arange(len(run.ids)), index=run.ids)
    pairs = log[["query", "clicked"]].explode("clicked").dropna()
    pairs = pairs[pairs["clicked"].astype(np.int64).isin(row.index)]
    v = run.encode(pairs["query"].tolist())
    return torch.from_numpy(np.asarray(v, np.float32)), torch.from_numpy(paths[row[pairs["clicked"].astype(np.int64)]])


def main() -> None:
    ap = judged_parser(__doc__)
    ap.add_argument("--train-nodes", action="store_true", help="the node embeddings learn")
    ap.add_argument("--adapter", action="store_true", help="the query map learns")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tau", type=float, default=0.1, help="softmax temperature, cosine units")
    ap.add_argument("--batch", type=int, default=512, help="products per step")
    ap.add_argument("--query-batch", type=int, default=64, help="training query pairs per step")
    ap.add_argument("--product-weight", type=float, default=1.0, help="weight of the products' loss (0: queries only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    block = yaml.safe_load(Path(args.params).read_text())["eval_real"]
    cfg = from_dict(EvalRealConfig, {**block, "methods": ["cq_sid"]})
    ev = from_dict(EvaluateConfig, cfg.evaluate)
    q2sid = dict(cfg.train.get("q2sid") or {})
    run = load_run(cfg, args.products, args.train, args.test)
    val = held_out(run, float(q2sid.get("val_share", 0.1)), int(q2sid.get("seed", 0)))
    index = SidIndex.load(Path(args.work) / "index" / "cq_sid")
    nodes = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, index.sid_of(run.ids), run.x)
    paths = node_paths(nodes.child, index.sid_of(run.ids))
    train_log = run.train_log[~run.train_log["query"].isin(set(val["query"]))]
    qv, qp = query_pairs(run, train_log, paths)
    x, xp = torch.from_numpy(np.asarray(run.x, np.float32)), torch.from_numpy(paths)
    model = LearnedTree(nodes, x.shape[1], args.train_nodes, args.adapter)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    val_vectors = run.encode(val["query"].tolist())

    def score(log: pd.DataFrame, vectors: np.ndarray) -> dict[str, float]:
        scored = dataclasses.replace(run, test_log=log.reset_index(drop=True), test_vectors=vectors)
        return scores(score_run(ev, scored, model.search(vectors, max(ev.beams)), index))

    best = (score(val, val_vectors), 0, {k: v.clone() for k, v in model.state_dict().items()})
    print(json.dumps({"epoch": 0, "pairs": len(qv), "val": best[0]}), flush=True)
    for epoch in range(1, args.epochs + 1):
        start, total = time.perf_counter(), 0.0
        order, qorder = torch.randperm(len(x)), torch.randperm(len(qv)).repeat(1 + len(x) // len(qv))
        steps = len(x) // args.batch
        for b in range(steps):
            i = order[b * args.batch : (b + 1) * args.batch]
            j = qorder[b * args.query_batch : (b + 1) * args.query_batch]
            loss = args.product_weight * model.loss(x[i], xp[i], args.tau) + model.loss(qv[j], qp[j], args.tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        row = {"epoch": epoch, "loss": round(total / steps, 3), "seconds": round(time.perf_counter() - start, 1)}
        row["val"] = score(val, val_vectors)
        print(json.dumps(row), flush=True)
        if row["val"]["items@1000"] > best[0]["items@1000"]:
            best = (row["val"], epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    print(json.dumps({"chosen_epoch": best[1], "test": score(run.test_log, run.test_vectors)}), flush=True)


if __name__ == "__main__":
    main()
