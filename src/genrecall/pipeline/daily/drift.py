"""Drift for the daily rebuild: is today an incremental day (frozen tokenizer) or a full rebuild? And
after a refit, ``align_codes`` relabels the new codes so items keep their old ones where possible.

The baseline is what the last full fit saw (``models/sid/daily_fit.json``): its items and their mean
quantization error. Rules and thresholds: ``DailyConfig`` (``max_new_share``, ``max_qerr_ratio``,
``max_unseen_category_share``). Categories the tokenizer never saw are counted every day: an item of
such a category is forced to no level-1 code and lands in the nearest one, another category's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from genrecall.pipeline.daily import state as D

FIT_RECORD = "daily_fit.json"  # beside the tokenizers: what the last full fit saw (drift baseline)


def quantization_error(tok: Any, x: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Squared distance between each item's latent and its quantized latent (frozen tokenizer)."""
    import torch

    if len(x) == 0:
        return np.empty(0)
    z = torch.from_numpy(tok.latents(x))
    forced = torch.from_numpy(tok.category_code(categories, len(x))) if tok.cfg.forcing else None
    with torch.no_grad():
        z_q = tok.model.quantize(z, forced)[0]
    return (z - z_q).pow(2).sum(1).numpy()


def fit_record(index_dir: Path, tok_dir: Path, data_dir: Path, emb_dir: Path) -> dict[str, Any]:
    """The drift baseline of a fit: its items and their mean quantization error."""
    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import categories_of, listed_items
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    ids = SidIndex.load(index_dir).item_ids()
    items = listed_items(data_dir).set_index("item_id").reindex(ids).reset_index()
    emb = load_embeddings(emb_dir)
    keep = np.isin(ids, emb.item_ids)
    err = quantization_error(
        SidTokenizer.load(tok_dir), emb.items[emb.item_rows(ids[keep])], categories_of(items[keep])
    )
    return {
        "items": len(ids),
        "max_item_id": int(ids.max()) if len(ids) else 0,
        "qerr": float(err.mean()) if len(err) else 0.0,
    }


