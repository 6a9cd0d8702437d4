"""Pseudo-queries: short query-like texts made from an item's own text, for I2SID.

DSI-QG (Zhuang et al. 2022) and NCI (Wang et al. 2022) index a document by queries generated from it
("document as query"), so that a model trained only on logged queries still reaches documents nobody
searched for. Shoppers type two to four words of what a title says, not the title, so each item gets
``per_item`` of these, drawn deterministically from ``seed`` and the item id:

- ``span``: a contiguous run of ``min_words``..``max_words`` words of the title ("angle bracket 12-gauge");
- ``words``: the same number of words picked anywhere in the title, in title order ("simpson bracket zinc");
- ``attrs``: one or two attribute values followed by the title's last word (a noun phrase on most
  catalogs: "copper kettle"), when the catalog has attribute columns.

Each pseudo-query is an I2SID example with a *query* prompt (and its own sentence vector when the
generator reads them), so the model learns to answer query-like wording for every listed item.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrecall.data.text import normalize_query
from genrecall.gen.examples import SidDataset, sid_lookup
from genrecall.gen.tokenizer import GenTokenizer

KINDS = ("span", "words", "attrs")
ATTRIBUTES = ("color", "material", "size", "style")  # the synthetic marketplace's attribute columns
_WORD = re.compile(r"[a-z0-9][a-z0-9.\-/']*")
_STOP = frozenset(["a", "an", "and", "the", "of", "for", "with", "in", "on", "to", "by", "or", "x", "ft"])


@dataclass(frozen=True)
class PseudoQueryConfig:
    """How many pseudo-queries per item, and their shape."""

    per_item: int = 2  # DSI-QG uses ~10 per document; 2 keeps I2SID at 3x the items on a CPU
    min_words: int = 2  # one word is rarely a whole query
    max_words: int = 4  # real queries are short (median ~3 words on the Home Depot set)
    kinds: tuple[str, ...] = KINDS  # the shapes drawn from, in turn; "attrs" is skipped when an item has none
    seed: int = 0  # with the item id, fixes every draw

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"unknown pseudo-query kinds {unknown}; known: {KINDS}")


def title_words(title: str) -> list[str]:
    """Lowercased words of a title (HTML entities decoded), stop words and unit dots dropped."""
    words = (w.strip(".-/'") for w in _WORD.findall(html.unescape(str(title)).lower()))
    return [w for w in words if w and w not in _STOP]


def _draw(words: list[str], attrs: list[str], kind: str, cfg: PseudoQueryConfig, rng: np.random.Generator) -> str:
    n = int(rng.integers(cfg.min_words, cfg.max_words + 1))
    if kind == "attrs" and attrs:
        picked = [attrs[i] for i in sorted(rng.choice(len(attrs), size=min(len(attrs), 2), replace=False))]
        return " ".join(picked + words[-1:])
    if len(words) <= n:
        return " ".join(words)
    if kind == "words":
        return " ".join(words[i] for i in sorted(rng.choice(len(words), size=n, replace=False)))
    start = int(rng.integers(0, len(words) - n + 1))
    return " ".join(words[start : start + n])


def pseudo_queries(item_id: int, title: str, cfg: PseudoQueryConfig, attrs: Sequence[str] = ()) -> list[str]:
    """Up to ``cfg.per_item`` distinct pseudo-queries of one item (fewer for very short titles)."""
    words = title_words(title)
    if not words:
        return []
    rng = np.random.default_rng([cfg.seed, zlib.crc32(str(item_id).encode())])
    attrs = [str(a).lower() for a in attrs if a is not None and a == a and str(a)]
    out: list[str] = []
    for i in range(cfg.per_item * 3):  # a few extra draws: short titles repeat themselves
        q = normalize_query(_draw(words, attrs, cfg.kinds[i % len(cfg.kinds)], cfg, rng))
        if q and q not in out:
            out.append(q)
        if len(out) == cfg.per_item:
            break
    return out


def pseudo_query_examples(
    items: pd.DataFrame, sid_assignments: pd.DataFrame, tokenizer: GenTokenizer, cfg: PseudoQueryConfig | None = None
) -> SidDataset:
    """(pseudo-query -> the item's SID) examples for every item with a SID, in item_id order."""
    cfg = cfg or PseudoQueryConfig()
    lookup = sid_lookup(sid_assignments)
    rows = items[items["item_id"].isin(list(lookup))].sort_values("item_id")
    attr_cols = [c for c in ATTRIBUTES if c in rows]
    prompts, targets, sources, texts = [], [], [], []
    for row in rows.itertuples(index=False):
        attrs = [getattr(row, c) for c in attr_cols]
        for q in pseudo_queries(int(row.item_id), str(row.title), cfg, attrs) if cfg.per_item > 0 else ():
            prompts.append(tokenizer.encode_prompt(q))
            targets.append(lookup[int(row.item_id)])
            sources.append(int(row.item_id))
            texts.append(q)
    targets_arr = np.array(targets, dtype=np.int64).reshape(len(prompts), tokenizer.sid_depth)
    return SidDataset(prompts, targets_arr, "i2sid", np.array(sources, dtype=np.int64), texts)
