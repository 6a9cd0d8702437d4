"""The marketplace's traffic: hidden intents, the queries users type for them, the simulated ranker's
exposures, and position-biased, preference-driven clicks and purchases (``simulate_requests``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from genrecall.data.market_config import MarketplaceConfig


_MATCH_COLS = ("brand", *vocab.ATTRIBUTE_NAMES)  # what an intent can constrain, brand first
_INCLUDE_P = np.array([0.25, 0.5, 0.3, 0.3, 0.3])  # P(an intent constrains brand, color, material, size, style)
# How sure the ranker is of the intended leaf, per query kind (vague and brand-only queries are not).
_LEAF_CONF = np.array([1.0, 0.9, 1.0, 1.0, 0.3, 0.3, 0.7])
# Where the ranker's near misses come from, per query kind: (same middle category, same top, same brand).
_NEAR_MIX = np.array([[0.6, 0.25, 0.15]] * 4 + [[0.1, 0.1, 0.8], [0.5, 0.5, 0.0], [0.6, 0.25, 0.15]])
_K_IN, _K_NEAR = 48, 24  # ranker candidates: best in-leaf items + random near misses
_AUD_QUERY = {"Women's": "womens", "Men's": "mens", "Kids'": "kids"}
_VAGUE = {t.name: t.vague for t in vocab.TREE}


@dataclass
class _Listed:
    """The items listed at some point of the day (``rows`` into ``market.items``), as arrays per item."""

    rows: np.ndarray  # row in market.items
    listed_from: np.ndarray  # us
    listed_until: np.ndarray  # us (NEVER when not delisted)
    leaf: np.ndarray  # row in market.leaves
    mid: np.ndarray
    top: np.ndarray
    codes: np.ndarray  # (items, 5) factorized brand + attributes (_MATCH_COLS)
    brand_index: pd.Index  # brand code -> brand
    findable: np.ndarray  # ranker's factor: uncategorised items are found less
    quality: np.ndarray
    gender_lean: np.ndarray
    age_lean: np.ndarray
    price_position: np.ndarray  # log price relative to the leaf's price level, clipped
    all_day: np.ndarray  # bool: listed for the whole day

    def alive(self, items: np.ndarray, when: np.ndarray) -> np.ndarray:
        """Whether ``items`` are listed at the times ``when`` (broadcasting)."""
        return (self.listed_from[items] <= when) & (self.listed_until[items] > when)


@dataclass
class _Shoppers:
    """Who searches and when: one row per request, with the (possibly hidden, random) profile."""

    ts: np.ndarray  # us, sorted
    user_rows: np.ndarray  # row in market.users
    anonymous: np.ndarray
    gender_sign: np.ndarray
    age_pos: np.ndarray
    price_tier: np.ndarray  # -1, 0, 1
    interests: np.ndarray  # (n, 4) top category ids, -1 = none
    affinity: np.ndarray  # (n, 4) brand codes, -1 = none


@dataclass
class _Intents:
    """What each shopper wants: the query kind, the top and leaf category, the attributes constrained
    (``include``) and those the query spells out (``visible``)."""

    kind: np.ndarray
    top: np.ndarray  # top_id
    leaf: np.ndarray  # row in market.leaves
    include: np.ndarray  # (n, 5) bool per _MATCH_COLS
    visible: np.ndarray  # (n, 5) bool per _MATCH_COLS
    confidence: np.ndarray  # how sure the ranker is of the leaf (_LEAF_CONF)


@dataclass
class _Targets:
    """Per request: the seed item the shopper has in mind, the intent codes (-1 = unconstrained), the
    best in-leaf candidates of the ranker and the ground truth (request, item row) pairs."""

    seed: np.ndarray
    intent: np.ndarray  # (n, 5)
    in_leaf: np.ndarray  # (n, _K_IN), -1 = none
    truth_requests: np.ndarray
    truth_items: np.ndarray  # rows in market.items


@dataclass
class _Ranked:
    """The ranker's result per request: exposed items by position and what the shopper sees in them."""

    items: np.ndarray  # (n, hi_e) listed-item index per position
    shown: np.ndarray  # (n, hi_e) bool: position actually exposed
    full: np.ndarray  # matches the whole intent
    partial: np.ndarray  # same leaf, not the whole intent
    liked: np.ndarray  # one of the shopper's affinity brands
    price_fit: np.ndarray


