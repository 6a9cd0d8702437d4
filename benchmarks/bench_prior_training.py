"""Train the generator *with* the centroid prior (a product of experts), then decode with it.

    python benchmarks/bench_prior_training.py --products ../shared/data/homedepot/products.csv \\
        --train data/hd/dev-train.csv --test data/hd/dev-val.csv --out reports/dev-poe.json \\
        --weight 2 --temperature 0.1

Decoding a generator trained alone with the trie nodes' centroids (gen/centroid_prior.py) adds the two
experts after the fact. Here the prior joins training too: at each SID level the SFT logits of the
level's codes get ``weight * log softmax(cos(v, centroid of child) / temperature)`` over the children of
the target's prefix (v = the row's MiniLM vector), so the generator learns only what the centroids do
not already say. Everything else is `genrecall eval-real` with ``methods=[cq_sid]`` and
``decode_prior={kind: centroid, ...}`` at the same weight and temperature; its ``cq_sid+prior`` row is
the result (the plain ``cq_sid`` row decodes the residual alone and means nothing here).

Measured negative (docs/BENCHMARKS.md): kept as a script, not a pipeline option. It patches the SFT
loss of `genrecall.gen.sft` in this process only.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import genrecall.gen.sft as sft
import genrecall.pipeline.eval_real as er
from genrecall.config import from_dict, load_params
from genrecall.gen.centroid_prior import NodeCentroids
from genrecall.gen.examples import SidDataset
from genrecall.gen.tokenizer import GenTokenizer


def prior_logits(
    nodes: NodeCentroids, tok: GenTokenizer, targets: np.ndarray, vectors: np.ndarray, weight: float, temperature: float
) -> np.ndarray:
    """(rows, D, max level size): the weighted log-prior of every code at every level of the target's path."""
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    out = np.zeros((len(v), tok.sid_depth, max(tok.sid_vocab_sizes)), dtype=np.float32)
    node = np.zeros(len(v), dtype=np.int64)
    for t in range(tok.sid_depth):
        size = tok.sid_vocab_sizes[t]
        kids = nodes.child[t][np.maximum(node, 0)][:, :size]
        cos = np.einsum("nd,nsd->ns", v, nodes.centroids[t][np.maximum(kids, 0)]) / temperature
        cos[kids < 0] = -np.inf
        cos -= cos.max(axis=1, keepdims=True)
        logp = cos - np.log(np.exp(cos).sum(axis=1, keepdims=True))
        logp[kids < 0] = -30.0  # not in the trie: never the target
        out[:, t, :size] = weight * logp
        node = kids[np.arange(len(v)), np.minimum(targets[:, t], size - 1)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--weight", type=float, default=2.0)
    ap.add_argument("--temperature", type=float, default=0.1)
    args = ap.parse_args()
    spec = {"kind": "centroid", "weight": args.weight, "temperature": args.temperature}
    cfg = from_dict(er.EvalRealConfig, {**load_params()["eval_real"], "methods": ["cq_sid"], "decode_prior": spec})
    state: dict[str, Any] = {}

    fit_sids = er.fit_sids

    def fit_and_keep(cfg_: er.EvalRealConfig, method: str, run: er.JudgedRun, work: Any) -> Any:
        tok, index = fit_sids(cfg_, method, run, work)
        state["nodes"] = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, index.sid_of(run.ids), run.x)
        return tok, index

    collate = sft.collate

    def collate_with_prior(dataset: SidDataset, indices: np.ndarray, tok: GenTokenizer) -> dict[str, torch.Tensor]:
        batch = collate(dataset, indices, tok)
        assert dataset.vectors is not None, "the prior needs the rows' sentence vectors (semantic_tokens > 0)"
        bonus = prior_logits(
            state["nodes"], tok, dataset.targets[indices], dataset.vectors[indices], args.weight, args.temperature
        )
        state["tok"] = tok
        return batch | {"prior": torch.from_numpy(bonus)}

    def loss_with_prior(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = sft.target_logits(model, batch).clone()
        tok: GenTokenizer = state["tok"]
        for t in range(tok.sid_depth):
            lo, size = int(tok.sid_offsets[t]), tok.sid_vocab_sizes[t]
            logits[:, t, lo : lo + size] += batch["prior"][:, t, :size].to(logits.device)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))

    er.fit_sids = fit_and_keep  # type: ignore[assignment]
    sft.collate = collate_with_prior  # type: ignore[assignment]
    sft.target_loss = loss_with_prior  # type: ignore[assignment]
    er.eval_real(cfg, args.products, args.train, args.test, args.out)


if __name__ == "__main__":
    main()
