from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from genrecall.data.schema import ITEMS, REQUESTS, SID_ASSIGNMENTS, USERS, read_table, sid_to_str, write_table
from genrecall.gen.examples import (
    ExamplesConfig,
    SidDataset,
    UserContext,
    encode_user_query,
    item_examples,
    query_examples,
    user_contexts_from_log,
    user_query_examples,
)
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig

SIZES = (3, 4, 4, 2)
NOUNS = ["kettle", "shirt", "mug"]
COLORS = ["red", "blue", "green", "black"]


@dataclass
class Tables:
    items: pd.DataFrame
    sids: pd.DataFrame
    users: pd.DataFrame
    requests: pd.DataFrame
    categories: pd.DataFrame


def tiny_tables(seed: int = 0, n_requests: int = 60) -> Tables:
    """A 24-item marketplace whose SIDs follow (noun, color, ...), and a click log that follows the query."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    rows, sid_rows = [], []
    for i in range(24):
        noun, color = i % 3, (i // 3) % 4
        rows.append(
            {
                "item_id": 100 + i,
                "title": f"{COLORS[color]} {NOUNS[noun]} model {i}",
                "brand": "acme",
                "category_id": noun + 1,
                "color": COLORS[color],
                "material": None,
                "size": None,
                "style": None,
                "price": 10.0 + i,
                "listed_at": t0,
                "delisted_at": pd.NaT,
                "updated_at": t0,
            }
        )
        codes = [noun, color, i % 4, i // 12]
        sid_rows.append({"item_id": 100 + i, "sid": sid_to_str(codes), "codes": codes})
    items, sids = pd.DataFrame(rows), pd.DataFrame(sid_rows)
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "gender": ["f", "m", "u"],
            "age_band": ["25-34", "35-44", "18-24"],
            "price_tier": ["low", "mid", "high"],
            "brand_affinity": [[], [], []],
            "category_interests": [[1], [2], [3]],
            "created_at": [t0] * 3,
        }
    )
    reqs = []
    for r in range(n_requests):
        noun, color = int(rng.integers(3)), int(rng.integers(4))
        matching = [100 + i for i in range(24) if i % 3 == noun and (i // 3) % 4 == color]
        clicked = [int(x) for x in rng.choice(matching, size=min(2, len(matching)), replace=False)] if r % 5 else []
        reqs.append(
            {
                "request_id": r,
                "ts": t0 + pd.Timedelta(minutes=r // 2),
                "user_id": [None, "u1", "u2", "u3"][r % 4],
                "query": f"{COLORS[color]} {NOUNS[noun]}",
                "query_kind": "attr_noun",
                "exposed": [*matching, 100 + (noun + 1) % 3],
                "clicked": clicked,
                "purchased": clicked[:1] if r % 3 == 0 else [],
            }
        )
    categories = pd.DataFrame({"category_id": [1, 2, 3], "name": ["Kettles", "Shirts", "Mugs"]})
    return Tables(items, sids, users, pd.DataFrame(reqs), categories)


def tiny_tokenizer(t: Tables) -> GenTokenizer:
    texts = list(t.items["title"]) + list(t.requests["query"]) + list(t.categories["name"])
    return GenTokenizer.train(
        texts,
        SIZES,
        TokenizerConfig(vocab_size=300),
        profile_values={f: t.users[f].tolist() for f in ("gender", "age_band", "price_tier")},
    )


@pytest.fixture(scope="module")
def t() -> Tables:
    return tiny_tables()


@pytest.fixture(scope="module")
def tok(t: Tables) -> GenTokenizer:
    return tiny_tokenizer(t)


def test_tables_follow_the_contracts(t: Tables, tmp_path) -> None:
    for df, spec in ((t.items, ITEMS), (t.sids, SID_ASSIGNMENTS), (t.users, USERS), (t.requests, REQUESTS)):
        write_table(df, spec, tmp_path)
    assert len(read_table(REQUESTS, tmp_path)) == len(t.requests)


def test_item_examples(t: Tables, tok: GenTokenizer) -> None:
    missing_sid = t.sids[t.sids["item_id"] != 105]  # an item without a SID (e.g. delisted) is skipped
    ds = item_examples(t.items, missing_sid, tok)
    assert len(ds) == 23 and ds.kind == "i2sid" and 105 not in ds.sources
    for prompt, target, item_id in zip(ds.prompts, ds.targets, ds.sources):
        row = t.sids[t.sids["item_id"] == item_id].iloc[0]
        assert tuple(target) == tuple(row["codes"])
        assert prompt == tok.encode_prompt(t.items.set_index("item_id").loc[item_id, "title"], kind="item")


def test_query_examples_sample_engaged_sids_per_query(t: Tables, tok: GenTokenizer) -> None:
    cfg = ExamplesConfig(targets_per_query=3, seed=1)
    ds = query_examples(t.requests, t.sids, tok, cfg)
    lookup = {int(i): tuple(c) for i, c in zip(t.sids["item_id"], t.sids["codes"])}
    engaged: dict[str, set] = {}
    for r in t.requests.itertuples():
        engaged.setdefault(r.query, set()).update(lookup[i] for i in r.clicked)
    by_prompt: dict[tuple, list] = {}
    for prompt, target in zip(ds.prompts, ds.targets):
        by_prompt.setdefault(tuple(prompt), []).append(tuple(target))
    queries = {tuple(tok.encode_prompt(q)): q for q in engaged}
    assert len(by_prompt) == sum(1 for q in engaged if engaged[q])
    for prompt, targets in by_prompt.items():
        q = queries[prompt]
        assert len(targets) == len(set(targets)) == min(3, len(engaged[q]))  # distinct, capped at 3
        assert set(targets) <= engaged[q]
    again = query_examples(t.requests, t.sids, tok, cfg)
    np.testing.assert_array_equal(again.targets, ds.targets)  # deterministic from the seed
    one = query_examples(t.requests, t.sids, tok, ExamplesConfig(targets_per_query=1))
    assert len(one) == len(by_prompt)


def test_user_contexts_never_see_the_future(t: Tables) -> None:
    ctx = user_contexts_from_log(t.requests, t.users, t.sids, items=t.items, categories=t.categories, max_history=4)
    lookup = {int(i): tuple(c) for i, c in zip(t.sids["item_id"], t.sids["codes"])}
    named = t.requests[t.requests["user_id"].notna()]
    assert set(ctx) == set(named["request_id"])
    for r in named.itertuples():
        past = named[(named["user_id"] == r.user_id) & (named["ts"] < r.ts)].sort_values(["ts", "request_id"])
        expected = [lookup[i] for clicks in past["clicked"] for i in clicks][-4:]
        c = ctx[r.request_id]
        assert list(c.recent_sids) == expected
        assert c.gender == t.users.set_index("user_id").loc[r.user_id, "gender"]
        assert set(c.recent_categories) <= {"Kettles", "Shirts", "Mugs"} and len(c.recent_categories) <= 3
    first = named.sort_values("ts").groupby("user_id").head(1)
    assert all(ctx[r].recent_sids == () for r in first["request_id"])


def test_user_query_examples(t: Tables, tok: GenTokenizer) -> None:
    ctx = user_contexts_from_log(t.requests, t.users, t.sids)
    ds = user_query_examples(t.requests, t.sids, tok, ctx, ExamplesConfig(targets_per_request=2, max_history=2))
    lookup = {int(i): tuple(c) for i, c in zip(t.sids["item_id"], t.sids["codes"])}
    reqs = t.requests.set_index("request_id")
    assert len(ds) > 0 and ds.kind == "uq2sid"
    for prompt, target, rid in zip(ds.prompts, ds.targets, ds.sources):
        r = reqs.loc[rid]
        assert tuple(target) in {lookup[i] for i in r["clicked"]}
        c = ctx.get(int(rid))
        short = (
            None
            if c is None
            else UserContext(c.gender, c.age_band, c.price_tier, c.recent_sids[-2:], c.recent_categories)
        )
        assert prompt == encode_user_query(tok, r["query"], short)
        if r["user_id"] is None:
            assert prompt == tok.encode_prompt(r["query"])  # anonymous -> the Q2SID prompt
    assert not set(ds.sources) & set(t.requests[t.requests["clicked"].map(len) == 0]["request_id"])


def test_dataset_save_load_and_concat(t: Tables, tok: GenTokenizer, tmp_path) -> None:
    a = item_examples(t.items, t.sids, tok)
    b = query_examples(t.requests, t.sids, tok)
    both = SidDataset.concat(a, b)
    assert len(both) == len(a) + len(b) and both.targets.shape == (len(both), 4)
    back = SidDataset.load(both.save(tmp_path / "ds.parquet"))
    assert back.prompts == both.prompts and back.kind == "mixed"
    np.testing.assert_array_equal(back.targets, both.targets)
    np.testing.assert_array_equal(back.sources, both.sources)
    assert back[3].prompt == both.prompts[3]


def test_context_from_features_is_newest_last_and_skips_what_it_cannot_use() -> None:
    from types import SimpleNamespace

    from genrecall.gen.examples import context_from_features

    feats = SimpleNamespace(
        gender="f",
        age_band="",
        price_tier="low",
        recent_sids=["3-1-0-0", "bad", "9-9-9-9", "2-0-1-0"],
        recent_categories=[7, 5, 7, 99],
    )
    ctx = context_from_features(
        feats, {5: "Kettles", 7: "Mugs"}, max_history=5, max_categories=3, valid_sid=lambda sid: sid[0] < 5
    )
    assert ctx.recent_sids == ((2, 0, 1, 0), (3, 1, 0, 0))  # store is newest first; prompts newest last
    assert ctx.recent_categories == ("Kettles", "Mugs")  # distinct, unknown id 99 dropped, newest last
    assert (ctx.gender, ctx.age_band, ctx.price_tier) == ("f", None, "low")
