"""A lean Qwen2 decoder for SID decoding: one prefill over the prompts, then a few steps over the beams.

`beam_search` (gen/beam.py) calls `transformers`' generic forward for every step: mask building, cache
objects, per-call checks, and the KV cache of the whole prompt copied for every beam and reordered
after every step. SID decoding needs much less: the prompt is read once, and then D-1 single-token
steps follow in which every beam of a prompt shares that prompt's keys and values. This module is the
same Qwen2 arithmetic written out for exactly that, over the model's own weights:

- RMSNorm (float32 variance, as transformers), RoPE (the model's own ``inv_freq``), grouped-query
  attention, SwiGLU MLP, final norm and the output projection.
- **Prefill** (`LeanDecoder.prefill`): left-padded prompts through every layer with
  ``scaled_dot_product_attention``; keeps each layer's prompt keys/values ``(n, kv, L, hd)``, once per
  prompt, and the last position's logits. The last layer runs its attention and MLP for the last
  position only (no later layer reads the others).
- **Steps** (`LeanDecoder.step`): the ``k`` beams of a prompt are ``k`` queries against that prompt's
  shared keys (one batched matmul, nothing copied per beam) plus each beam's own few SID-token
  keys/values ``(n, kv, k, t, hd)``, the only cache that is reordered (by `gather_own`) when beams are
  chosen. Softmax over both parts together, so the attention is the model's.
- Scores stay exact log-probabilities: the logits cover the full vocabulary (one matmul) because the
  log-softmax normalises over it, as in `beam_search`.

Weights are read from the model at construction (q/k/v and gate/up are concatenated into one matmul
each): build a new `LeanDecoder` after changing the model's weights. `LeanDecoder.unsupported(model)`
names what this decoder does not reproduce (sliding windows, other RoPE types, activations); callers
then use `beam_search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecall.gen.semantic import is_semantic


@dataclass(frozen=True)
class _Layer:
    """One decoder layer's weights: norms, fused q/k/v (with bias), output, fused gate/up, down."""

    ln_attn: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor
    o_b: torch.Tensor | None
    ln_mlp: torch.Tensor
    gate_up_w: torch.Tensor
    down_w: torch.Tensor


