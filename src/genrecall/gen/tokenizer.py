"""The generator's vocabulary: text tokens + special/profile tokens + one token per (SID position, code).

Id layout, fixed once and saved with the tokenizer::

    [0, n_text)                       text tokens of the backend (a `tokenizers.Tokenizer`)
    [n_text, n_text + n_special)      <pad> <bos> <eos> <sep> <sid> <item> <query> <user> <hist> <cat>
    then profile tokens               <gender:f> <age_band:25-34> <price_tier:low> ... and <field:?>
    then SID tokens                   <s0_0> .. <s0_{K0-1}> <s1_0> .. one block per SID position

The text backend is either a byte-level BPE trained here on titles + queries (`GenTokenizer.train`) or
the `tokenizer.json` of a local pretrained checkpoint (`GenTokenizer.from_pretrained`, e.g.
Qwen2.5-0.5B); everything above the text block is ours in both modes, so prompts, SID decoding and beam
search work the same way. Special and SID tokens never pass through the backend: they are added by id,
so a query that happens to contain "<sid>" is just text.

Prompt format (see `encode_prompt`)::

    item  : <bos> <item>  {title}                                                        <sid>
    query : <bos> <query> {query}                                                        <sid>
    user  : <bos> <user> <gender:f> <age_band:25-34> <price_tier:low>
                  <hist> s0 s1 s2 s3 <sep> s0 s1 s2 s3  <cat> {name} <sep> {name}  <query> {query} <sid>

and the target after `<sid>` is the SID's tokens then `<eos>`. A user prompt with no profile, history or
categories is exactly the query prompt, so anonymous requests and Q2SID share one format.

Profile attributes are single tokens rather than text: one embedding per value (BPE would split
"25-34" into pieces with no meaning of their own), shorter prompts, and a value never seen at fit time
maps to `<field:?>` instead of arbitrary text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

Sid = tuple[int, ...]

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<sep>",
    "<sid>",
    "<item>",
    "<query>",
    "<user>",
    "<hist>",
    "<cat>",
)
SEMANTIC_TOKEN = "<sem>"  # placeholder whose embedding the generator replaces by a sentence vector
PROFILE_FIELDS: tuple[str, ...] = ("gender", "age_band", "price_tier")
FORMAT = "genrecall-gen-tokenizer"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TokenizerConfig:
    """How the text part is trained and how long text segments may get."""

    vocab_size: int = 4096  # text BPE size: titles + queries of a marketplace need a few thousand pieces
    min_frequency: int = 2  # a merge must be seen twice; stops the BPE memorising one-off strings
    lowercase: bool = True  # shoppers type in any case; titles are title-cased
    max_text_tokens: int = 32  # titles/queries are truncated here; keeps prompts short for CPU training
    max_categories: int = 3  # recent category names rendered in a user prompt
    semantic_tokens: int = (
        0  # <sem> placeholders at the start of every prompt for the sentence vector (gen/semantic.py); 0 = off
    )
    profile_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extra profile values to reserve


class GenTokenizer:
    """Text backend + our special, profile and SID tokens, addressed by id."""

    def __init__(
        self,
        text: Tokenizer,
        sid_vocab_sizes: Sequence[int],
        *,
        profile_values: Mapping[str, Iterable[str]] | None = None,
        max_text_tokens: int = 32,
        max_categories: int = 3,
        semantic_tokens: int = 0,
    ) -> None:
        if not sid_vocab_sizes or any(int(s) < 1 for s in sid_vocab_sizes):
            raise ValueError(f"sid_vocab_sizes must be positive, got {tuple(sid_vocab_sizes)}")
        self.text = text
        self.sid_vocab_sizes: tuple[int, ...] = tuple(int(s) for s in sid_vocab_sizes)
        self.max_text_tokens = int(max_text_tokens)
        self.max_categories = int(max_categories)
        if int(semantic_tokens) < 0:
            raise ValueError(f"semantic_tokens must be >= 0, got {semantic_tokens}")
        self.semantic_tokens = int(semantic_tokens)
        values = {
            f: tuple(sorted({str(v) for v in (profile_values or {}).get(f, ()) if v is not None and v == v} - {"?"}))
            for f in PROFILE_FIELDS
        }  # None/NaN are "unknown", which <field:?> already covers
        self.profile_values: dict[str, tuple[str, ...]] = values

        self.n_text = int(text.get_vocab_size(with_added_tokens=True))
        names = list(SPECIAL_TOKENS)
        for f in PROFILE_FIELDS:
            names += [f"<{f}:{v}>" for v in values[f]] + [f"<{f}:?>"]
        if self.semantic_tokens:  # appended last: tokenizers without it keep every id they had
            names.append(SEMANTIC_TOKEN)
        self._extra: dict[str, int] = {name: self.n_text + i for i, name in enumerate(names)}
        self._extra_names = names
        self.sid_start = self.n_text + len(names)
        self.sid_offsets = self.sid_start + np.concatenate([[0], np.cumsum(self.sid_vocab_sizes)[:-1]]).astype(np.int64)
        self.vocab_size = self.sid_start + int(sum(self.sid_vocab_sizes))
        self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.sid_id = (self._extra[t] for t in SPECIAL_TOKENS[:5])
        self.semantic_id: int | None = self._extra.get(SEMANTIC_TOKEN)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        sid_vocab_sizes: Sequence[int],
        cfg: TokenizerConfig | None = None,
        *,
        profile_values: Mapping[str, Iterable[str]] | None = None,
    ) -> GenTokenizer:
        """Train a byte-level BPE on ``texts`` (titles + queries); deterministic for the same input."""
        cfg = cfg or TokenizerConfig()
        norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if cfg.lowercase else [])
        text = Tokenizer(models.BPE())
        text.normalizer = normalizers.Sequence(norms)
        text.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        text.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        text.train_from_iterator((t for t in texts if t), trainer=trainer)
        merged: dict[str, set] = {f: set(v) for f, v in cfg.profile_values.items()}
        for f, vals in (profile_values or {}).items():
            merged.setdefault(f, set()).update(vals)
        return cls(
            text,
            sid_vocab_sizes,
            profile_values=merged,
            max_text_tokens=cfg.max_text_tokens,
            max_categories=cfg.max_categories,
            semantic_tokens=cfg.semantic_tokens,
        )

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        sid_vocab_sizes: Sequence[int],
        *,
        profile_values: Mapping[str, Iterable[str]] | None = None,
        max_text_tokens: int = 32,
        max_categories: int = 3,
        semantic_tokens: int = 0,
    ) -> GenTokenizer:
        """Use a local checkpoint's own ``tokenizer.json`` as the text backend (never downloads)."""
        path = Path(local_dir) / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: a pretrained generator needs its tokenizer.json")
        values = {f: list(vals) for f, vals in (profile_values or {}).items()}
        return cls(
            Tokenizer.from_file(str(path)),
            sid_vocab_sizes,
            profile_values=values,
            max_text_tokens=max_text_tokens,
            max_categories=max_categories,
            semantic_tokens=semantic_tokens,
        )

    # -- ids --------------------------------------------------------------------------------------
    @property
    def sid_depth(self) -> int:
        return len(self.sid_vocab_sizes)

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int:
        """Id of a special/profile token ("<sid>", "<gender:f>") or a SID token ("<s1_7>")."""
        if token in self._extra:
            return self._extra[token]
        if token.startswith("<s") and token.endswith(">") and "_" in token:
            pos, code = token[2:-1].split("_", 1)
            return self.sid_token_id(int(pos), int(code))
        raise KeyError(f"not a special or SID token: {token!r}")

    def id_to_token(self, token_id: int) -> str:
        token_id = int(token_id)
        if 0 <= token_id < self.n_text:
            return self.text.id_to_token(token_id) or f"<text:{token_id}>"
        if token_id < self.sid_start:
            return self._extra_names[token_id - self.n_text]
        if token_id < self.vocab_size:
            pos = int(np.searchsorted(self.sid_offsets, token_id, side="right") - 1)
            return f"<s{pos}_{token_id - int(self.sid_offsets[pos])}>"
        raise KeyError(f"token id {token_id} outside the vocabulary of {self.vocab_size}")

    def sid_token_id(self, position: int, code: int) -> int:
        if not 0 <= code < self.sid_vocab_sizes[position]:
            raise ValueError(
                f"code {code} out of range for SID position {position} (size {self.sid_vocab_sizes[position]})"
            )
        return int(self.sid_offsets[position]) + int(code)

    def sid_token_ids(self, position: int) -> np.ndarray:
        """Token ids of codes 0..size-1 at ``position`` (a contiguous int64 range)."""
        start = int(self.sid_offsets[position])
        return np.arange(start, start + self.sid_vocab_sizes[position], dtype=np.int64)

    def encode_sid(self, sid: Sequence[int]) -> list[int]:
        """SID tuple -> its token ids (no <eos>)."""
        if len(sid) != self.sid_depth:
            raise ValueError(f"SID {tuple(sid)} has length {len(sid)}, expected {self.sid_depth}")
        return [self.sid_token_id(p, int(c)) for p, c in enumerate(sid)]

    def encode_target(self, sid: Sequence[int]) -> list[int]:
        """What the model learns to emit after <sid>: the SID tokens then <eos>."""
        return [*self.encode_sid(sid), self.eos_id]

    def decode_sid(self, token_ids: Sequence[int]) -> Sid:
        """SID token ids (a trailing <eos> is allowed) -> the SID tuple; raises on anything else."""
        ids = [int(t) for t in token_ids]
        if len(ids) == self.sid_depth + 1 and ids[-1] == self.eos_id:
            ids = ids[:-1]
        if len(ids) != self.sid_depth:
            raise ValueError(f"expected {self.sid_depth} SID tokens, got {len(ids)}")
        out = []
        for pos, t in enumerate(ids):
            code = t - int(self.sid_offsets[pos])
            if not 0 <= code < self.sid_vocab_sizes[pos]:
                raise ValueError(f"token {t} is not a SID token of position {pos}")
            out.append(code)
        return tuple(out)

    # -- text and prompts -------------------------------------------------------------------------
    def encode_text(self, text: str | None) -> list[int]:
        """Plain text -> backend token ids, truncated to ``max_text_tokens``."""
        if not text:
            return []
        return list(self.text.encode(str(text), add_special_tokens=False).ids[: self.max_text_tokens])

    def profile_token_id(self, field_name: str, value: str | None) -> int:
        """`<field:value>`, or `<field:?>` for a missing or never-seen value."""
        if field_name not in PROFILE_FIELDS:
            raise KeyError(f"unknown profile field {field_name!r}; known: {PROFILE_FIELDS}")
        return self._extra.get(f"<{field_name}:{value}>", self._extra[f"<{field_name}:?>"])

    def encode_prompt(
        self,
        text: str | None,
        *,
        kind: str = "query",
        profile: Mapping[str, str | None] | None = None,
        history: Sequence[Sequence[int]] = (),
        categories: Sequence[str] = (),
    ) -> list[int]:
        """Token ids of one prompt, ending in <sid> (see the module docstring for the format).

        ``kind`` is "item" (I2SID: ``text`` is a title) or "query" (Q2SID/UQ2SID); ``profile`` maps
        gender/age_band/price_tier to values, ``history`` holds recent clicked SIDs (most recent last),
        ``categories`` recent category names. User parts are only allowed with kind="query".
        """
        if kind not in ("item", "query"):
            raise ValueError(f"kind must be 'item' or 'query', got {kind!r}")
        ids = [self.bos_id] + ([self._extra[SEMANTIC_TOKEN]] * self.semantic_tokens if self.semantic_tokens else [])
        if kind == "item":
            if profile or history or categories:
                raise ValueError("item prompts carry no user context")
            return [*ids, self._extra["<item>"], *self.encode_text(text), self.sid_id]
        if profile is not None or history or categories:
            ids.append(self._extra["<user>"])
            if profile is not None:
                ids += [self.profile_token_id(f, profile.get(f)) for f in PROFILE_FIELDS]
            if history:
                ids.append(self._extra["<hist>"])
                for i, sid in enumerate(history):
                    ids += ([self.sep_id] if i else []) + self.encode_sid(sid)
            cats = [c for c in categories if c][-self.max_categories :]
            if cats:
                ids.append(self._extra["<cat>"])
                for i, name in enumerate(cats):
                    ids += ([self.sep_id] if i else []) + self.encode_text(name)
        return [*ids, self._extra["<query>"], *self.encode_text(text), self.sid_id]

    def decode(self, token_ids: Sequence[int]) -> str:
        """Readable rendering of any ids (text runs decoded, other tokens by name); for debugging."""
        parts: list[str] = []
        run: list[int] = []
        for t in (int(x) for x in token_ids):
            if t < self.n_text:
                run.append(t)
                continue
            if run:
                parts.append(self.text.decode(run).strip())
                run = []
            parts.append(self.id_to_token(t))
        if run:
            parts.append(self.text.decode(run).strip())
        return " ".join(p for p in parts if p)

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sid_vocab_sizes": list(self.sid_vocab_sizes),
            "profile_values": {f: list(v) for f, v in self.profile_values.items()},
            "max_text_tokens": self.max_text_tokens,
            "max_categories": self.max_categories,
            "semantic_tokens": self.semantic_tokens,
            "vocab_size": self.vocab_size,
            "text_tokenizer": json.loads(self.text.to_str()),
        }

    def save(self, path: str | Path) -> Path:
        """Write one self-contained JSON file (the text backend is embedded; no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GenTokenizer:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a genrecall generator tokenizer")
        tok = cls(
            Tokenizer.from_str(json.dumps(data["text_tokenizer"])),
            data["sid_vocab_sizes"],
            profile_values=data["profile_values"],
            max_text_tokens=data["max_text_tokens"],
            max_categories=data["max_categories"],
            semantic_tokens=data.get("semantic_tokens", 0),
        )
        if tok.vocab_size != data["vocab_size"]:
            raise ValueError(f"{path}: vocabulary size changed on load ({tok.vocab_size} != {data['vocab_size']})")
        return tok
