"""The in-process recall engine: query (+ user) -> constrained beam search -> SIDs -> items.

    retriever = Retriever.load("genrecall-bundle:latest", features=FeatureClient("feature_repo", "data/feast"))
    response = retriever.search("red kettle", user_id="u000042", k=50, beam_size=20)
    response.items[0].item_id, response.sids[:3], response.bundle

One object serves the HTTP service (``bento/service.py``) and offline evaluation. ``search_batch``
runs one beam search per distinct beam size for a whole batch of requests: that is what adaptive
batching in the service feeds. A known ``user_id`` adds the user's profile, recent clicked SIDs and
recent categories (Feast online features) to the prompt (UQ2SID); an unknown user, no user, or no
feature store gives the plain query prompt (Q2SID format), never an error. Neither does a feature store
that fails or overruns ``serve.feature_timeout_ms`` (``genrecall.serving.feature_guard``): those
requests go on non-personalised, and ``serve_batch`` (what the HTTP service runs) flags their
responses ``degraded``.

Items come from the index, SID by SID in beam order, items of one SID by item quality (smoothed CTR)
descending, cut at ``k``; ``item_order="quality"`` instead orders all expanded items by quality first,
as the truncated-hitrate metric does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from genrecall.data.schema import sid_to_str
from genrecall.data.text import normalize_query
from genrecall.gen.adaptive_beam import AdaptiveBeam
from genrecall.gen.beam import BeamResult, beam_search
from genrecall.gen.examples import UserContext, context_from_features, encode_user_query
from genrecall.gen.fast_decode import LeanDecoder
from genrecall.gen.lean_beam import lean_beam_search
from genrecall.gen.semantic import SentenceEncoder
from genrecall.serving.bundle import Bundle
from genrecall.serving.feature_guard import GuardedFeatures

ITEM_ORDERS = ("beam", "quality")
DECODERS = ("lean", "transformers")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Serving knobs (params.yaml ``serve``): request bounds, retrieval, batching, where things are."""

    default_k: int = 50  # items returned when a request gives no k; a recall channel hands a ranker tens-hundreds
    max_k: int = 1000  # the paper truncates recall at N=1000 items (truncated hitrate)
    default_beam_size: int = 20  # paper: serving at dynamic beams 20/50/100; 20 is the cheap end
    max_beam_size: int = 200  # the largest beam of the paper's sweep; beyond it latency grows with no recall gain
    max_query_chars: int = 200  # same bound as validate.query_max_len: longer queries were never trained on
    max_user_id_chars: int = 64  # user ids are short keys ("u000042"); anything longer is a client bug
    item_order: str = "beam"  # "beam": SID rank then quality; "quality": quality across all SIDs (truncated metric)
    max_history: int = 5  # recent clicked SIDs in the prompt; must match training (ExamplesConfig.max_history)
    max_categories: int = 3  # recent category names in the prompt; matches ExamplesConfig.max_categories
    prompt_batch_size: int = 32  # prompts per forward pass inside one beam search (rows = this x beam)
    max_batch_size: int = 32  # adaptive batching: most concurrent requests merged into one search_batch call
    max_queue: int = 256  # requests waiting beyond this get 503 + Retry-After at once (backpressure), not a timeout
    batch_wait_ms: float = 0.0  # 0: an idle server answers at once and batches only what queued meanwhile;
    # > 0 holds each batch open that long for company (more throughput, that much more latency)
    num_threads: int = 1  # torch CPU threads in the server: on a shared 2-core box 2 threads spin against other
    # processes and ran 5-10x slower (docs/BENCHMARKS.md); raise it on a worker that owns its cores; 0 = torch default
    device: str = "cpu"  # "cuda" on a GPU worker
    workers: int = 1  # BentoML worker processes, each with its own model copy and batcher: one per core the
    # server owns (x num_threads <= cores); 1 on a box shared with other jobs (docs/BENCHMARKS.md: 8 clients)
    encoder_runtime: str = ""  # the query encoder's runtime: "" = the bundle's (MiniLM: onnx), "onnx" or "torch"
    decoder: str = "lean"  # "lean": gen/fast_decode.py (same beams, less per-step work); "transformers": beam_search
    adaptive_beam: bool = False  # pick each request's beam from the model's level-1 confidence (gen/adaptive_beam.py);
    # the request's beam_size stays the upper bound. Off: on `small` it kept recall but saved 4% of the beam, no time
    adaptive_tiers: tuple[int, ...] = (20, 50, 100)  # the paper's dynamic beams
    adaptive_thresholds: tuple[float, ...] = (0.9, 0.6)  # top-1 level-1 probability for each tier but the last
    bundle: str = ""  # a store tag or directory to serve; "" = the production pointer ($GENRECALL_BUNDLE wins)
    feast_repo: str = "feature_repo"  # Feast repo for user features; a missing repo/store = non-personalised
    feast_data_dir: str = "data/feast"  # the features stage's data dir (registry + online store)
    feature_timeout_ms: float = 250.0  # a user-feature lookup that takes longer is abandoned: the request goes on
    # non-personalised and says so; a lookup takes ~1 ms on SQLite (docs/SERVING.md), a search tens. 0 = no bound
    bm25: bool = True  # POST /bm25 (the search page's lexical column): BM25 over the bundle's titles, built at start
    host: str = "127.0.0.1"  # loopback by default: expose it on purpose, behind your own gateway
    port: int = 3000  # DESIGN.md: make run serves on 127.0.0.1:3000

    def __post_init__(self) -> None:
        if self.item_order not in ITEM_ORDERS:
            raise ValueError(f"serve.item_order must be one of {ITEM_ORDERS}, got {self.item_order!r}")
        if not 1 <= self.default_k <= self.max_k or not 1 <= self.default_beam_size <= self.max_beam_size:
            raise ValueError("serve: defaults must lie within 1..max_k and 1..max_beam_size")
        if self.decoder not in DECODERS:
            raise ValueError(f"serve.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.encoder_runtime not in ("", "onnx", "torch"):
            raise ValueError(f"serve.encoder_runtime must be '', 'onnx' or 'torch', got {self.encoder_runtime!r}")
        if self.adaptive_beam and self.decoder != "lean":
            raise ValueError("serve.adaptive_beam needs serve.decoder: lean (it reads the lean prefill)")
        self.adaptive_policy()  # validates tiers and thresholds

    def adaptive_policy(self) -> AdaptiveBeam | None:
        """The adaptive-beam policy (None when off)."""
        policy = AdaptiveBeam(tuple(self.adaptive_tiers), tuple(float(t) for t in self.adaptive_thresholds))
        return policy if self.adaptive_beam else None


class InvalidRequest(ValueError):
    """A request the retriever will not run (the service answers it with a 400)."""


class UserFeatureSource(Protocol):
    """What the retriever needs from a feature store (``genrecall.features.store.FeatureClient``)."""

    def user_contexts(self, user_ids: Sequence[str | None]) -> list[Any]: ...


@dataclass(frozen=True)
class SearchRequest:
    query: str
    user_id: str | None = None
    k: int | None = None  # None = ServeConfig.default_k
    beam_size: int | None = None  # None = ServeConfig.default_beam_size


@dataclass(frozen=True)
class Hit:
    item_id: int
    title: str
    sid: str  # "c1-c2-c3-suffix"
    score: float  # log-probability of the item's SID under the generator


@dataclass
class SearchResponse:
    items: list[Hit]
    sids: list[str]  # generated SIDs, best first (all beams, also those past k)
    sid_scores: list[float]
    bundle: str  # the bundle version that answered
    personalized: bool = False  # the prompt carried user context
    beam_size: int = 0  # the beam this request was decoded with (adaptive beam: at most the request's)
    extra: dict[str, Any] = field(default_factory=dict)
    degraded: str | None = None  # why a request with a user was served non-personalised ("features unavailable: ...")

    def to_dict(self) -> dict[str, Any]:
        """The HTTP response body (DESIGN.md section 4)."""
        return {
            "items": [dataclasses.asdict(h) for h in self.items],
            "sids": self.sids,
            "bundle": self.bundle,
            "personalized": self.personalized,
            "degraded": self.degraded,
            "beam_size": self.beam_size,
        }


class Retriever:
    """A loaded bundle + an optional feature source, answering search requests."""

    def __init__(
        self, bundle: Bundle, cfg: ServeConfig | None = None, features: UserFeatureSource | None = None
    ) -> None:
        self.bundle = bundle
        self.cfg = cfg or ServeConfig()
        self.features = features
        if self.cfg.num_threads > 0:
            torch.set_num_threads(self.cfg.num_threads)
        self.model, self.tokenizer = bundle.generator
        self.model.eval()
        self._depth = self.tokenizer.sid_depth
        # a semantic-prompt generator brings its sentence encoder: one encode call per request batch,
        # repeated queries served from an in-memory LRU (no disk cache on the request path)
        self.encoder = SentenceEncoder.for_model(self.model, cache_dir=None, runtime=self.cfg.encoder_runtime)
        self.decoder = self._lean_decoder()
        self.policy = self.cfg.adaptive_policy()
        if self.policy is not None and self.decoder is None:
            raise ValueError("serve.adaptive_beam needs the lean decoder, which cannot run this generator")

    def _lean_decoder(self) -> LeanDecoder | None:
        """The lean decoder when configured and able to run this generator, else None (transformers)."""
        if self.cfg.decoder != "lean":
            return None
        why = LeanDecoder.unsupported(self.model)
        if why:
            log.warning("lean decoder off for this generator (%s): decoding with transformers", why)
            return None
        return LeanDecoder(self.model)

    @classmethod
    def load(
        cls, source: str | Path, cfg: ServeConfig | None = None, features: UserFeatureSource | None = None
    ) -> Retriever:
        cfg = cfg or ServeConfig()
        return cls(Bundle.load(source, device=cfg.device), cfg, features)

    @property
    def version(self) -> str:
        return self.bundle.version

    # -- requests --------------------------------------------------------------------------------------
    def check(self, req: SearchRequest) -> SearchRequest:
        """Fill defaults and enforce the bounds; raises ``InvalidRequest`` saying what is wrong."""
        c = self.cfg
        if not isinstance(req.query, str) or not req.query.strip():
            raise InvalidRequest("query must be a non-empty string")
        if len(req.query) > c.max_query_chars:
            raise InvalidRequest(f"query is {len(req.query)} characters; the limit is {c.max_query_chars}")
        if req.user_id is not None and (not isinstance(req.user_id, str) or len(req.user_id) > c.max_user_id_chars):
            raise InvalidRequest(f"user_id must be a string of at most {c.max_user_id_chars} characters or null")
        k = c.default_k if req.k is None else req.k
        beam = c.default_beam_size if req.beam_size is None else req.beam_size
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= c.max_k:
            raise InvalidRequest(f"k must be an integer in 1..{c.max_k}, got {k!r}")
        if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or not 1 <= beam <= c.max_beam_size:
            raise InvalidRequest(f"beam_size must be an integer in 1..{c.max_beam_size}, got {beam!r}")
        return SearchRequest(req.query.strip(), req.user_id or None, int(k), int(beam))

    def contexts(self, user_ids: Sequence[str | None]) -> list[UserContext | None]:
        """User contexts from the feature source (None for anonymous/unknown users or without a source).

        A source that raises or overruns ``cfg.feature_timeout_ms`` gives None for every user (the plain
        query prompt), never an exception; the reason is kept, per user id, for ``serve_batch``."""
        if self.features is None or all(u is None for u in user_ids):
            return [None] * len(user_ids)
        feats, degraded = self._feature_lookup(self.features).user_contexts(list(user_ids))
        if feats is None:
            failed = getattr(self._lookup_state, "failed", None)
            if failed is not None:
                failed.update({u: degraded for u in user_ids if u is not None})
            return [None] * len(user_ids)
        return [self._context(f) if u is not None else None for u, f in zip(user_ids, feats)]

    _guard: GuardedFeatures | None = None  # the lookup over ``features``, made on first use (_feature_lookup)
    _warm_up: str | None = None  # why the guard's warm-up lookup failed, or None

    def _feature_lookup(self, source: UserFeatureSource) -> GuardedFeatures:
        """The time-bounded, never-raising lookup over ``source`` (one per source, kept between requests),
        warmed up when made: a fresh store's first lookup is slower than the per-request bound."""
        if self._guard is None or self._guard.source is not source:
            self._guard = GuardedFeatures(source, self.cfg.feature_timeout_ms)
            self._warm_up = self._guard.warm_up()
        return self._guard

    def warm_features(self) -> str | None:
        """Open the feature store now (the service calls it at start-up); why that failed, or None."""
        if self.features is None:
            return None
        self._feature_lookup(self.features)
        return self._warm_up

    @functools.cached_property
    def _lookup_state(self) -> threading.local:
        """Per-thread: the user ids whose lookup failed during the current ``serve_batch`` call, and why."""
        return threading.local()

    def serve_batch(self, requests: Sequence[SearchRequest]) -> list[SearchResponse]:
        """``search_batch``, plus each response's ``degraded`` reason when its user's features could not be
        looked up (the store failed or timed out): what the HTTP service's batcher runs."""
        state = self._lookup_state
        state.failed = {}
        try:
            responses = self.search_batch(requests)
            failed: dict[str | None, str] = state.failed
        finally:
            state.failed = None
        for req, resp in zip(requests, responses):
            if req.user_id and req.user_id in failed:
                resp.degraded = failed[req.user_id]
        return responses

    def _context(self, feats: Any) -> UserContext | None:
        if not getattr(feats, "known", False):
            return None
        sizes = self.tokenizer.sid_vocab_sizes

        def valid(sid: tuple[int, ...]) -> bool:  # SIDs of another index (before a rebuild) are skipped
            return len(sid) == self._depth and all(0 <= c < n for c, n in zip(sid, sizes))

        return context_from_features(
            feats,
            self.bundle.category_names,
            max_history=self.cfg.max_history,
            max_categories=self.cfg.max_categories,
            valid_sid=valid,
        )

    @staticmethod
    def text(query: str) -> str:
        """The normalised query text a prompt (and its sentence vector) is made from, as in training."""
        return normalize_query(query)

    def prompt(self, query: str, context: UserContext | None) -> list[int]:
        return encode_user_query(self.tokenizer, self.text(query), context)

    # -- search ------------------------------------------------------------------------------------------
    def search(
        self, query: str, user_id: str | None = None, *, k: int | None = None, beam_size: int | None = None
    ) -> SearchResponse:
        """Top-``k`` items for one query (and user)."""
        return self.search_batch([SearchRequest(query, user_id, k, beam_size)])[0]

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[SearchResponse]:
        """Answer many requests in one decode (lean) or one beam search per distinct beam size (order preserved)."""
        reqs = [self.check(r) for r in requests]
        contexts = self.contexts([r.user_id for r in reqs])
        prompts = [self.prompt(r.query, c) for r, c in zip(reqs, contexts)]
        vectors = None if self.encoder is None else self.encoder([self.text(r.query) for r in reqs])
        sizes = [r.beam_size or self.cfg.default_beam_size for r in reqs]  # check() filled every one in
        beams, used = self.decode(prompts, sizes, vectors)
        ks = [r.k or self.cfg.default_k for r in reqs]  # check() filled every one in
        return [self._respond(b, k, c is not None, u) for b, k, c, u in zip(beams, ks, contexts, used)]

    def decode(
        self, prompts: list[list[int]], sizes: list[int], vectors: np.ndarray | None
    ) -> tuple[list[BeamResult], list[int]]:
        """Beams per prompt and the beam each used: the lean decoder (adaptive beam when on: ``sizes`` are
        upper bounds), else transformers' beam search once per distinct size."""
        if self.decoder is not None:
            out = lean_beam_search(
                self.decoder,
                self.tokenizer,
                self.bundle.trie,
                prompts,
                sizes,
                batch_size=self.cfg.prompt_batch_size,
                semantic=vectors,
                choose=self.policy,
            )
            return out.results, out.beam_sizes
        beams: list[BeamResult | None] = [None] * len(prompts)
        for beam_size in sorted(set(sizes)):
            rows = [i for i, size in enumerate(sizes) if size == beam_size]
            found = beam_search(
                self.model,
                self.tokenizer,
                self.bundle.trie,
                [prompts[i] for i in rows],
                beam_size,
                batch_size=self.cfg.prompt_batch_size,
                semantic=None if vectors is None else vectors[rows],
            )
            for i, b in zip(rows, found):
                beams[i] = b
        return [b for b in beams if b is not None], sizes

    def expand(self, beams: BeamResult, k: int) -> list[Hit]:
        """Items of the beams' SIDs, ordered per ``cfg.item_order``, at most ``k``."""
        index, table = self.bundle.index, self.bundle.items
        parts = [index.items(s) for s in beams.sids]
        if not parts:
            return []
        ids = np.concatenate(parts)
        rank = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        quality = table.quality[table.rows(ids)]
        if self.cfg.item_order == "beam":
            order = np.lexsort((ids, -quality, rank))  # SID rank, then quality desc, then item id
        else:
            order = np.lexsort((ids, rank, -quality))  # quality desc, then SID rank, then item id
        order = order[:k]
        rows = table.rows(ids[order])
        sid_str = [sid_to_str(s) for s in beams.sids.tolist()]
        return [
            Hit(int(ids[o]), str(table.title[r]), sid_str[rank[o]], float(beams.scores[rank[o]]))
            for o, r in zip(order, rows)
        ]

    def _respond(self, beams: BeamResult, k: int, personalized: bool, beam_size: int) -> SearchResponse:
        return SearchResponse(
            self.expand(beams, k),
            [sid_to_str(s) for s in beams.sids.tolist()],
            [float(s) for s in beams.scores],
            self.version,
            personalized,
            beam_size,
        )