def simulate_requests(
    rng: np.random.Generator, market: Marketplace, d0: int, n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of search traffic over the catalog as it is during the day: REQUESTS + GROUND_TRUTH.

    The steps draw from ``rng`` in this order, so the tables are a function of the seed."""
    listed = _listed_items(market, d0)
    shoppers = _draw_shoppers(rng, market, d0, n, listed.brand_index)
    intents = _draw_intents(rng, market, listed, shoppers)
    targets = _seeds_truth_and_in_leaf_candidates(rng, market, listed, shoppers, intents)
    near = _near_misses(rng, listed, intents.kind, targets.seed)
    ranked = _rank(rng, market.cfg, d0, listed, shoppers, intents, targets, near)
    click, buy = _clicks_and_purchases(rng, market.cfg, listed, shoppers, ranked)
    first = int(market.requests["request_id"].iloc[-1]) + 1 if len(market.requests) else 1
    request_ids = np.arange(first, first + n, dtype=np.int64)
    requests = _requests_table(rng, market, request_ids, listed, shoppers, intents, targets, ranked, click, buy)
    truth = _ground_truth_table(market, request_ids, intents.leaf, targets)
    return conform(requests, REQUESTS), conform(truth, GROUND_TRUTH)


def _listed_items(market: Marketplace, d0: int) -> _Listed:
    """The items listed at some point of the day starting at ``d0``, with what the simulator needs of them."""
    items, truth, leaves = market.items, market.item_truth, market.leaves
    listed_from, listed_until = to_us(items["listed_at"]), to_us(items["delisted_at"])
    rows = np.flatnonzero((listed_from < d0 + DAY_US) & (listed_until > d0))
    listed_from, listed_until = listed_from[rows], listed_until[rows]
    leaf = np.searchsorted(leaves["category_id"].to_numpy(), truth["leaf_id"].to_numpy()[rows])
    factorized = [pd.factorize(items[c].to_numpy()[rows]) for c in _MATCH_COLS]
    price_ratio = items["price"].to_numpy()[rows] / leaves["price_level"].to_numpy()[leaf]
    return _Listed(
        rows=rows,
        listed_from=listed_from,
        listed_until=listed_until,
        leaf=leaf,
        mid=leaves["mid_id"].to_numpy()[leaf],
        top=leaves["top_id"].to_numpy()[leaf],
        codes=np.stack([f[0] for f in factorized], axis=1),
        brand_index=pd.Index(factorized[0][1]),
        findable=np.where(items["category_id"].isna().to_numpy()[rows], 0.6, 1.0),
        quality=truth["quality"].to_numpy()[rows],
        gender_lean=truth["gender_lean"].to_numpy()[rows],
        age_lean=truth["age_lean"].to_numpy()[rows],
        price_position=np.clip(np.log(price_ratio) / 0.35, -1.5, 1.5),
        all_day=(listed_from < d0) & (listed_until > d0 + DAY_US),
    )


def _draw_shoppers(rng: np.random.Generator, market: Marketplace, d0: int, n: int, brands: pd.Index) -> _Shoppers:
    """Who searches, when, with which profile (anonymous shoppers get a random hidden profile)."""
    cfg, users = market.cfg, market.users
    ts = np.sort(d0 + rng.integers(0, DAY_US, n))
    eligible = np.flatnonzero(to_us(users["created_at"]) < d0)
    user_keys = np.array([zlib.crc32(u.encode()) for u in users["user_id"].to_numpy()[eligible]])
    activity = (user_keys / 2**32 + 0.01) ** -0.6
    user_rows = eligible[rng.choice(len(eligible), n, p=activity / activity.sum())]
    anon = rng.random(n) < cfg.anonymous_share
    gender = np.where(
        anon,
        rng.choice(3, n, p=vocab.GENDER_SHARES),
        pd.Index(vocab.GENDERS).get_indexer(users["gender"].to_numpy()[user_rows]),
    )
    age = np.where(
        anon,
        rng.choice(len(AGE_POS), n, p=vocab.AGE_BAND_SHARES),
        pd.Index(vocab.AGE_BANDS).get_indexer(users["age_band"].to_numpy()[user_rows]),
    )
    known_tier = pd.Index(vocab.PRICE_TIERS).get_indexer(users["price_tier"].to_numpy()[user_rows])
    tier = np.where(anon, rng.integers(0, 3, n), known_tier) - 1.0
    return _Shoppers(
        ts=ts,
        user_rows=user_rows,
        anonymous=anon,
        gender_sign=GENDER_SIGN[gender],
        age_pos=AGE_POS[age],
        price_tier=tier,
        interests=np.where(anon[:, None], -1, pad_lists(users["category_interests"], 4, None)[user_rows]),
        affinity=np.where(anon[:, None], -1, pad_lists(users["brand_affinity"], 4, brands)[user_rows]),
    )


def _draw_intents(rng: np.random.Generator, market: Marketplace, listed: _Listed, shoppers: _Shoppers) -> _Intents:
    """A top category (mostly an interest), a leaf in it that fits the shopper, some attributes."""
    cfg, leaves = market.cfg, market.leaves
    n = len(shoppers.ts)
    kind = rng.choice(len(vocab.QUERY_KINDS), n, p=np.asarray(cfg.query_mix) / np.sum(cfg.query_mix))
    top_ids = np.unique(leaves["top_id"].to_numpy())
    leaf_ok = np.bincount(listed.leaf[listed.all_day], minlength=len(leaves)) > 0  # some item listed all day
    popularity = leaves["popularity"].to_numpy() * leaf_ok
    interests = shoppers.interests
    n_interests = (interests >= 0).sum(1)
    own = interests[np.arange(n), (rng.random(n) * np.maximum(n_interests, 1)).astype(np.int64)]
    top_popularity = np.bincount(np.searchsorted(top_ids, leaves["top_id"].to_numpy()), popularity, len(top_ids))
    top = np.where(
        (rng.random(n) < cfg.interest_share) & (n_interests > 0),
        own,
        top_ids[rng.choice(len(top_ids), n, p=top_popularity / top_popularity.sum())],
    )
    weights = popularity[None] * _audience_fit(leaves, shoppers) * (leaves["top_id"].to_numpy()[None] == top[:, None])
    weights[weights.sum(1) == 0] = popularity  # an interest with nothing listed today: any leaf
    leaf = sample_rows(rng, weights)
    include, visible = _draw_attributes(rng, kind)
    return _Intents(kind, top, leaf, include, visible, _LEAF_CONF[kind])


def _audience_fit(leaves: pd.DataFrame, shoppers: _Shoppers) -> np.ndarray:
    """(n, leaves) weight of each leaf's audience for each shopper (women's, men's, kids')."""
    gender, age = shoppers.gender_sign, shoppers.age_pos
    audience = leaves["audience"].to_numpy()
    fit = np.ones((len(gender), len(leaves)))
    fit[:, audience == "Women's"] = np.where(gender > 0, 1.6, np.where(gender < 0, 0.25, 1.0))[:, None]
    fit[:, audience == "Men's"] = np.where(gender < 0, 1.6, np.where(gender > 0, 0.25, 1.0))[:, None]
    fit[:, audience == "Kids'"] = np.where((age > -0.6) & (age < 0.6), 1.5, 0.4)[:, None]
    return fit


def _draw_attributes(rng: np.random.Generator, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of brand + attributes each intent constrains, and which of them the query spells out."""
    n = len(kind)
    include = rng.random((n, 5)) < _INCLUDE_P
    visible = np.zeros((n, 5), dtype=bool)
    brandish = np.isin(kind, [3, 4])
    include[brandish, 0] = visible[brandish, 0] = True
    attrish = (kind == 2) | ((kind == 6) & (rng.random(n) < 0.4))
    for extra in (np.ones(n, dtype=bool), rng.random(n) < 0.3):
        column = 1 + rng.choice(4, n, p=_INCLUDE_P[1:] / _INCLUDE_P[1:].sum())
        sel = np.flatnonzero(attrish & extra)
        include[sel, column[sel]] = visible[sel, column[sel]] = True
    return include, visible