@dataclass
class Prefill:
    """What decoding needs from the prompts: per layer keys/values ``(n, kv, L, hd)``, an additive
    key mask ``(n, 1, 1, L)`` for left padding (None without padding), the position of the first SID
    token ``(n,)`` and the logits after the prompt ``(n, vocab)``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor | None
    next_pos: torch.Tensor
    logits: torch.Tensor

    def select(self, rows: torch.Tensor) -> Prefill:
        """The same for a subset of the prompts (``rows`` index the first dimension)."""
        return Prefill(
            [k.index_select(0, rows) for k in self.keys],
            [v.index_select(0, rows) for v in self.values],
            None if self.mask is None else self.mask.index_select(0, rows),
            self.next_pos.index_select(0, rows),
            self.logits.index_select(0, rows),
        )


Own = tuple[list[torch.Tensor], list[torch.Tensor]]  # per layer: each beam's SID-token keys / values


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2RMSNorm: variance in float32, scaled back in the input dtype."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers applies it (rotate_half over the two halves of the head dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LeanDecoder:
    """Qwen2 arithmetic for SID decoding over a (possibly semantic) `Qwen2ForCausalLM`'s weights."""

    def __init__(self, model: nn.Module) -> None:
        why = self.unsupported(model)
        if why:
            raise ValueError(f"the lean decoder cannot run this model: {why}")
        inner: Any = getattr(model, "module", model)  # a DDP wrapper holds the model in .module
        self.model = inner
        cfg = inner.config
        self.heads, self.kv_heads = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        self.groups = self.heads // self.kv_heads
        self.scale = self.head_dim**-0.5
        self.eps = float(cfg.rms_norm_eps)
        self.max_positions = getattr(cfg, "max_position_embeddings", None)
        base = inner.model
        rotary = base.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().float()
        self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.embed = base.embed_tokens.weight.detach()
        self.norm = base.norm.weight.detach()
        self.lm_head = inner.lm_head.weight.detach()
        self.layers = [self._layer(layer) for layer in base.layers]
        self.semantic = is_semantic(inner)
        self.device = self.embed.device

    @staticmethod
    def unsupported(model: nn.Module) -> str:
        """Why this decoder would not reproduce ``model`` ("" when it does)."""
        model = getattr(model, "module", model)
        cfg = getattr(model, "config", None)
        if cfg is None or getattr(cfg, "model_type", "") != "qwen2":
            return "not a Qwen2 model"
        if getattr(cfg, "use_sliding_window", False) or any(
            t != "full_attention" for t in getattr(cfg, "layer_types", None) or []
        ):
            return "sliding-window attention"
        rope = getattr(cfg, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            return f"RoPE type {rope.get('rope_type')!r}"
        if getattr(cfg, "hidden_act", "silu") != "silu":
            return f"activation {cfg.hidden_act!r}"
        return ""

    @staticmethod
    def _layer(layer: Any) -> _Layer:
        a, m = layer.self_attn, layer.mlp

        def bias(*mods: nn.Linear) -> torch.Tensor | None:
            if all(x.bias is None for x in mods):
                return None
            return torch.cat([x.bias if x.bias is not None else x.weight.new_zeros(x.out_features) for x in mods])

        return _Layer(
            ln_attn=layer.input_layernorm.weight.detach(),
            qkv_w=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
            qkv_b=None if (b := bias(a.q_proj, a.k_proj, a.v_proj)) is None else b.detach(),
            o_w=a.o_proj.weight.detach(),
            o_b=None if a.o_proj.bias is None else a.o_proj.bias.detach(),
            ln_mlp=layer.post_attention_layernorm.weight.detach(),
            gate_up_w=torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach(),
            down_w=m.down_proj.weight.detach(),
        )

    # -- shared pieces -----------------------------------------------------------------------------------------
    def _rope(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of positions ``pos`` (any shape) -> shape ``(*pos.shape, head_dim)``, model dtype."""
        freqs = pos.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        dtype = self.embed.dtype
        return (emb.cos() * self.rope_scaling).to(dtype), (emb.sin() * self.rope_scaling).to(dtype)

    def _qkv(self, layer: _Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = F.linear(_rms(x, layer.ln_attn, self.eps), layer.qkv_w, layer.qkv_b)
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return qkv[..., :q_dim], qkv[..., q_dim : q_dim + kv_dim], qkv[..., q_dim + kv_dim :]

    def _finish(self, layer: _Layer, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual after attention, then the SwiGLU MLP and its residual."""
        x = x + F.linear(attn, layer.o_w, layer.o_b)
        gate, up = F.linear(_rms(x, layer.ln_mlp, self.eps), layer.gate_up_w).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, layer.down_w)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and the full-vocabulary projection (exact log-softmax needs every column)."""
        return F.linear(_rms(hidden, self.norm, self.eps), self.lm_head)

    # -- prefill -----------------------------------------------------------------------------------------------
    def embeddings(self, ids: torch.Tensor, semantic: np.ndarray | None) -> torch.Tensor:
        """Token embeddings, ``<sem>`` placeholders replaced by the projected vectors on a semantic model."""
        if semantic is not None and self.semantic:
            vectors = torch.as_tensor(np.asarray(semantic, dtype=np.float32), device=self.device)
            out: torch.Tensor = self.model.semantic_embeds(ids, vectors)
            return out
        return F.embedding(ids, self.embed)

    def prefill(self, ids: torch.Tensor, attn: torch.Tensor, semantic: np.ndarray | None = None) -> Prefill:
        """Run left-padded prompts ``ids`` (n, L) with mask ``attn`` through the model once."""
        n, length = ids.shape
        padded = bool((attn == 0).any())
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        cos, sin = (t[:, None] for t in self._rope(pos))  # (n, 1, L, hd)
        allowed = None
        if padded:  # causal, real keys only; a pad query sees itself (no empty softmax row, no NaN)
            causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
            eye = torch.eye(length, dtype=torch.bool, device=ids.device)
            allowed = (causal & (attn.bool()[:, None, :] | eye))[:, None]  # (n, 1, L, L)
        x = self.embeddings(ids, semantic)
        keys, values = [], []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x)
            q = _rotate(q.view(n, length, self.heads, self.head_dim).transpose(1, 2), cos, sin)
            k = _rotate(k.view(n, length, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
            v = v.view(n, length, self.kv_heads, self.head_dim).transpose(1, 2)
            keys.append(k)
            values.append(v)
            mask = allowed
            if i == last:  # nothing reads the other positions of the last layer
                q, x = q[:, :, -1:], x[:, -1:]
                mask = None if allowed is None else allowed[:, :, -1:]
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and i != last, scale=self.scale, enable_gqa=True
            )
            x = self._finish(layer, x, out.transpose(1, 2).reshape(n, -1, self.heads * self.head_dim))
        key_mask = None
        if padded:
            key_mask = torch.zeros((n, 1, 1, length), dtype=x.dtype, device=ids.device)
            key_mask.masked_fill_(~attn.bool()[:, None, None, :], float("-inf"))
        return Prefill(keys, values, key_mask, pos[:, -1] + 1, self.logits(x[:, -1]))

    # -- one step over the beams -------------------------------------------------------------------------------
    def step(self, pre: Prefill, tokens: torch.Tensor, own: Own, t: int) -> tuple[torch.Tensor, Own]:
        """Feed ``tokens`` (n, k): the t-th SID token of each of a prompt's k beams; ``own`` holds each
        beam's earlier SID-token keys/values, already in the order of ``tokens``' beams. Returns the
        logits (n * k, vocab) and ``own`` with this step's keys/values appended."""
        n, k = tokens.shape
        kv, g, hd = self.kv_heads, self.groups, self.head_dim
        cos, sin = self._rope(pre.next_pos + t)  # (n, hd): all beams of a prompt are at one position
        x = F.embedding(tokens, self.embed)  # (n, k, hidden)
        own_k, own_v = [], []
        for i, layer in enumerate(self.layers):
            q, kn, vn = self._qkv(layer, x)
            q = _rotate(q.view(n, k, kv, g, hd), cos[:, None, None, None], sin[:, None, None, None])
            kn = _rotate(kn.view(n, k, kv, hd), cos[:, None, None], sin[:, None, None])
            q = q.permute(0, 2, 1, 3, 4)  # (n, kv, k, g, hd)
            ks = torch.cat([own[0][i], kn.permute(0, 2, 1, 3)[:, :, :, None]], dim=3)  # (n, kv, k, t+1, hd)
            vs = torch.cat([own[1][i], vn.view(n, k, kv, hd).permute(0, 2, 1, 3)[:, :, :, None]], dim=3)
            own_k.append(ks)
            own_v.append(vs)
            prompt = torch.matmul(q.reshape(n, kv, k * g, hd), pre.keys[i].transpose(-1, -2)) * self.scale
            if pre.mask is not None:
                prompt = prompt + pre.mask
            mine = torch.matmul(q, ks.transpose(-1, -2)) * self.scale  # (n, kv, k, g, t+1)
            length = prompt.shape[-1]
            scores = torch.cat([prompt.view(n, kv, k, g, length), mine], dim=-1)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)  # fp32 softmax, as SDPA
            out = torch.matmul(probs[..., :length].reshape(n, kv, k * g, length), pre.values[i]).view(n, kv, k, g, hd)
            out = out + torch.matmul(probs[..., length:], vs)
            x = self._finish(layer, x, out.permute(0, 2, 1, 3, 4).reshape(n, k, self.heads * hd))
        return self.logits(x).reshape(n * k, -1), (own_k, own_v)

    def no_own(self, n: int) -> Own:
        """The empty SID-token cache of ``n`` prompts (one beam each, no SID token yet)."""
        empty = self.embed.new_zeros((n, self.kv_heads, 1, 0, self.head_dim))
        return [empty] * len(self.layers), [empty] * len(self.layers)


def gather_own(own: Own, parent: torch.Tensor) -> Own:
    """Each new beam's SID-token keys/values: those of its parent beam (``parent`` (n, k') indexes dim 2)."""

    def pick(x: torch.Tensor) -> torch.Tensor:
        n, kv, _, t, hd = x.shape
        index = parent[:, None, :, None, None].expand(n, kv, parent.shape[1], t, hd)
        return x.gather(2, index)

    return [pick(x) for x in own[0]], [pick(x) for x in own[1]]
