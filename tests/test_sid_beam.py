"""tokenizer_beam: the training-free reference (sid/beam.py)."""

from __future__ import annotations

import numpy as np
import torch

from genrecall.sid.beam import tokenizer_beam
from genrecall.sid.clusters import ClusterConfig, make_sids
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer, SidTokenizerConfig, resolve_codebook_sizes
from tests.test_sid_tokenizer import _catalog, _cfg

torch.set_num_threads(1)


def _fitted():
    x, _, _ = _catalog(n=400, unknown=1.0)
    tok = SidTokenizer(_cfg(method="rq_vae", codebook_sizes=(6, 4, 4)))
    tok.fit(x)
    ids = np.arange(len(x), dtype=np.int64) + 1000
    index = SidIndex.build(
        ids,
        make_sids(tok.assign(x), ClusterConfig(suffix_mode="group", t_max=5)),
        codebook_sizes=tok.codebook_sizes,
        suffix_mode="group",
        t_max=5,
    )
    return x, ids, tok, index


def test_beam_of_one_is_the_tokenizers_own_greedy_assignment() -> None:
    x, _ids, tok, index = _fitted()
    runs = tokenizer_beam(tok, index.trie, x[:50], 1, index.sid_vocab_sizes)
    codes = tok.assign(x[:50])
    for row, run in zip(codes, runs):
        assert run.shape == (1, index.trie.depth)
        assert tuple(run[0, :3]) == tuple(row)  # greedy residual quantisation, level by level


def test_every_beam_is_a_real_sid_best_first_and_items_are_found() -> None:
    x, ids, tok, index = _fitted()
    runs = tokenizer_beam(tok, index.trie, x[:40], 10, index.sid_vocab_sizes)
    hits = 0
    for i, run in enumerate(runs):
        assert 1 <= len(run) <= 10 and len({tuple(r) for r in run.tolist()}) == len(run)
        assert all(tuple(r) in index.trie for r in run.tolist())
        hits += int(ids[i] in set(np.concatenate([index.items(tuple(r)) for r in run.tolist()]).tolist()))
    assert hits >= 36  # an item's own vector leads back to its cluster (its prefix is the greedy top beam)


def test_codebook_sizes_follow_the_items_per_sid_target_without_categories() -> None:
    small = resolve_codebook_sizes(SidTokenizerConfig(target_items_per_sid=4.0, min_level_size=2), 54_667, 0)
    large = resolve_codebook_sizes(SidTokenizerConfig(target_items_per_sid=40.0, min_level_size=2), 54_667, 0)
    for sizes, target in ((small, 4.0), (large, 40.0)):
        per_sid = 54_667 / np.prod(sizes)
        assert target / 4 <= per_sid <= target * 1.5, (sizes, per_sid)