def _seeds_truth_and_in_leaf_candidates(
    rng: np.random.Generator, market: Marketplace, listed: _Listed, shoppers: _Shoppers, intents: _Intents
) -> _Targets:
    """Per intended leaf: the seed item the shopper has in mind, the ground truth, the in-leaf candidates."""
    n = len(intents.leaf)
    seed, intent = np.zeros(n, dtype=np.int64), np.full((n, 5), -1)
    in_leaf = np.full((n, _K_IN), -1)
    truth_requests, truth_items = [], []
    by_leaf = np.argsort(listed.leaf, kind="stable")
    bounds = np.searchsorted(listed.leaf[by_leaf], np.arange(len(market.leaves) + 1))
    for leaf_row in np.unique(intents.leaf):
        requests = np.flatnonzero(intents.leaf == leaf_row)
        members = by_leaf[bounds[leaf_row] : bounds[leaf_row + 1]]
        alive = listed.alive(members[None], shoppers.ts[requests][:, None])  # (requests x items)
        seeds = members[sample_rows(rng, _seed_weights(listed, shoppers, requests, members, alive))]
        seed[requests] = seeds
        wanted = intent[requests] = np.where(intents.include[requests], listed.codes[seeds], -1)
        full, visible_hits = _match_intent(listed.codes[members], wanted, intents.visible[requests], alive)
        hit_rows, hit_cols = np.nonzero(full)
        truth_requests.append(requests[hit_rows])
        truth_items.append(listed.rows[members[hit_cols]])
        best = _best_in_leaf(rng, listed, intents, requests, members, alive, visible_hits)
        in_leaf[requests, : best.shape[1]] = best
    return _Targets(seed, intent, in_leaf, np.concatenate(truth_requests), np.concatenate(truth_items))


