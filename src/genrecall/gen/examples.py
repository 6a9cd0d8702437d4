"""Training examples for the three SFT stages, built from the contract tables.

- I2SID  (stage 1): item title -> the item's SID. One example per item that has a SID.
- Q2SID  (stage 2): query -> SIDs of items clicked or purchased for it, aggregated over all requests
  with the same (normalised) query; up to ``targets_per_query`` distinct SIDs are sampled per query
  (the paper samples 3), weighted by how often they were clicked (a purchase counts extra), one
  example per (query, target).
- UQ2SID (stage 3): user profile + recent clicked SIDs + recent categories + query -> SID, one example
  per (request, sampled target). The user side comes in as ``contexts: request_id -> UserContext``,
  built by the caller from data strictly before each request (a Feast point-in-time join, or
  `user_contexts_from_log` here), so an example cannot see its own future. A request with no context
  (anonymous, or a user with no past) gets the plain query prompt, so the final model also serves
  anonymous traffic.

Prompt formats live in `GenTokenizer.encode_prompt`. Everything is deterministic from ``cfg.seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genrecall.data.text import normalize_query
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.sid.encoder import item_texts

Sid = tuple[int, ...]


@dataclass(frozen=True)
class ExamplesConfig:
    """How targets are sampled and how much user history goes into a prompt."""

    targets_per_query: int = 3  # the paper samples 3 target SIDs per query for Q2SID
    targets_per_request: int = 3  # same cap for UQ2SID, per logged request
    purchase_weight: float = (
        2.0  # a purchase is a stronger signal than a click (reward 1.0 both in EG-GRPO; here only the sampling weight)
    )
    max_history: int = 5  # recent clicked SIDs in a user prompt; 5 x 5 tokens keeps prompts under ~70 tokens
    max_categories: int = 3  # recent category names in a user prompt
    seed: int = 0  # target sampling seed


@dataclass(frozen=True)
class UserContext:
    """What is known about the user at request time (nothing after it)."""

    gender: str | None = None  # "f", "m", "u"
    age_band: str | None = None  # "25-34", ...
    price_tier: str | None = None  # "low", "mid", "high"
    recent_sids: tuple[Sid, ...] = ()  # clicked SIDs, most recent last, at most max_history
    recent_categories: tuple[str, ...] = ()  # category names of recent clicks, most recent last

    def profile(self) -> dict[str, str | None]:
        return {"gender": self.gender, "age_band": self.age_band, "price_tier": self.price_tier}


class Example(NamedTuple):
    prompt: list[int]
    target: np.ndarray  # (D,) SID codes


@dataclass
class SidDataset:
    """Prompts (token id lists, each ending in <sid>) and their target SIDs ((n, D) int64).

    ``texts`` holds the text each prompt was made from (title or normalised query) and ``vectors`` its
    sentence vector ((n, dim) float16, see `with_vectors`) for a semantic-prompt generator.
    """

    prompts: list[list[int]]
    targets: np.ndarray
    kind: str = ""
    sources: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # item_id / request_id per row
    texts: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        targets = np.asarray(self.targets, dtype=np.int64)
        depth = targets.shape[-1] if targets.ndim == 2 else (targets.size // max(len(self.prompts), 1))
        self.targets = targets.reshape(len(self.prompts), depth)
        if self.vectors is not None and len(self.vectors) != len(self.prompts):
            raise ValueError(f"{len(self.vectors)} vectors for {len(self.prompts)} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> Example:
        return Example(self.prompts[i], self.targets[i])

    def with_vectors(self, encode: Callable[[list[str]], np.ndarray]) -> SidDataset:
        """A copy whose rows carry ``encode(texts)`` (each distinct text encoded once), stored as float16."""
        if len(self.texts) != len(self):
            raise ValueError(f"dataset {self.kind!r} has no texts to encode")
        distinct = sorted(set(self.texts))
        row = {t: i for i, t in enumerate(distinct)}
        table = np.asarray(encode(distinct), dtype=np.float16) if distinct else np.zeros((0, 0), dtype=np.float16)
        vectors = table[[row[t] for t in self.texts]] if len(self) else table
        return SidDataset(self.prompts, self.targets, self.kind, self.sources, self.texts, vectors)

    @classmethod
    def concat(cls, *parts: SidDataset, kind: str = "mixed") -> SidDataset:
        """Join datasets (e.g. replay of an earlier stage's data); vectors only when every part has them."""
        prompts = [p for d in parts for p in d.prompts]
        targets = np.concatenate([d.targets for d in parts]) if parts else np.empty((0, 0), dtype=np.int64)
        sources = np.concatenate([d.sources for d in parts]) if parts else np.empty(0, dtype=np.int64)
        texts = [t for d in parts for t in d.texts] if all(len(d.texts) == len(d) for d in parts) else []
        with_vec = bool(parts) and all(d.vectors is not None for d in parts)
        vectors = np.concatenate([d.vectors for d in parts if d.vectors is not None]) if with_vec else None
        return cls(prompts, targets, kind, sources, texts, vectors)

    def subset(self, rows: np.ndarray) -> SidDataset:
        """The rows ``rows`` (e.g. a validation split), every field kept aligned."""
        rows = np.asarray(rows, dtype=np.int64)
        return SidDataset(
            [self.prompts[i] for i in rows],
            self.targets[rows],
            self.kind,
            self.sources[rows] if len(self.sources) == len(self) else self.sources,
            [self.texts[i] for i in rows] if len(self.texts) == len(self) else [],
            None if self.vectors is None else self.vectors[rows],
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "prompt": pa.array(self.prompts, type=pa.list_(pa.int32())),
                "target": pa.array(self.targets.tolist(), type=pa.list_(pa.int32())),
            },
            metadata={"kind": self.kind},
        )
        if len(self.sources) == len(self):
            table = table.append_column("source", pa.array(self.sources, type=pa.int64()))
        if len(self.texts) == len(self):
            table = table.append_column("text", pa.array(self.texts, type=pa.string()))
        if self.vectors is not None:
            table = table.append_column(
                "vector", pa.array(self.vectors.astype(np.float32).tolist(), type=pa.list_(pa.float32()))
            )
        pq.write_table(table, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SidDataset:
        table = pq.read_table(path)
        kind = (table.schema.metadata or {}).get(b"kind", b"").decode()
        cols = table.to_pydict()
        sources = np.asarray(cols.get("source", []), dtype=np.int64)
        vectors = np.asarray(cols["vector"], dtype=np.float16) if "vector" in cols else None
        return cls(
            [list(p) for p in cols["prompt"]],
            np.asarray(cols["target"], dtype=np.int64),
            kind,
            sources,
            list(cols.get("text", [])),
            vectors,
        )


def sid_lookup(sid_assignments: pd.DataFrame) -> dict[int, Sid]:
    """item_id -> SID tuple from a SID_ASSIGNMENTS table."""
    return {
        int(i): tuple(int(c) for c in codes) for i, codes in zip(sid_assignments["item_id"], sid_assignments["codes"])
    }


def _weighted_sample(counts: dict[Sid, float], k: int, rng: np.random.Generator) -> list[Sid]:
    """Up to ``k`` distinct SIDs, without replacement, probability proportional to weight."""
    sids = sorted(counts)
    if len(sids) <= k:
        return sids
    w = np.array([counts[s] for s in sids], dtype=np.float64)
    pick = rng.choice(len(sids), size=k, replace=False, p=w / w.sum())
    return [sids[i] for i in sorted(pick)]


def _engaged(row: Any, lookup: Mapping[int, Sid], purchase_weight: float) -> dict[Sid, float]:
    counts: dict[Sid, float] = {}
    for items, w in ((row.clicked, 1.0), (row.purchased, purchase_weight - 1.0)):
        for item in items if items is not None else ():
            sid = lookup.get(int(item))
            if sid is not None and w > 0:
                counts[sid] = counts.get(sid, 0.0) + w
    return counts


def item_examples(items: pd.DataFrame, sid_assignments: pd.DataFrame, tokenizer: GenTokenizer) -> SidDataset:
    """I2SID: one (title -> SID) example per item with a SID, in item_id order."""
    lookup = sid_lookup(sid_assignments)
    rows = items[items["item_id"].isin(list(lookup))].sort_values("item_id")
    prompts = [tokenizer.encode_prompt(t, kind="item") for t in rows["title"]]
    targets = np.array([lookup[int(i)] for i in rows["item_id"]], dtype=np.int64).reshape(
        len(rows), tokenizer.sid_depth
    )
    return SidDataset(prompts, targets, "i2sid", rows["item_id"].to_numpy(dtype=np.int64), item_texts(rows))


def query_examples(
    requests: pd.DataFrame, sid_assignments: pd.DataFrame, tokenizer: GenTokenizer, cfg: ExamplesConfig | None = None
) -> SidDataset:
    """Q2SID: per normalised query, up to ``targets_per_query`` distinct engaged SIDs."""
    cfg = cfg or ExamplesConfig()
    lookup = sid_lookup(sid_assignments)
    per_query: dict[str, dict[Sid, float]] = {}
    first_request: dict[str, int] = {}
    for row in requests.itertuples(index=False):
        q = normalize_query(row.query)
        if not q:
            continue
        counts = per_query.setdefault(q, {})
        first_request.setdefault(q, int(row.request_id))
        for sid, w in _engaged(row, lookup, cfg.purchase_weight).items():
            counts[sid] = counts.get(sid, 0.0) + w
    rng = np.random.default_rng(cfg.seed)
    prompts, targets, sources, texts = [], [], [], []
    for q in sorted(per_query):
        if not per_query[q]:
            continue
        prompt = tokenizer.encode_prompt(q)
        for sid in _weighted_sample(per_query[q], cfg.targets_per_query, rng):
            prompts.append(prompt)
            targets.append(sid)
            sources.append(first_request[q])
            texts.append(q)
    return SidDataset(
        prompts,
        np.array(targets, dtype=np.int64).reshape(len(prompts), tokenizer.sid_depth),
        "q2sid",
        np.array(sources, dtype=np.int64),
        texts,
    )


def context_from_features(
    features: object,
    category_names: Mapping[int, str],
    *,
    max_history: int = 5,
    max_categories: int = 3,
    valid_sid: Callable[[Sid], bool] = lambda sid: True,
) -> UserContext:
    """A user's feature row (Feast: SIDs as strings and category ids, newest first) as a prompt
    context (newest last). The one conversion training and serving share, so prompts cannot skew.
    Unparseable SIDs and SIDs ``valid_sid`` rejects (e.g. of an index before a rebuild) are skipped."""
    from genrecall.data.schema import sid_from_str

    sids: list[Sid] = []
    for s in reversed(list(getattr(features, "recent_sids", ()) or ())):
        try:
            sid = sid_from_str(s)
        except ValueError:
            continue
        if valid_sid(sid):
            sids.append(sid)
    names = [
        category_names[int(c)]
        for c in reversed(list(getattr(features, "recent_categories", ()) or ()))
        if int(c) in category_names
    ]
    names = list(dict.fromkeys(reversed(names)))[::-1]  # distinct, most recent last

    def value(name: str) -> str | None:
        v = getattr(features, name, None)
        return None if v is None or (isinstance(v, float) and v != v) or v == "" else str(v)

    return UserContext(
        value("gender"),
        value("age_band"),
        value("price_tier"),
        tuple(sids[-max_history:]),
        tuple(names[-max_categories:]),
    )


def encode_user_query(tokenizer: GenTokenizer, query: str, context: UserContext | None) -> list[int]:
    """The UQ2SID prompt (the plain query prompt when ``context`` is None); also used at serving."""
    if context is None:
        return tokenizer.encode_prompt(query)
    return tokenizer.encode_prompt(
        query, profile=context.profile(), history=context.recent_sids, categories=context.recent_categories
    )


def user_query_examples(
    requests: pd.DataFrame,
    sid_assignments: pd.DataFrame,
    tokenizer: GenTokenizer,
    contexts: Mapping[int, UserContext],
    cfg: ExamplesConfig | None = None,
) -> SidDataset:
    """UQ2SID: per request with an engagement, up to ``targets_per_request`` examples in request order."""
    cfg = cfg or ExamplesConfig()
    lookup = sid_lookup(sid_assignments)
    rng = np.random.default_rng(cfg.seed)
    prompts, targets, sources, texts = [], [], [], []
    for row in requests.sort_values(["ts", "request_id"]).itertuples(index=False):
        counts = _engaged(row, lookup, cfg.purchase_weight)
        if not counts or not normalize_query(row.query):
            continue
        ctx = contexts.get(int(row.request_id))
        if ctx is not None:
            ctx = UserContext(
                ctx.gender,
                ctx.age_band,
                ctx.price_tier,
                tuple(ctx.recent_sids)[-cfg.max_history :],
                tuple(ctx.recent_categories)[-cfg.max_categories :],
            )
        prompt = encode_user_query(tokenizer, normalize_query(row.query), ctx)
        for sid in _weighted_sample(counts, cfg.targets_per_request, rng):
            prompts.append(prompt)
            targets.append(sid)
            sources.append(int(row.request_id))
            texts.append(normalize_query(row.query))
    return SidDataset(
        prompts,
        np.array(targets, dtype=np.int64).reshape(len(prompts), tokenizer.sid_depth),
        "uq2sid",
        np.array(sources, dtype=np.int64),
        texts,
    )


def user_contexts_from_log(
    requests: pd.DataFrame,
    users: pd.DataFrame,
    sid_assignments: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    categories: pd.DataFrame | None = None,
    max_history: int = 5,
    max_categories: int = 3,
) -> dict[int, UserContext]:
    """Point-in-time contexts from the log alone: each request sees only its user's strictly earlier clicks.

    A reference for tests and a fallback without Feast. Category names need ``items`` and
    ``categories``; otherwise ``recent_categories`` stays empty.
    """
    lookup = sid_lookup(sid_assignments)
    profiles = {str(u.user_id): u for u in users.itertuples(index=False)}
    item_cat: dict[int, str] = {}
    if items is not None and categories is not None:
        names = dict(zip(categories["category_id"], categories["name"]))
        item_cat = {
            int(i): names[c] for i, c in zip(items["item_id"], items["category_id"]) if pd.notna(c) and c in names
        }
    out: dict[int, UserContext] = {}
    log = requests[requests["user_id"].notna()].sort_values(["user_id", "ts", "request_id"])
    for user_id, group in log.groupby("user_id", sort=True):
        prof = profiles.get(str(user_id))
        hist_sids: list[Sid] = []
        hist_cats: list[str] = []
        pending: list = []  # requests at the same timestamp must not see each other
        last_ts = None
        for row in group.itertuples(index=False):
            if row.ts != last_ts:
                for prev in pending:
                    for item in prev.clicked if prev.clicked is not None else ():
                        if int(item) in lookup:
                            hist_sids.append(lookup[int(item)])
                        if int(item) in item_cat:
                            hist_cats.append(item_cat[int(item)])
                pending, last_ts = [], row.ts
            cats = list(dict.fromkeys(reversed(hist_cats)))[:max_categories][::-1]  # distinct, most recent last
            out[int(row.request_id)] = UserContext(
                getattr(prof, "gender", None),
                getattr(prof, "age_band", None),
                getattr(prof, "price_tier", None),
                tuple(hist_sids[-max_history:]),
                tuple(cats),
            )
            pending.append(row)
    return out
