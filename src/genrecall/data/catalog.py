"""The marketplace's catalog: category tree, brands, items with shop-style noisy titles, and users.

Called by ``marketplace.init_marketplace`` (the initial catalog) and ``marketplace.next_day`` (each
day's new items, brands and users). Every draw comes from the generator it is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrecall.data import vocab
from genrecall.data.market_config import NEVER, SIM_BRANDS, SIM_ITEMS, SIM_LEAVES, MarketplaceConfig, Preset
from genrecall.data.schema import CATEGORIES, ITEMS, PRICE_EVENTS, USERS
from genrecall.data.simkit import conform, empty_frame, flatten_lists, shop_price, to_ts


def build_tree(rng: np.random.Generator, size: Preset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CATEGORIES (ids: tops, then mids, then leaves) and the leaves' hidden properties."""
    tops = [vocab.TREE[i] for i in (size.tops or range(len(vocab.TREE)))]
    cats: list[dict] = [
        {
            "category_id": i + 1,
            "parent_id": None,
            "level": 1,
            "name": t.name,
            "path": t.name,
            "noun": None,
            "synonyms": None,
        }
        for i, t in enumerate(tops)
    ]
    mids = []
    for ti, t in enumerate(tops):
        for name, spec in list(t.mids.items())[: size.mids]:
            mids.append((ti, len(cats) + 1, name, spec))
            cats.append(
                {
                    "category_id": len(cats) + 1,
                    "parent_id": ti + 1,
                    "level": 2,
                    "name": name,
                    "path": f"{t.name} > {name}",
                    "noun": None,
                    "synonyms": None,
                }
            )
    leaves: list[dict] = []
    for ti, mid_id, mid_name, spec in mids:
        top = tops[ti]
        for leaf_spec in spec.split(";")[: size.leaves]:
            noun, syns, base = (x.strip() for x in leaf_spec.split("|"))
            for aud in top.audiences or ("",):
                name = f"{aud} {vocab.cap(noun)}".strip()
                cid = len(cats) + 1
                cats.append(
                    {
                        "category_id": cid,
                        "parent_id": mid_id,
                        "level": 3,
                        "name": name,
                        "path": f"{top.name} > {mid_name} > {name}",
                        "noun": noun,
                        "synonyms": [s.strip() for s in syns.split(",")],
                    }
                )
                g, a = vocab.AUDIENCE_LEANS.get(aud, (0.5 * top.gender_lean, 0.5 * top.age_lean))
                row = {
                    "category_id": cid,
                    "top_id": ti + 1,
                    "mid_id": mid_id,
                    "top": top.name,
                    "mid": mid_name,
                    "noun": noun,
                    "synonyms": cats[-1]["synonyms"],
                    "domain": top.domain,
                    "audience": aud,
                    "price_level": float(base) * float(np.exp(rng.normal(0, 0.15))),
                    "popularity": float(np.exp(rng.normal(0, 0.7))),
                    "gender_lean": g,
                    "age_lean": a,
                }
                for attr, (lo, hi) in zip(vocab.ATTRIBUTE_NAMES, ((4, 8), (3, 6), (3, 6), (4, 7))):
                    words = vocab.ATTRIBUTES[top.domain][attr]
                    pick = np.sort(
                        rng.choice(len(words), min(len(words), int(rng.integers(lo, hi + 1))), replace=False)
                    )
                    row[attr] = [words[j] for j in pick]
                leaves.append(row)
    return conform(pd.DataFrame(cats), CATEGORIES), conform(pd.DataFrame(leaves), SIM_LEAVES)


_POOLS: dict[int, tuple[str, ...]] = {}


def brand_pool(seed: int) -> tuple[str, ...]:
    """Every synthetic brand name, in a seeded order: brands are taken from the front."""
    if seed not in _POOLS:
        names = [h + t for h in vocab.BRAND_HEADS for t in vocab.BRAND_TAILS]
        names += [h + m + t for h in vocab.BRAND_HEADS for m in vocab.BRAND_MIDS for t in vocab.BRAND_TAILS]
        names = list(dict.fromkeys(names))
        _POOLS[seed] = tuple(names[i] for i in np.random.default_rng([seed, 0, 999]).permutation(len(names)))
    return _POOLS[seed]


