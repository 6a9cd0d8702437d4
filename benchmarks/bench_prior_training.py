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
from genrecall.gen.centroid_prior import CentroidPrior, CentroidPriorConfig, NodeCentroids
from genrecall.gen.examples import SidDataset
from genrecall.gen.tokenizer import GenTokenizer


def prior_logits(
    nodes: NodeCentroids, tok: GenTokenizer, targets: np.ndarray, vectors: np.ndarray, weight: float, temperature: float
) -> np.ndarray:
    """(rows, D, max level size): the weighted log-prior of every code at every level of the target's path,
    from the decoder's own `CentroidState` (each row one beam that follows its target)."""
    cfg = CentroidPriorConfig(weight=weight, temperature=temperature)
    state = CentroidPrior.from_nodes(nodes, vectors, cfg).start(torch.device("cpu"))
    n = len(targets)
    out = torch.zeros((n, tok.sid_depth, max(tok.sid_vocab_sizes)))
    follow = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    for t in range(tok.sid_depth):
        size = tok.sid_vocab_sizes[t]
        kids = state.child[t][state.node.clamp(min=0)][:, 0, :size]
        bonus = state.bonus(t, size)[:, 0, : kids.shape[1]]
        out[:, t, : kids.shape[1]] = bonus.masked_fill(kids < 0, -30.0 * weight)  # not in the trie: never the target
        state.advance(t, torch.zeros((n, 1), dtype=torch.long), follow[:, t : t + 1])
    return out.numpy()


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