def unseen_categories(tok: Any, categories: np.ndarray) -> dict[int, int]:
    """Category id -> number of items, for the known categories the tokenizer has no level-1 code for
    (empty when the tokenizer does not force level 1 to the category)."""
    if not tok.cfg.forcing:
        return {}
    cats = np.asarray(categories, dtype=np.float64)
    ids = cats[~np.isnan(cats)].astype(np.int64)
    unseen = ids[~np.isin(ids, tok.category_ids)]
    values, counts = np.unique(unseen, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def drift(ws: D.Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Incremental or full rebuild today? (DESIGN.md: rebuild the tokenizer only past a threshold.)"""
    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import categories_of, listed_items
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    cfg = D.config_of(D.DailyConfig, params, "daily")
    method, record_path = D.main_method(params), ws.path("models_sid") / FIT_RECORD
    fit = (
        json.loads(record_path.read_text())
        if record_path.exists()
        else fit_record(
            ws.path("sid") / method, ws.path("models_sid") / method, ws.path("validated"), ws.path("embeddings")
        )
    )
    items = listed_items(ws.stage(day, ws.validated))
    ids = items["item_id"].to_numpy(np.int64)
    new_since_fit = int((ids > fit["max_item_id"]).sum())  # item ids only grow (marketplace contract)
    today = ~np.isin(ids, SidIndex.load(ws.path("sid") / method).item_ids())
    emb = load_embeddings(ws.stage(day, ws.embeddings))
    tok = SidTokenizer.load(ws.path("models_sid") / method)
    err = quantization_error(tok, emb.items[emb.item_rows(ids[today])], categories_of(items[today]))
    share = new_since_fit / max(fit["items"], 1)
    ratio = float(err.mean()) / fit["qerr"] if len(err) and fit["qerr"] > 0 else 0.0
    unseen = unseen_categories(tok, categories_of(items))
    unseen_share = sum(unseen.values()) / max(len(items), 1)
    reasons = drift_reasons(cfg, share=share, ratio=ratio, n_err=len(err), unseen_share=unseen_share, unseen=unseen)
    return {
        "mode": "full" if reasons else "incremental",
        "reasons": reasons,
        "new_share": round(share, 4),
        "new_today": int(today.sum()),
        "qerr_new": float(err.mean()) if len(err) else None,
        "qerr_fit": fit["qerr"],
        "qerr_ratio": round(ratio, 3),
        "fit": fit,
        "unseen_categories": {str(k): v for k, v in unseen.items()},
        "unseen_category_items": sum(unseen.values()),
        "unseen_category_share": round(unseen_share, 4),
    }


def drift_reasons(
    cfg: D.DailyConfig, *, share: float, ratio: float, n_err: int, unseen_share: float, unseen: dict[int, int]
) -> list[str]:
    """Why today is a full rebuild (empty: it is not)."""
    return (
        (["forced (daily.force_full)"] if cfg.force_full else [])
        + ([f"new-item share {share:.3f} > {cfg.max_new_share}"] if share > cfg.max_new_share else [])
        + (
            [f"quantization error ratio {ratio:.2f} > {cfg.max_qerr_ratio}"]
            if n_err >= cfg.min_new_items and ratio > cfg.max_qerr_ratio
            else []
        )
        + (
            [
                f"items of categories the tokenizer never saw: share {unseen_share:.4f} > "
                f"{cfg.max_unseen_category_share} ({len(unseen)} categories)"
            ]
            if unseen_share > cfg.max_unseen_category_share
            else []
        )
    )


def align_codes(old: Any, tok: Any, new: Any) -> tuple[Any, dict[str, Any]]:
    """Relabel a refit tokenizer's level codes so items keep their old codes where possible.

    Per level (one shared codebook per level in an RQ-VAE), a Hungarian matching on the item-overlap
    table new code x old code; the tokenizer's codebook rows are permuted to match, so future
    ``assign`` calls agree with the relabelled index. A category-forced level 1 is already aligned.
    """
    import torch
    from scipy.optimize import linear_sum_assignment

    from genrecall.sid.index import SidIndex

    common = np.intersect1d(old.item_ids(), new.item_ids())
    o, n = old.sid_of(common), new.sid_of(common)
    ids = new.item_ids()
    sids = new.sid_of(ids)
    report: list[dict[str, Any]] = []
    state = tok.model.state_dict()
    for level, size in enumerate(tok.codebook_sizes):
        before = float((o[:, level] == n[:, level]).mean()) if len(common) else 0.0
        if level == 0 and tok.cfg.forcing:
            report.append({"level": 1, "rule": "category-forced", "agreement": before})
            continue
        k_old = int(max(old.codebook_sizes[level] if old.codebook_sizes else 0, o[:, level].max(initial=0) + 1))
        table = np.zeros((size, k_old), dtype=np.int64)
        np.add.at(table, (n[:, level], o[:, level]), 1)
        rows, cols = linear_sum_assignment(-table)
        perm = np.full(size, -1, dtype=np.int64)
        keep = cols < size
        perm[rows[keep]] = cols[keep]
        free = iter(np.setdiff1d(np.arange(size), perm[perm >= 0]))
        perm[perm < 0] = [next(free) for _ in range(int((perm < 0).sum()))]
        inv = np.argsort(perm)  # new row perm[i] holds old row i
        for key, value in state.items():
            if key.startswith(f"levels.{level}.") and value.ndim >= 1 and value.shape[0] == size:
                state[key] = value[torch.from_numpy(inv)]
        sids[:, level] = perm[sids[:, level]]
        after = float((o[:, level] == perm[n[:, level]]).mean()) if len(common) else 0.0
        report.append({"level": level + 1, "rule": "hungarian", "agreement_before": before, "agreement": after})
    tok.model.load_state_dict(state)
    aligned = SidIndex.build(
        ids, sids, codebook_sizes=new.codebook_sizes, suffix_mode=new.suffix_mode, t_max=new.t_max, g_max=new.g_max
    )
    same = aligned.sid_of(common)[:, :-1] == o[:, :-1]
    return aligned, {
        "common_items": len(common),
        "levels": report,
        "level_codes_unchanged": float(same.all(axis=1).mean()) if len(common) else 0.0,
    }
