"""The generator: a Qwen2-architecture causal LM over `GenTokenizer`'s vocabulary.

Two ways in, one model class (`transformers.Qwen2ForCausalLM`):
- `build_model(cfg, vocab_size)`: a small model from scratch (the default; trains on a CPU).
- `load_pretrained(local_dir, tokenizer)`: a local checkpoint such as Qwen2.5-0.5B (the paper's
  backbone), its embeddings grown to hold our special/profile/SID tokens. Nothing is ever downloaded
  (`local_files_only=True`); pair it with `GenTokenizer.from_pretrained(local_dir, ...)` so text ids
  mean the same thing to the tokenizer and the checkpoint.

`save_generator` / `load_generator` write and read a generator directory: HF `config.json` +
`model.safetensors` + our `tokenizer.json`, loadable by this module or by plain `transformers`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.utils import logging as hf_logging

from genrecall.gen.semantic import SemanticQwen2ForCausalLM
from genrecall.gen.tokenizer import GenTokenizer

TOKENIZER_FILE = "tokenizer.json"
GENERATOR_FILE = "generator.json"


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and placement of the generator. Defaults train on 2 CPU cores in minutes."""

    hidden_size: int = 192  # small enough for CPU; the paper's Qwen2.5-0.5B uses 896
    num_layers: int = 4  # depth matters more than width for the 4-token SID continuation
    num_heads: int = 6  # head dim 32
    num_kv_heads: int = 2  # grouped-query attention as in Qwen2.5; a 3x smaller KV cache for wide beams
    intermediate_size: int = 512  # ~2.7x hidden, the Qwen2 MLP ratio scaled down
    max_positions: int = 256  # prompts are <= ~100 tokens (32 text + history of SIDs) + 5 target tokens
    rope_theta: float = 10000.0  # standard RoPE base; long contexts are not needed here
    tie_embeddings: bool = True  # halves the embedding parameters; Qwen2.5-0.5B ties them too
    init_std: float = 0.02  # transformers' default initializer range
    dtype: str = "float32"  # "bfloat16" on a GPU; float32 on CPU (bf16 matmuls are slow there)
    device: str = "cpu"  # "cuda", "cuda:1" or "auto" (cuda when present)
    attn_implementation: str = "sdpa"  # fused attention in torch; "eager" for debugging
    pretrained_dir: str | None = None  # a local checkpoint dir to start from instead of building
    # width of the sentence vectors fed to <sem> placeholders (gen/semantic.py); 0 = the trainer fills it
    # from the encoder (384 for MiniLM). Used only when the tokenizer has semantic_tokens > 0.
    semantic_dim: int = 0
    semantic_encoder: dict[str, Any] = field(default_factory=dict)  # its EncoderConfig, saved in config.json
    seed: int = 0  # weight initialisation seed


class Generator(NamedTuple):
    model: Qwen2ForCausalLM
    tokenizer: GenTokenizer


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' per-shard tqdm bars while saving/loading (ours are rich bars)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    try:
        return {
            "float32": torch.float32,
            "float64": torch.float64,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
        }[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}") from None