def make_brands(
    rng: np.random.Generator,
    names: tuple[str, ...],
    leaves: pd.DataFrame,
    created_us: np.ndarray,
    existing: pd.DataFrame | None,
) -> pd.DataFrame:
    """Brands with a price tier, a Zipf weight and 1-3 top categories (the biggest span 4-6)."""
    n = len(names)
    if n == 0:
        return empty_frame(SIM_BRANDS)
    top_ids = np.unique(leaves["top_id"].to_numpy())
    tier = rng.choice(3, n, p=vocab.BRAND_TIER_SHARES)
    if existing is None:  # names come in random order, so rank = position
        weight = (1.0 + np.arange(n)) ** -0.8
    else:  # a newcomer sells like an established mid-table brand
        weight = np.quantile(existing["weight"].to_numpy(), 0.9) * rng.uniform(0.5, 1.0, n)
    u = rng.random(n)
    n_tops = 1 + (u < 0.35) + (u < 0.10)
    if existing is None:
        n_tops[: max(1, n // 33)] = rng.integers(4, 7, max(1, n // 33))  # umbrella brands
    order = np.argsort(rng.random((n, len(top_ids))), axis=1)
    tops = [[int(top_ids[j]) for j in order[i, : min(n_tops[i], len(top_ids))]] for i in range(n)]
    df = pd.DataFrame(
        {
            "brand": list(names),
            "tier": tier.astype(np.int8),
            "weight": weight,
            "tops": tops,
            "created_at": to_ts(created_us),
        }
    )
    return conform(df, SIM_BRANDS)


def make_items(
    rng: np.random.Generator,
    cfg: MarketplaceConfig,
    ids: np.ndarray,
    listed_us: np.ndarray,
    leaves: pd.DataFrame,
    brands: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """New items (ITEMS rows), their hidden truth (SIM_ITEMS rows) and listing prices (PRICE_EVENTS)."""
    n, n_leaves = len(ids), len(leaves)
    if n == 0:
        return empty_frame(ITEMS), empty_frame(SIM_ITEMS), empty_frame(PRICE_EVENTS)
    pop = leaves["popularity"].to_numpy()
    leaf = rng.choice(n_leaves, n, p=pop / pop.sum())
    top = leaves["top_id"].to_numpy()[leaf]
    # brand: Zipf-weighted among the brands selling in the item's top category
    b_top, b_idx = flatten_lists(brands["tops"])
    b_weight = brands["weight"].to_numpy()
    brand = np.zeros(n, dtype=np.int64)
    for t in np.unique(top):
        cand = b_idx[b_top == t]
        if len(cand) == 0:
            cand = np.arange(len(brands))
        sel = np.flatnonzero(top == t)
        w = b_weight[cand]
        brand[sel] = cand[rng.choice(len(cand), len(sel), p=w / w.sum())]
    # attributes: uniform over the leaf's own words
    attrs = {}
    for a in vocab.ATTRIBUTE_NAMES:
        words, parent = flatten_lists(leaves[a])
        start = np.searchsorted(parent, np.arange(n_leaves))
        count = np.bincount(parent, minlength=n_leaves)
        attrs[a] = words[start[leaf] + (rng.random(n) * count[leaf]).astype(np.int64)]
    tier = brands["tier"].to_numpy()[brand]
    price = shop_price(
        leaves["price_level"].to_numpy()[leaf]
        * np.asarray(vocab.BRAND_TIER_PRICE)[tier]
        * np.exp(rng.normal(0, 0.3, n))
    )
    # hidden audience fit: the leaf's audience, nudged by style and colour words
    lean = _leans(attrs["style"]) + 0.5 * _leans(attrs["color"])  # (2, n): gender, age
    g = np.clip(leaves["gender_lean"].to_numpy()[leaf] + lean[0] + rng.normal(0, 0.2, n), -1, 1)
    age = np.clip(leaves["age_lean"].to_numpy()[leaf] + lean[1] + 0.25 * (tier - 1) + rng.normal(0, 0.2, n), -1, 1)
    logw = np.log(b_weight)
    quality = rng.normal(0, 1, n) + 0.3 * (logw[brand] - logw.mean()) / (logw.std() + 1e-9)
    leaf_id = leaves["category_id"].to_numpy()[leaf]
    category = pd.array(np.where(rng.random(n) < cfg.unknown_category_share, -1, leaf_id), dtype="Int32")
    category[category == -1] = pd.NA
    brand_names = brands["brand"].to_numpy()[brand]
    titles = _titles(rng, cfg, leaf, leaves, brand_names, attrs)
    listed = to_ts(listed_us)
    items = pd.DataFrame(
        {
            "item_id": ids.astype(np.int64),
            "title": titles,
            "brand": brand_names,
            "category_id": category,
            **attrs,
            "price": price,
            "listed_at": listed,
            "delisted_at": to_ts(np.full(n, NEVER)),
            "updated_at": listed,
        }
    )
    truth = pd.DataFrame(
        {
            "item_id": ids.astype(np.int64),
            "leaf_id": leaf_id.astype(np.int32),
            "gender_lean": g,
            "age_lean": age,
            "quality": quality,
        }
    )
    prices = pd.DataFrame({"item_id": ids.astype(np.int64), "ts": listed, "price": price})
    return conform(items, ITEMS), conform(truth, SIM_ITEMS), conform(prices, PRICE_EVENTS)


def _leans(words: np.ndarray) -> np.ndarray:
    """(2, n) gender and age leans of style/colour words (vocab.LEANS; unlisted words are 0)."""
    codes, uniq = pd.factorize(words)
    table = np.array([vocab.LEANS.get(w, (0.0, 0.0)) for w in uniq]).reshape(-1, 2)
    return table[codes].T


def _titles(
    rng: np.random.Generator,
    cfg: MarketplaceConfig,
    leaf: np.ndarray,
    leaves: pd.DataFrame,
    brand: np.ndarray,
    attrs: dict[str, np.ndarray],
) -> list[str]:
    """Shop-style titles: brand, some attributes, noun (or a synonym), fillers, model number, noise."""
    n = len(leaf)
    cap: dict[str, str] = {}  # title-case each distinct word once
    info = [
        (vocab.cap(nn), [vocab.cap(x) for x in sy], aud, [vocab.cap(x) for x in sb])
        for nn, sy, aud, sb in leaf_words(leaves)
    ]
    words: dict[str, np.ndarray] = {}
    for a in vocab.ATTRIBUTE_NAMES:
        codes, uniq = pd.factorize(attrs[a])
        words[a] = np.asarray([cap.setdefault(w, vocab.cap(w)) for w in uniq], dtype=object)[codes]
    r = rng.random((n, 12))
    ints = rng.integers(0, 1 << 30, (n, 6))
    show = {
        a: r[:, j] < p for a, j, p in (("style", 1, 0.45), ("color", 2, 0.6), ("material", 3, 0.45), ("size", 4, 0.4))
    }
    tmpl, abbrevs = vocab.TITLE_TEMPLATES, [(vocab.cap(k), v) for k, v in vocab.ABBREVIATIONS.items()]
    phrases = [vocab.cap(p.replace("{}", "@")).replace("@", "{}") for p in vocab.CROSS_PHRASES]
    out = []
    for i in range(n):
        noun, syns, aud, sibs = info[leaf[i]]
        word = syns[ints[i, 0] % len(syns)] if r[i, 7] < cfg.synonym_in_title and syns else noun
        if aud and r[i, 11] < 0.7:
            word = f"{aud} {word}"
        text = tmpl[ints[i, 1] % len(tmpl)].format(
            brand=brand[i],
            noun=word,
            **{a: words[a][i] if show[a][i] else "" for a in show},
            model=f"{brand[i][:2].upper()}-{100 + ints[i, 2] % 9900}" if r[i, 5] < 0.35 else "",
            filler=vocab.FILLERS[ints[i, 3] % len(vocab.FILLERS)] if r[i, 6] < 0.5 else "",
        )
        if sibs and r[i, 8] < cfg.cross_leaf_title:
            text += ", " + phrases[ints[i, 4] % len(phrases)].format(sibs[ints[i, 5] % len(sibs)])
        # tidy what empty slots leave behind: double spaces, " ,", ",,", "- ,"
        text = " ".join(text.split()).replace(" ,", ",").replace(",,", ",").replace(",,", ",")
        text = text.replace("-,", "-").strip(" ,-")
        if r[i, 10] < 0.1:  # one shop abbreviation ("Stainless Steel" -> "SS", "With" -> "w/")
            for k, v in abbrevs:
                if f" {k} " in f" {text} ":
                    text = f" {text} ".replace(f" {k} ", f" {v} ", 1).strip()
                    break
        if r[i, 9] < cfg.title_typo_rate:
            ws = text.split(" ")
            j = ints[i, 4] % len(ws)
            ws[j] = vocab.typo(ws[j], int(ints[i, 5] % 3), r[i, 0])
            text = " ".join(ws)
        out.append(text)
    return out


def leaf_words(leaves: pd.DataFrame) -> list[tuple[str, list[str], str, list[str]]]:
    """Per leaf position: (noun, synonyms, audience, nouns of sibling leaves in the same middle category)."""
    nouns, mids = leaves["noun"].tolist(), leaves["mid_id"].to_numpy()
    rows = []
    for i, (syns, aud) in enumerate(zip(leaves["synonyms"], leaves["audience"])):
        sibs = sorted({nouns[j] for j in np.flatnonzero(mids == mids[i])} - {nouns[i]})
        rows.append((nouns[i], list(syns), aud, sibs))
    return rows


def make_users(
    rng: np.random.Generator, uids: np.ndarray, created_us: np.ndarray, leaves: pd.DataFrame, brands: pd.DataFrame
) -> pd.DataFrame:
    """USERS rows: gender, age band, price tier (age-dependent), 2-4 top-category interests that fit
    gender and age, and 1-4 affinity brands from those categories that fit the price tier."""
    n = len(uids)
    if n == 0:
        return empty_frame(USERS)
    gender = rng.choice(3, n, p=vocab.GENDER_SHARES)
    age = rng.choice(len(vocab.AGE_BANDS), n, p=vocab.AGE_BAND_SHARES)
    cum = np.cumsum(np.asarray(vocab.PRICE_TIER_BY_AGE), axis=1)[age]
    tier = np.minimum((rng.random(n)[:, None] > cum).sum(1), 2)
    top_ids, top_of_leaf = np.unique(leaves["top_id"].to_numpy(), return_inverse=True)
    pop = np.bincount(top_of_leaf, leaves["popularity"].to_numpy())
    tg = np.bincount(top_of_leaf, leaves["gender_lean"].to_numpy()) / np.bincount(top_of_leaf)
    ta = np.bincount(top_of_leaf, leaves["age_lean"].to_numpy()) / np.bincount(top_of_leaf)
    g, a = GENDER_SIGN[gender], AGE_POS[age]
    logw = np.log(pop)[None] + 1.2 * g[:, None] * tg[None] - 1.0 * np.abs(a[:, None] - ta[None])
    order = np.argsort(-(logw + rng.gumbel(size=logw.shape)), axis=1)  # weighted sampling w/o replacement
    k = np.minimum(rng.integers(2, 5, n), len(top_ids))
    # affinity brands: per slot, a random interest, then a brand of that category near the user's tier
    b_top, b_idx = flatten_lists(brands["tops"])
    b_tier, b_w = brands["tier"].to_numpy()[b_idx], brands["weight"].to_numpy()[b_idx]
    slot_top = top_ids[order[np.arange(n)[:, None], (rng.random((n, 4)) * k[:, None]).astype(np.int64)]]
    picks = np.full((n, 4), -1, dtype=np.int64)
    u = rng.random((n, 4))
    for t in top_ids:
        for ut in range(3):
            sel = (slot_top == t) & (tier[:, None] == ut)
            cand = b_top == t
            if not sel.any() or not cand.any():
                continue
            w = b_w[cand] * np.exp(-1.5 * np.abs(b_tier[cand] - ut))
            cdf = np.cumsum(w) / w.sum()
            picks[sel] = b_idx[cand][np.minimum(np.searchsorted(cdf, u[sel]), len(cdf) - 1)]
    n_aff = rng.integers(1, 5, n)
    names = brands["brand"].to_numpy()
    affinity = [list(dict.fromkeys(names[p] for p in row[:m] if p >= 0)) for row, m in zip(picks, n_aff)]
    df = pd.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in uids],
            "gender": np.asarray(vocab.GENDERS)[gender],
            "age_band": np.asarray(vocab.AGE_BANDS)[age],
            "price_tier": np.asarray(vocab.PRICE_TIERS)[tier],
            "brand_affinity": affinity,
            "category_interests": [top_ids[order[i, : k[i]]].astype(np.int32).tolist() for i in range(n)],
            "created_at": to_ts(created_us),
        }
    )
    return conform(df, USERS)


GENDER_SIGN = np.array([1.0, -1.0, 0.0])  # f, m, u: sign against an item's gender lean
AGE_POS = np.linspace(-1.0, 1.0, len(vocab.AGE_BANDS))  # age bands on the same [-1, 1] scale as age leans
