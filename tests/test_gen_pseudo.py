"""Pseudo-queries for I2SID (gen/pseudo.py)."""

from __future__ import annotations

import pandas as pd

from genrecall.gen.pseudo import PseudoQueryConfig, pseudo_queries, pseudo_query_examples, title_words
from tests.test_gen_examples import tiny_tables, tiny_tokenizer


def test_pseudo_queries_are_short_distinct_title_words_and_deterministic() -> None:
    cfg = PseudoQueryConfig(per_item=3, seed=1)
    title = "Simpson Strong-Tie 12-Gauge Angle Bracket in Zinc &amp; Steel (4-Pack)"
    words = set(title_words(title))
    qs = pseudo_queries(7, title, cfg)
    assert len(qs) == 3 and len(set(qs)) == 3
    for q in qs:
        assert 2 <= len(q.split()) <= 4 and set(q.split()) <= words and "amp" not in q.split()
    assert qs == pseudo_queries(7, title, cfg)  # a function of (seed, item id, title)
    assert qs != pseudo_queries(8, title, cfg) or qs != pseudo_queries(7, title, PseudoQueryConfig(per_item=3, seed=2))
    assert pseudo_queries(1, "red kettle", PseudoQueryConfig(per_item=2, kinds=("attrs",)), attrs=["Copper"]) == [
        "copper kettle"
    ]


def test_examples_target_each_items_own_sid() -> None:
    t = tiny_tables()
    tok = tiny_tokenizer(t)
    ds = pseudo_query_examples(t.items, t.sids, tok, PseudoQueryConfig(per_item=2))
    lookup = dict(zip(t.sids["item_id"], t.sids["codes"].map(tuple)))
    assert len(ds) > 0 and len(ds.texts) == len(ds)
    for src, target, text, prompt in zip(ds.sources, ds.targets, ds.texts, ds.prompts):
        assert tuple(target) == lookup[int(src)]
        assert prompt == tok.encode_prompt(text)
    assert len(pseudo_query_examples(t.items, t.sids, tok, PseudoQueryConfig(per_item=0))) == 0
    assert isinstance(t.items, pd.DataFrame)
