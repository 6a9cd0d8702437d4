"""BM25 over the served bundle's titles: the lexical column the search page shows beside generative recall.

    bm25 = TitleBM25.from_bundle(bundle)
    bm25.search("red kettle", k=20)     # [LexicalHit(item_id, title, score), ...] best first

It answers from the same catalog snapshot as the generator (the bundle's ``items.parquet``), through
``bm25s`` with the project's BM25 settings (``genrecall.eval.baselines.BM25Config``). The bundle holds
titles only, so this is BM25 on titles; the offline ``bm25`` baseline in ``metrics.json`` also indexes
brand and attributes, and finds somewhat more. A query with no indexed term returns nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genrecall.eval.baselines import BM25Config, BM25Retriever
from genrecall.serving.bundle import Bundle, ItemTable


@dataclass(frozen=True)
class LexicalHit:
    item_id: int
    title: str
    score: float  # BM25 score (bm25s, Lucene variant); only comparable within one query


@dataclass
class LexicalResponse:
    items: list[LexicalHit]
    bundle: str
    ms: float  # time spent in BM25, milliseconds

    def to_dict(self) -> dict[str, Any]:
        """The HTTP response body of ``POST /bm25``."""
        return {"items": [asdict(h) for h in self.items], "bundle": self.bundle, "ms": round(self.ms, 2)}


class TitleBM25:
    """A BM25 index over a bundle's item titles."""

    def __init__(self, items: ItemTable, version: str, config: BM25Config | None = None) -> None:
        self.version = version
        self._titles = items.title
        self._rows = {int(i): r for r, i in enumerate(items.item_id.tolist())}
        start = time.perf_counter()
        self._bm25 = BM25Retriever(config).fit(items.item_id, [str(t) for t in items.title])
        self.build_seconds = time.perf_counter() - start
        self._lock = threading.Lock()  # bm25s keeps per-call state on the model: one query at a time

    @classmethod
    def from_bundle(cls, bundle: Bundle, config: BM25Config | None = None) -> TitleBM25:
        return cls(bundle.items, bundle.version, config)

    def __len__(self) -> int:
        return len(self._bm25)

    def search(self, query: str, k: int) -> LexicalResponse:
        """The ``k`` best titles for ``query`` (fewer when fewer titles share a term with it)."""
        start = time.perf_counter()
        with self._lock:
            found = self._bm25.search([query], k)
        ids, scores = found.items[0], found.scores[0]
        keep = ids >= 0
        hits = [
            LexicalHit(int(i), str(self._titles[self._rows[int(i)]]), float(s))
            for i, s in zip(ids[keep].tolist(), np.asarray(scores[keep], dtype=np.float64).tolist())
        ]
        return LexicalResponse(hits, self.version, (time.perf_counter() - start) * 1000)
