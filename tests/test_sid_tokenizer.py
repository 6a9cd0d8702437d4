"""SidTokenizer: category forcing, query InfoNCE masking, reproducibility, save/load, baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genrecall.sid.tokenizer import (
    QueryIndex,
    QueryPairs,
    SidTokenizer,
    SidTokenizerConfig,
    query_info_nce,
    resolve_codebook_sizes,
)

torch.set_num_threads(1)


def _catalog(n: int = 600, n_cat: int = 12, d: int = 16, seed: int = 0, unknown: float = 0.1):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_cat, d)) * 2
    truth = rng.integers(0, n_cat, n)
    x = centres[truth] + 0.5 * rng.standard_normal((n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    cats = (truth * 10 + 100).astype(float)  # category ids 100, 110, ...
    cats[rng.random(n) < unknown] = np.nan
    return x, cats, truth


def _cfg(**kw) -> SidTokenizerConfig:
    base = {
        "epochs": 3,
        "batch_size": 64,
        "hidden_dims": (32,),
        "latent_dim": 8,
        "codebook_sizes": ("auto", 8, 4),
        "kmeans_iters": 5,
    }
    return SidTokenizerConfig(**(base | kw))


def test_category_forcing_and_unknown_fall_back_to_nearest() -> None:
    x, cats, _ = _catalog()
    tok = SidTokenizer(_cfg(method="cq_sid"))
    tok.fit(x, cats)
    assert tok.codebook_sizes[0] == 12  # auto = number of leaf categories
    codes = tok.assign(x, cats)
    known = ~np.isnan(cats)
    assert np.all(tok.category_ids[codes[known, 0]] == cats[known])  # 100 % of known items
    # unknown (and never-seen) categories take the nearest level-1 code
    z = torch.from_numpy(tok.latents(x[~known]))
    nearest = tok.model.levels[0].nearest(z).numpy()
    assert np.array_equal(codes[~known, 0], nearest)
    unseen = tok.assign(x[:5], np.full(5, 999.0))
    assert np.array_equal(unseen[:, 0], tok.model.levels[0].nearest(torch.from_numpy(tok.latents(x[:5]))).numpy())


def test_forcing_needs_a_code_per_category() -> None:
    with pytest.raises(ValueError):
        resolve_codebook_sizes(_cfg(codebook_sizes=(5, 8)), n_items=100, n_categories=12)
    assert resolve_codebook_sizes(_cfg(codebook_sizes=("auto", "auto"), level1_spare=2), 12_000, 30) == (32, 128)


def test_query_info_nce_gives_no_gradient_to_items_without_queries() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 4, requires_grad=True)
    has_query = np.array([True, False, True, True, False, True])
    q = torch.randn(4, 4)
    query_info_nce(z, q, has_query, tau=0.1).backward()
    assert torch.all(z.grad[~has_query] == 0)
    assert torch.all(z.grad[has_query].abs().sum(dim=1) > 0)


def test_query_draw_needs_two_items_with_queries_and_picks_their_own() -> None:
    # items 0 and 3 have queries (0: queries 5 and 7, 3: query 2); the others none
    pairs = QueryPairs(item_index=np.array([3, 0, 0]), query_index=np.array([2, 5, 7]))
    index = QueryIndex.build(pairs, np.zeros((8, 4), np.float32), n_items=6)
    assert index.items_with_queries == 2
    rng = np.random.default_rng(0)
    assert index.draw(np.array([0, 1, 2]), rng) is None  # one item with a query: no negative, no term
    for _ in range(20):
        drawn = index.draw(np.array([4, 3, 1, 0]), rng)
        assert drawn is not None
        has, pick = drawn
        assert has.tolist() == [False, True, False, True]
        assert index.query_of[pick[0]] == 2 and index.query_of[pick[1]] in (5, 7)


def test_query_contrastive_pulls_items_towards_their_queries() -> None:
    x, cats, _ = _catalog(n=400)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((40, x.shape[1])).astype(np.float32)  # unrelated to the items
    item_index = np.arange(200)  # only the first half of the items have a query
    pairs = QueryPairs(item_index=item_index, query_index=item_index % 40)

    def alignment(gamma: float) -> float:
        tok = SidTokenizer(_cfg(gamma=gamma, epochs=4))
        tok.fit(x, cats, queries=queries, pairs=pairs)
        a = tok.latents(x[:200])
        b = tok.latents(queries[item_index % 40])
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        return float((a * b).sum(1).mean())

    assert alignment(1.0) > alignment(0.0) + 0.1


def test_same_seed_same_codes_and_save_load(tmp_path: Path) -> None:
    x, cats, _ = _catalog()
    a, b = SidTokenizer(_cfg(seed=7)), SidTokenizer(_cfg(seed=7))
    ra, rb = a.fit(x, cats), b.fit(x, cats)
    assert ra.loss == rb.loss
    assert np.array_equal(a.assign(x, cats), b.assign(x, cats))
    a.save(tmp_path / "tok")
    loaded = SidTokenizer.load(tmp_path / "tok")
    assert np.array_equal(loaded.assign(x, cats), a.assign(x, cats))
    assert {p.name for p in (tmp_path / "tok").iterdir()} == {"model.safetensors", "tokenizer.json"}
    c = SidTokenizer(_cfg(seed=8))
    c.fit(x, cats)
    assert not np.array_equal(c.assign(x, cats), a.assign(x, cats))


def test_baseline_ignores_categories_and_codebooks_stay_alive() -> None:
    x, cats, _ = _catalog(n=800)
    tok = SidTokenizer(_cfg(method="rq_vae", epochs=4))
    report = tok.fit(x, cats)
    assert not tok.cfg.forcing and len(tok.category_ids) == 0
    codes = tok.assign(x, cats)
    assert np.array_equal(codes, tok.assign(x, None))  # categories have no effect
    for level, k in enumerate(tok.codebook_sizes):
        assert len(np.unique(codes[:, level])) >= 0.5 * k  # no level collapses
    assert len(report.loss) == 4 and report.loss[-1] < report.loss[0]


def test_assign_is_chunked_consistently() -> None:
    x, cats, _ = _catalog()
    tok = SidTokenizer(_cfg())
    tok.fit(x, cats)
    assert np.array_equal(tok.assign(x, cats, chunk=7), tok.assign(x, cats))