def _seed_weights(
    listed: _Listed, shoppers: _Shoppers, requests: np.ndarray, members: np.ndarray, alive: np.ndarray
) -> np.ndarray:
    """(requests x leaf items) weight of each live item as the one the shopper has in mind."""
    weights = alive * np.exp(listed.quality[members])[None]
    for slot in range(shoppers.affinity.shape[1]):  # affinity brands are distinct, so at most one slot matches
        weights *= 1 + 2 * (listed.codes[members, 0][None] == shoppers.affinity[requests, slot][:, None])
    return weights


def _match_intent(
    member_codes: np.ndarray, wanted: np.ndarray, visible: np.ndarray, alive: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(requests x items): live items that meet every constraint, and how many visible constraints each meets."""
    full, hits = alive.copy(), np.zeros(alive.shape, dtype=np.float32)
    for column in range(len(_MATCH_COLS)):  # 2-D passes: (requests x items) per attribute
        eq = member_codes[:, column][None] == wanted[:, column][:, None]
        full &= eq | (wanted[:, column] < 0)[:, None]
        hits += eq & visible[:, column][:, None]
    return full, hits


def _best_in_leaf(
    rng: np.random.Generator,
    listed: _Listed,
    intents: _Intents,
    requests: np.ndarray,
    members: np.ndarray,
    alive: np.ndarray,
    visible_hits: np.ndarray,
) -> np.ndarray:
    """The ranker's up to _K_IN best live items of the leaf per request (-1 = none), by a noisy pre-score."""
    n_visible = intents.visible[requests].sum(1)[:, None]
    visible_share = np.where(n_visible > 0, visible_hits / np.maximum(n_visible, 1), 1.0)
    pre = (
        intents.confidence[requests][:, None] * listed.findable[members][None]
        + visible_share
        + 0.4 * listed.quality[members][None]
    )
    pre = np.where(alive, pre + 0.6 * rng.random(pre.shape, dtype=np.float32), -np.inf)
    keep = (
        np.argpartition(-pre, _K_IN - 1, axis=1)[:, :_K_IN]
        if len(members) > _K_IN
        else np.broadcast_to(np.arange(len(members)), pre.shape)
    )
    return np.where(np.isfinite(np.take_along_axis(pre, keep, 1)), members[keep], -1)


def _near_misses(rng: np.random.Generator, listed: _Listed, kind: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """(n, _K_NEAR) random items of the seed's middle category, top category or brand (mix per query kind)."""
    n = len(kind)
    source = sample_rows(rng, np.repeat(_NEAR_MIX[kind], _K_NEAR, axis=0)).reshape(n, _K_NEAR)
    uniforms = rng.random((n, _K_NEAR))
    brands = listed.codes[:, 0]
    return np.select(
        [source == 0, source == 1],
        [
            pool_draw(listed.mid, listed.mid[seed][:, None], uniforms),
            pool_draw(listed.top, listed.top[seed][:, None], uniforms),
        ],
        pool_draw(brands, brands[seed][:, None], uniforms),
    )


def _candidate_pool(
    rng: np.random.Generator, min_shown: int, listed: _Listed, ts: np.ndarray, in_leaf: np.ndarray, near: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ranker's candidates (n, c) and which are valid (live, not repeated), topped up from anywhere."""
    n = len(ts)
    candidates = np.hstack([in_leaf, near])
    valid = candidates >= 0
    candidates = np.where(valid, candidates, 0)
    valid &= listed.alive(candidates, ts[:, None]) & ~repeats_left(candidates, valid)
    stable = np.flatnonzero(listed.all_day)
    for _ in range(20):  # tiny leaves: top up short rows with items from anywhere until 10 can be shown
        short = valid.sum(1) < min_shown
        if not short.any():
            break
        extra = np.where(short[:, None], stable[rng.integers(0, len(stable), (n, 8))], 0)
        candidates = np.hstack([candidates, extra])
        valid = np.hstack([valid, np.repeat(short[:, None], 8, axis=1)])
        valid &= ~repeats_left(candidates, valid)
    return candidates, valid


def _rank(
    rng: np.random.Generator,
    cfg: MarketplaceConfig,
    d0: int,
    listed: _Listed,
    shoppers: _Shoppers,
    intents: _Intents,
    targets: _Targets,
    near: np.ndarray,
) -> _Ranked:
    """The ranker: relevance to the query + popularity + a little personalization + noise."""
    candidates, valid = _candidate_pool(rng, cfg.exposures[0], listed, shoppers.ts, targets.in_leaf, near)
    intent, leaf = targets.intent, intents.leaf
    match = listed.codes[candidates] == intent[:, None, :]
    leaf_eq = listed.leaf[candidates] == leaf[:, None]
    full = leaf_eq & (match | (intent[:, None, :] < 0)).all(-1)
    liked = (listed.codes[candidates, 0][:, :, None] == shoppers.affinity[:, None, :]).any(-1)
    price_fit = -np.abs(listed.price_position[candidates] - shoppers.price_tier[:, None])
    relevance = (
        intents.confidence[:, None] * leaf_eq * listed.findable[candidates]
        # sic: ``listed.mid`` is per listed item but indexed by leaf row here; kept as is (a pure refactor)
        + 0.3 * (listed.mid[candidates] == listed.mid[leaf][:, None])
        + 0.15 * (listed.top[candidates] == intents.top[:, None])
        + visible_share(match, intents.visible)
    )
    noise = 0.4 * rng.gumbel(size=candidates.shape)
    score = relevance + 0.4 * listed.quality[candidates] + 0.3 * liked + 0.2 * price_fit + noise
    score = np.where(valid, score, -np.inf)
    lo_e, hi_e = cfg.exposures
    n_exposed = np.minimum(rng.integers(lo_e, hi_e + 1, len(leaf)), valid.sum(1))
    order = np.argsort(-score, axis=1, kind="stable")[:, :hi_e]
    shown = np.arange(hi_e)[None] < n_exposed[:, None]
    exposed, full, liked, price_fit = (np.take_along_axis(x, order, 1) for x in (candidates, full, liked, price_fit))
    partial = np.take_along_axis(leaf_eq, order, 1) & ~full
    return _Ranked(exposed, shown, full, partial, liked, price_fit)


def _clicks_and_purchases(
    rng: np.random.Generator, cfg: MarketplaceConfig, listed: _Listed, shoppers: _Shoppers, ranked: _Ranked
) -> tuple[np.ndarray, np.ndarray]:
    """Position-biased examination x attraction (relevance + the shopper's own preferences)."""
    exposed = ranked.items
    gender_fit = 0.9 * shoppers.gender_sign[:, None] * listed.gender_lean[exposed]
    age_fit = 0.3 - 0.6 * np.abs(shoppers.age_pos[:, None] - listed.age_lean[exposed])
    preference = ranked.liked + (0.35 + 0.7 * ranked.price_fit) + gender_fit + age_fit
    weight = cfg.preference_weight
    examine = (1.0 / (1.0 + np.arange(exposed.shape[1]))) ** cfg.position_bias
    attraction = sigmoid(-2.0 + 2.2 * ranked.full + 1.0 * ranked.partial + weight * preference)
    click = ranked.shown & (rng.random(exposed.shape) < examine * attraction)
    buy = click & (rng.random(exposed.shape) < sigmoid(-2.5 + 1.2 * ranked.full + 0.6 * weight * preference))
    return click, buy


def _requests_table(
    rng: np.random.Generator,
    market: Marketplace,
    request_ids: np.ndarray,
    listed: _Listed,
    shoppers: _Shoppers,
    intents: _Intents,
    targets: _Targets,
    ranked: _Ranked,
    click: np.ndarray,
    buy: np.ndarray,
) -> pd.DataFrame:
    """The REQUESTS rows (unconformed); draws the query texts."""
    items, users = market.items, market.users
    exposed_ids = items["item_id"].to_numpy()[listed.rows][ranked.items]
    seed_lean = listed.gender_lean[targets.seed]
    gift = np.where(seed_lean > 0.3, "f", np.where(seed_lean < -0.3, "m", "u"))
    seed_rows = listed.rows[targets.seed]
    return pd.DataFrame(
        {
            "request_id": request_ids,
            "ts": to_ts(shoppers.ts),
            "user_id": np.where(shoppers.anonymous, None, users["user_id"].to_numpy()[shoppers.user_rows]),
            "query": _queries(rng, intents.kind, intents.leaf, seed_rows, intents.visible, gift, market.leaves, items),
            "query_kind": np.asarray(vocab.QUERY_KINDS)[intents.kind],
            "exposed": list_column(exposed_ids, ranked.shown),
            "clicked": list_column(exposed_ids, click),
            "purchased": list_column(exposed_ids, buy),
        }
    )


def _ground_truth_table(
    market: Marketplace, request_ids: np.ndarray, leaf: np.ndarray, targets: _Targets
) -> pd.DataFrame:
    """The GROUND_TRUTH rows (unconformed): intended leaf and relevant item ids per request, sorted."""
    rows = targets.truth_requests
    item_ids = market.items["item_id"].to_numpy()[targets.truth_items]
    order = np.lexsort((item_ids, rows))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(request_ids)))])
    relevant = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(item_ids[order]))
    return pd.DataFrame(
        {
            "request_id": request_ids,
            "intent_category_id": market.leaves["category_id"].to_numpy()[leaf],
            "relevant": pd.arrays.ArrowExtensionArray(relevant),
        }
    )


def _queries(
    rng: np.random.Generator,
    kind: np.ndarray,
    leaf_r: np.ndarray,
    seed_rows: np.ndarray,
    visible: np.ndarray,
    gift: np.ndarray,
    leaves: pd.DataFrame,
    items: pd.DataFrame,
) -> list[str]:
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
