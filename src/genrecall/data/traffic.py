"""The marketplace's traffic: hidden intents, the queries users type for them, the simulated ranker's
exposures, and position-biased, preference-driven clicks and purchases (``simulate_requests``).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import vocab
from genrecall.data.catalog import AGE_POS, GENDER_SIGN, leaf_words
from genrecall.data.market_config import DAY_US
from genrecall.data.market_state import Marketplace
from genrecall.data.schema import GROUND_TRUTH, REQUESTS
from genrecall.data.simkit import (
    conform,
    list_column,
    pad_lists,
    pool_draw,
    repeats_left,
    sample_rows,
    sigmoid,
    to_ts,
    to_us,
    visible_share,
)

_MATCH_COLS = ("brand", *vocab.ATTRIBUTE_NAMES)  # what an intent can constrain, brand first
_INCLUDE_P = np.array([0.25, 0.5, 0.3, 0.3, 0.3])  # P(an intent constrains brand, color, material, size, style)
# How sure the ranker is of the intended leaf, per query kind (vague and brand-only queries are not).
_LEAF_CONF = np.array([1.0, 0.9, 1.0, 1.0, 0.3, 0.3, 0.7])
# Where the ranker's near misses come from, per query kind: (same middle category, same top, same brand).
_NEAR_MIX = np.array([[0.6, 0.25, 0.15]] * 4 + [[0.1, 0.1, 0.8], [0.5, 0.5, 0.0], [0.6, 0.25, 0.15]])
_K_IN, _K_NEAR = 48, 24  # ranker candidates: best in-leaf items + random near misses
_AUD_QUERY = {"Women's": "womens", "Men's": "mens", "Kids'": "kids"}
_VAGUE = {t.name: t.vague for t in vocab.TREE}


def simulate_requests(rng: np.random.Generator, market: Marketplace, d0: int, n: int
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of search traffic over the catalog as it is during the day: REQUESTS + GROUND_TRUTH."""
    cfg, items, truth, leaves = market.cfg, market.items, market.item_truth, market.leaves
    lo, hi = to_us(items["listed_at"]), to_us(items["delisted_at"])
    A = np.flatnonzero((lo < d0 + DAY_US) & (hi > d0))  # items listed at some point of the day
    lo, hi = lo[A], hi[A]
    leaf = np.searchsorted(leaves["category_id"].to_numpy(), truth["leaf_id"].to_numpy()[A])
    mid, top = leaves["mid_id"].to_numpy()[leaf], leaves["top_id"].to_numpy()[leaf]
    factorized = [pd.factorize(items[c].to_numpy()[A]) for c in _MATCH_COLS]
    codes = np.stack([f[0] for f in factorized], axis=1)
    brand_index = pd.Index(factorized[0][1])
    cat_f = np.where(items["category_id"].isna().to_numpy()[A], 0.6, 1.0)  # uncategorised: found less
    q = truth["quality"].to_numpy()[A]
    glean, alean = truth["gender_lean"].to_numpy()[A], truth["age_lean"].to_numpy()[A]
    ppos = np.clip(np.log(items["price"].to_numpy()[A] / leaves["price_level"].to_numpy()[leaf]) / 0.35, -1.5, 1.5)
    leaf_ok = np.bincount(leaf[(lo < d0) & (hi > d0 + DAY_US)], minlength=len(leaves)) > 0  # listed all day

    # who searches, when, with which profile (anonymous shoppers get a random hidden profile)
    ts = np.sort(d0 + rng.integers(0, DAY_US, n))
    users = market.users
    elig = np.flatnonzero(to_us(users["created_at"]) < d0)
    act = (np.array([zlib.crc32(u.encode()) for u in users["user_id"].to_numpy()[elig]]) / 2**32 + 0.01) ** -0.6
    uidx = elig[rng.choice(len(elig), n, p=act / act.sum())]
    anon = rng.random(n) < cfg.anonymous_share
    gender = np.where(anon, rng.choice(3, n, p=vocab.GENDER_SHARES),
                      pd.Index(vocab.GENDERS).get_indexer(users["gender"].to_numpy()[uidx]))
    age = np.where(anon, rng.choice(len(AGE_POS), n, p=vocab.AGE_BAND_SHARES),
                   pd.Index(vocab.AGE_BANDS).get_indexer(users["age_band"].to_numpy()[uidx]))
    tier = np.where(anon, rng.integers(0, 3, n), pd.Index(vocab.PRICE_TIERS).get_indexer(users["price_tier"].to_numpy()[uidx])) - 1.0
    g, a = GENDER_SIGN[gender], AGE_POS[age]
    interests = np.where(anon[:, None], -1, pad_lists(users["category_interests"], 4, None)[uidx])
    aff = np.where(anon[:, None], -1, pad_lists(users["brand_affinity"], 4, brand_index)[uidx])

    # intent: a top category (mostly an interest), a leaf in it that fits the shopper, some attributes
    kind = rng.choice(len(vocab.QUERY_KINDS), n, p=np.asarray(cfg.query_mix) / np.sum(cfg.query_mix))
    top_ids = np.unique(leaves["top_id"].to_numpy())
    pop = leaves["popularity"].to_numpy() * leaf_ok
    n_int = (interests >= 0).sum(1)
    own = interests[np.arange(n), (rng.random(n) * np.maximum(n_int, 1)).astype(np.int64)]
    top_pop = np.bincount(np.searchsorted(top_ids, leaves["top_id"].to_numpy()), pop, len(top_ids))
    top_r = np.where((rng.random(n) < cfg.interest_share) & (n_int > 0), own,
                     top_ids[rng.choice(len(top_ids), n, p=top_pop / top_pop.sum())])
    aud = leaves["audience"].to_numpy()
    fit = np.ones((n, len(leaves)))
    fit[:, aud == "Women's"] = np.where(g > 0, 1.6, np.where(g < 0, 0.25, 1.0))[:, None]
    fit[:, aud == "Men's"] = np.where(g < 0, 1.6, np.where(g > 0, 0.25, 1.0))[:, None]
    fit[:, aud == "Kids'"] = np.where((a > -0.6) & (a < 0.6), 1.5, 0.4)[:, None]
    w = pop[None] * fit * (leaves["top_id"].to_numpy()[None] == top_r[:, None])
    w[w.sum(1) == 0] = pop  # an interest with nothing listed today: any leaf
    leaf_r = sample_rows(rng, w)
    include = rng.random((n, 5)) < _INCLUDE_P
    visible = np.zeros((n, 5), dtype=bool)
    brandish = np.isin(kind, [3, 4])
    include[brandish, 0] = visible[brandish, 0] = True
    attrish = (kind == 2) | ((kind == 6) & (rng.random(n) < 0.4))
    for extra in (np.ones(n, dtype=bool), rng.random(n) < 0.3):
        k = 1 + rng.choice(4, n, p=_INCLUDE_P[1:] / _INCLUDE_P[1:].sum())
        sel = np.flatnonzero(attrish & extra)
        include[sel, k[sel]] = visible[sel, k[sel]] = True
    conf = _LEAF_CONF[kind]

    # per intended leaf: the seed item the shopper has in mind, the ground truth, the in-leaf candidates
    seed, intent = np.zeros(n, dtype=np.int64), np.full((n, 5), -1)
    cand_in = np.full((n, _K_IN), -1)
    gt_r, gt_i = [], []
    by_leaf = np.argsort(leaf, kind="stable")
    bounds = np.searchsorted(leaf[by_leaf], np.arange(len(leaves) + 1))
    for l in np.unique(leaf_r):
        R, I = np.flatnonzero(leaf_r == l), by_leaf[bounds[l]: bounds[l + 1]]
        t = ts[R][:, None]
        alive = (lo[I][None] <= t) & (hi[I][None] > t)
        w = alive * np.exp(q[I])[None]
        for k in range(aff.shape[1]):  # affinity brands are distinct, so at most one slot matches
            w *= 1 + 2 * (codes[I, 0][None] == aff[R, k][:, None])
        s = I[sample_rows(rng, w)]
        seed[R] = s
        it = intent[R] = np.where(include[R], codes[s], -1)
        full, hit = alive.copy(), np.zeros(alive.shape, dtype=np.float32)
        for k in range(len(_MATCH_COLS)):  # 2-D passes: (requests x items) per attribute
            eq = codes[I, k][None] == it[:, k][:, None]
            full &= eq | (it[:, k] < 0)[:, None]
            hit += eq & visible[R, k][:, None]
        rr, cc = np.nonzero(full)
        gt_r.append(R[rr]), gt_i.append(A[I[cc]])
        n_vis = visible[R].sum(1)[:, None]
        vis_frac = np.where(n_vis > 0, hit / np.maximum(n_vis, 1), 1.0)
        pre = conf[R][:, None] * cat_f[I][None] + vis_frac + 0.4 * q[I][None]
        pre = np.where(alive, pre + 0.6 * rng.random(pre.shape, dtype=np.float32), -np.inf)
        keep = np.argpartition(-pre, _K_IN - 1, axis=1)[:, :_K_IN] if len(I) > _K_IN else np.broadcast_to(
            np.arange(len(I)), pre.shape)
        cand_in[R, : keep.shape[1]] = np.where(np.isfinite(np.take_along_axis(pre, keep, 1)), I[keep], -1)

    # near misses: random items of the same middle category, top category or brand
    src = sample_rows(rng, np.repeat(_NEAR_MIX[kind], _K_NEAR, axis=0)).reshape(n, _K_NEAR)
    u = rng.random((n, _K_NEAR))
    near = np.select([src == 0, src == 1], [pool_draw(mid, mid[seed][:, None], u), pool_draw(top, top[seed][:, None], u)],
                     pool_draw(codes[:, 0], codes[seed, 0][:, None], u))

    # the ranker: relevance to the query + popularity + a little personalization + noise
    C = np.hstack([cand_in, near])
    valid = C >= 0
    C = np.where(valid, C, 0)
    valid &= (lo[C] <= ts[:, None]) & (hi[C] > ts[:, None]) & ~repeats_left(C, valid)
    stable = np.flatnonzero((lo < d0) & (hi > d0 + DAY_US))
    for _ in range(20):  # tiny leaves: top up short rows with items from anywhere until 10 can be shown
        short = valid.sum(1) < cfg.exposures[0]
        if not short.any():
            break
        extra = np.where(short[:, None], stable[rng.integers(0, len(stable), (n, 8))], 0)
        C, valid = np.hstack([C, extra]), np.hstack([valid, np.repeat(short[:, None], 8, axis=1)])
        valid &= ~repeats_left(C, valid)
    match = codes[C] == intent[:, None, :]
    leaf_eq = leaf[C] == leaf_r[:, None]
    full = leaf_eq & (match | (intent[:, None, :] < 0)).all(-1)
    liked = (codes[C, 0][:, :, None] == aff[:, None, :]).any(-1)
    price_fit = -np.abs(ppos[C] - tier[:, None])
    rel = (conf[:, None] * leaf_eq * cat_f[C] + 0.3 * (mid[C] == mid[leaf_r][:, None])
           + 0.15 * (top[C] == top_r[:, None]) + visible_share(match, visible))
    score = rel + 0.4 * q[C] + 0.3 * liked + 0.2 * price_fit + 0.4 * rng.gumbel(size=C.shape)
    score = np.where(valid, score, -np.inf)
    lo_e, hi_e = cfg.exposures
    n_exp = np.minimum(rng.integers(lo_e, hi_e + 1, n), valid.sum(1))
    rank = np.argsort(-score, axis=1, kind="stable")[:, :hi_e]
    shown = np.arange(hi_e)[None] < n_exp[:, None]
    E, full, liked, price_fit = (np.take_along_axis(x, rank, 1) for x in (C, full, liked, price_fit))
    partial = np.take_along_axis(leaf_eq, rank, 1) & ~full

    # clicks: position-biased examination x attraction (relevance + the shopper's own preferences)
    pref = (liked + (0.35 + 0.7 * price_fit) + 0.9 * g[:, None] * glean[E]
            + (0.3 - 0.6 * np.abs(a[:, None] - alean[E])))
    pw = cfg.preference_weight
    examine = (1.0 / (1.0 + np.arange(hi_e))) ** cfg.position_bias
    click = shown & (rng.random(E.shape) < examine * sigmoid(-2.0 + 2.2 * full + 1.0 * partial + pw * pref))
    buy = click & (rng.random(E.shape) < sigmoid(-2.5 + 1.2 * full + 0.6 * pw * pref))

    ids = items["item_id"].to_numpy()[A]
    first = int(market.requests["request_id"].iloc[-1]) + 1 if len(market.requests) else 1
    rid = np.arange(first, first + n, dtype=np.int64)
    gift = np.where(glean[seed] > 0.3, "f", np.where(glean[seed] < -0.3, "m", "u"))
    requests = pd.DataFrame({
        "request_id": rid, "ts": to_ts(ts),
        "user_id": np.where(anon, None, users["user_id"].to_numpy()[uidx]),
        "query": _queries(rng, kind, leaf_r, A[seed], visible, gift, leaves, items),
        "query_kind": np.asarray(vocab.QUERY_KINDS)[kind],
        "exposed": list_column(ids[E], shown), "clicked": list_column(ids[E], click), "purchased": list_column(ids[E], buy),
    })
    rows, its = np.concatenate(gt_r), items["item_id"].to_numpy()[np.concatenate(gt_i)]
    order = np.lexsort((its, rows))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    gt = pd.DataFrame({"request_id": rid, "intent_category_id": leaves["category_id"].to_numpy()[leaf_r],
                       "relevant": pd.arrays.ArrowExtensionArray(
                           pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(its[order])))})
    return conform(requests, REQUESTS), conform(gt, GROUND_TRUTH)