def qwen2_config(cfg: GeneratorConfig, vocab_size: int, tokenizer: GenTokenizer | None = None) -> Qwen2Config:
    """The `transformers` config for ``cfg`` (special token ids filled in when a tokenizer is given)."""
    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
    extra: dict[str, Any] = {}
    if tokenizer is not None:
        extra = {"pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}
        extra |= semantic_fields(cfg, tokenizer)
    return Qwen2Config(  # type: ignore[call-arg]  # rope_theta is a Qwen2 kwarg that transformers' stubs omit
        vocab_size=int(vocab_size),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings,
        initializer_range=cfg.init_std,
        use_sliding_window=False,
        attention_dropout=0.0,
        **extra,
    )


def semantic_fields(cfg: GeneratorConfig, tokenizer: GenTokenizer) -> dict[str, Any]:
    """Config entries of a semantic-prompt model ({} when the tokenizer has no <sem> placeholders)."""
    if not tokenizer.semantic_tokens:
        return {}
    if cfg.semantic_dim < 1:
        raise ValueError("the tokenizer has <sem> placeholders: set GeneratorConfig.semantic_dim (the encoder's width)")
    return {
        "semantic_dim": cfg.semantic_dim,
        "semantic_tokens": tokenizer.semantic_tokens,
        "semantic_token_id": int(cast(int, tokenizer.semantic_id)),  # set whenever semantic_tokens > 0
        "semantic_encoder": dict(cfg.semantic_encoder),
    }


def model_class(config: object) -> type[Qwen2ForCausalLM]:
    """`SemanticQwen2ForCausalLM` for a config with semantic tokens, else plain Qwen2."""
    return SemanticQwen2ForCausalLM if int(getattr(config, "semantic_tokens", 0) or 0) > 0 else Qwen2ForCausalLM


def build_model(cfg: GeneratorConfig, vocab_size: int, *, tokenizer: GenTokenizer | None = None) -> Qwen2ForCausalLM:
    """A freshly initialised model (deterministic from ``cfg.seed``), on ``cfg.device`` in ``cfg.dtype``."""
    hf = qwen2_config(cfg, vocab_size, tokenizer)
    hf._attn_implementation = cfg.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = model_class(hf)(hf)
    torch.nn.Module.to(model, device=resolve_device(cfg.device), dtype=resolve_dtype(cfg.dtype))  # in place
    return model


def load_pretrained(
    local_dir: str | Path,
    tokenizer: GenTokenizer,
    cfg: GeneratorConfig | None = None,
) -> Qwen2ForCausalLM:
    """Load a local Qwen2-family checkpoint and grow its embeddings to ``len(tokenizer)``.

    ``tokenizer`` must come from `GenTokenizer.from_pretrained(local_dir, ...)`: its text ids are the
    checkpoint's. New rows (our special/profile/SID tokens) start at the mean of the old embeddings,
    which keeps the first logits sane. Never touches the network.
    """
    cfg = cfg or GeneratorConfig()
    semantic = semantic_fields(cfg, tokenizer)  # the projection is new: initialised, then trained
    config = Qwen2Config.from_pretrained(str(local_dir), local_files_only=True)
    for key, value in semantic.items():
        setattr(config, key, value)
    with _quiet():
        model = model_class(config).from_pretrained(
            str(local_dir),
            config=config,
            local_files_only=True,
            dtype=resolve_dtype(cfg.dtype),
            attn_implementation=cfg.attn_implementation,
        )
    old = int(cast(torch.Tensor, model.get_input_embeddings().weight).shape[0])
    if tokenizer.n_text > old:
        raise ValueError(f"tokenizer has {tokenizer.n_text} text ids but the checkpoint only {old}: not its tokenizer")
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.config.pad_token_id = tokenizer.pad_id
    model.config.bos_token_id = tokenizer.bos_id
    model.config.eos_token_id = tokenizer.eos_id
    torch.nn.Module.to(model, resolve_device(cfg.device))  # in place
    return model


def make_generator(cfg: GeneratorConfig, tokenizer: GenTokenizer) -> Qwen2ForCausalLM:
    """`load_pretrained` when ``cfg.pretrained_dir`` is set, else `build_model`."""
    if cfg.pretrained_dir:
        return load_pretrained(cfg.pretrained_dir, tokenizer, cfg)
    return build_model(cfg, len(tokenizer), tokenizer=tokenizer)


def save_generator(
    model: Qwen2ForCausalLM, tokenizer: GenTokenizer, out_dir: str | Path, *, cfg: GeneratorConfig | None = None
) -> Path:
    """Write config.json + model.safetensors + tokenizer.json (+ generator.json when ``cfg`` is given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save(out_dir / TOKENIZER_FILE)
    if cfg is not None:
        (out_dir / GENERATOR_FILE).write_text(json.dumps(asdict(cfg), indent=2))
    return out_dir


def load_generator(path: str | Path, *, device: str = "cpu", dtype: str | None = None) -> Generator:
    """Read a directory written by `save_generator` (or a trainer's final checkpoint)."""
    path = Path(path)
    tokenizer = GenTokenizer.load(path / TOKENIZER_FILE)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)} if dtype else {}
    config = Qwen2Config.from_pretrained(str(path), local_files_only=True)
    with _quiet():
        model = model_class(config).from_pretrained(str(path), local_files_only=True, **kwargs)
    model.eval()
    torch.nn.Module.to(model, resolve_device(device))  # in place
    return Generator(model, tokenizer)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