def _queries(rng: np.random.Generator, kind: np.ndarray, leaf_r: np.ndarray, seed_rows: np.ndarray,
             visible: np.ndarray, gift: np.ndarray, leaves: pd.DataFrame, items: pd.DataFrame) -> list[str]:
    """The query each shopper types for their intent, in the variant ``kind`` (vocab.QUERY_KINDS)."""
    words = leaf_words(leaves)
    vals = {c: items[c].to_numpy()[seed_rows] for c in _MATCH_COLS}
    top_names, mid_names = leaves["top"].to_numpy(), leaves["mid"].to_numpy()
    r = rng.random((len(kind), 6))
    ints = rng.integers(0, 1 << 30, (len(kind), 4))
    out = []
    for i in range(len(kind)):
        noun, syns, aud, _ = words[leaf_r[i]]
        k = vocab.QUERY_KINDS[kind[i]]
        base = noun
        if syns and (k == "synonym" or (k in ("attr_noun", "brand_noun", "misspelled") and r[i, 0] < 0.4)):
            base = syns[ints[i, 0] % len(syns)]
        if aud and r[i, 1] < 0.35:
            base = f"{_AUD_QUERY[aud]} {base}"
        attrs = [vals[c][i] for j, c in enumerate(_MATCH_COLS) if j > 0 and visible[i, j]]
        brand = vals["brand"][i]
        if k == "brand":
            text = brand
        elif k == "brand_noun":
            text = f"{brand} {base}" if r[i, 2] < 0.7 else f"{base} {brand}"
        elif k == "vague":
            opts = (_VAGUE[top_names[leaf_r[i]]], vocab.GIFT_PHRASES[gift[i]], (mid_names[leaf_r[i]],))
            pick = opts[0 if r[i, 2] < 0.5 else 1 if r[i, 2] < 0.8 else 2]
            text = pick[ints[i, 1] % len(pick)]
        elif attrs:
            text = " ".join([*attrs, base]) if r[i, 3] < 0.75 else " ".join([base, *attrs])
        else:
            text = base
        if k == "misspelled":
            ws = text.split(" ")
            j = max(range(len(ws)), key=lambda x: len(ws[x]))
            ws[j] = vocab.typo(ws[j], int(ints[i, 2] % 3), r[i, 4])
            text = " ".join(ws)
        out.append(text.lower())
    return out


