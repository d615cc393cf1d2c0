"""A Llama-style decoder (RMSNorm, rotary embeddings, grouped-query attention,
SwiGLU MLP) whose parameter names match Hugging Face's LlamaForCausalLM.

Touvron et al. 2023. Two forward paths:
  model(ids)                      training / full-sequence, causal mask
  model(ids, start_pos=p)         KV-cache path: writes keys/values for
                                  positions p..p+T-1 into the `k_cache` /
                                  `v_cache` buffers and attends over the cache.
The cache path uses only tensor ops (positions, masks and cache writes are
tensors), so the exporter can capture it as program state.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .. import nn
from .._errors import ShapeError
from ..functional import arange
from ..nn import functional as F
from ._config import FromHF
from .._tensor import Tensor


@dataclass
class DecoderConfig(FromHF):
    vocab_size: int = 32000
    hidden_size: int = 288
    intermediate_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 6
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    max_batch_size: int = 1
    kv_cache_dtype: str = "float32"       # or "float16" (llama.cpp's default): half the cache's bytes

    def __post_init__(self):
        if self.kv_cache_dtype not in ("float32", "float16"):
            raise ValueError(f"kv_cache_dtype {self.kv_cache_dtype!r}: 'float32' or 'float16'")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ShapeError(f"hidden_size {self.hidden_size}, heads {self.num_attention_heads} and kv heads "
                             f"{self.num_key_value_heads} must divide evenly")

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads



class LlamaAttention(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.h, self.kv, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, c.hidden_size, bias=False)
        shape = (c.max_batch_size, self.kv, c.max_position_embeddings, self.d)
        # KV cache: mutable state, not part of the checkpoint
        self.register_buffer("k_cache", Tensor(np.zeros(shape, c.kv_cache_dtype)), persistent=False)
        self.register_buffer("v_cache", Tensor(np.zeros(shape, c.kv_cache_dtype)), persistent=False)

    def forward(self, x, cos, sin, mask, pos=None):
        # x (B, T, D); cos/sin (T, d); mask (T, S) bool; pos (T,) int64 or None
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.h, self.d).transpose(1, 2)     # (B, h, T, d)
        k = self.k_proj(x).reshape(b, t, self.kv, self.d).transpose(1, 2)    # (B, kv, T, d)
        v = self.v_proj(x).reshape(b, t, self.kv, self.d).transpose(1, 2)
        q = F.apply_rotary_emb(q, cos, sin)
        k = F.apply_rotary_emb(k, cos, sin)
        if pos is not None:
            if b > self.k_cache.shape[0]:
                raise ShapeError(f"batch {b} exceeds the KV cache's max_batch_size {self.k_cache.shape[0]}")
            self.k_cache[:b, :, pos] = k
            self.v_cache[:b, :, pos] = v
            k, v = self.k_cache[:b], self.v_cache[:b]                          # (B, kv, S, d)
        o = F.scaled_dot_product_attention(q, k, v, mask, enable_gqa=self.h != self.kv)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.h * self.d))


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)

    def forward(self, x, cos, sin, mask, pos=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, pos)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)


class Decoder(nn.Module):
    """Llama-family causal LM: Decoder(config)(input_ids[, start_pos]) -> logits (B, T, vocab)."""

    def __init__(self, config: DecoderConfig | None = None):
        super().__init__()
        self.config = c = config or DecoderConfig()
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv = 1.0 / (c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim))
        self.register_buffer("inv_freq", Tensor(inv.astype(np.float32)), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def _rope(self, pos):                                      # pos (T,) int64
        ang = pos.to("float32").unsqueeze(-1) * self.inv_freq  # (T, d/2)
        emb = ang.repeat(1, 2)                                 # (T, d): [ang, ang]
        return emb.cos(), emb.sin()

    def forward(self, input_ids, start_pos=None, logits_to_keep=0):
        """Logits (B, T, vocab) for input_ids (B, T); with start_pos, keys and values go to the KV
        cache at start_pos.. and attention reads the cache. logits_to_keep=n > 0 computes the
        logits of the last n positions only (as Hugging Face's argument of that name): a prefill
        that feeds generation needs one row of the vocabulary projection, not T."""
        b, t = input_ids.shape
        c = self.config
        if start_pos is None:
            pos = arange(t)
            mask = None
            causal = True
        else:
            if isinstance(start_pos, int):
                start_pos = Tensor(np.asarray(start_pos, dtype=np.int64))
            pos = start_pos.reshape(-1)[:1] + arange(t)         # (T,)
            s = c.max_position_embeddings
            if not isinstance(start_pos._data, np.ndarray) or int(np.asarray(start_pos._data).reshape(-1)[0]) + t > s:
                raise ShapeError(f"KV cache holds {s} positions; start_pos + {t} tokens exceeds it")
            mask = arange(s).unsqueeze(0) <= pos.unsqueeze(1)   # (T, S): key j visible to query i
            causal = False
        cos, sin = self._rope(pos)
        x = self.model.embed_tokens(input_ids)                 # (B, T, D)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask if not causal else _causal(t), None if causal else pos)
        if logits_to_keep:
            x = x[:, -int(logits_to_keep):]
        return self.lm_head(self.model.norm(x))                # (B, T or logits_to_keep, vocab)

    def reset_cache(self):
        for layer in self.model.layers:
            layer.self_attn.k_cache.zero_()
            layer.self_attn.v_cache.zero_()

    @classmethod
    def from_pretrained(cls, folder, **overrides):
        """Load config.json + model.safetensors written by Hugging Face (LlamaForCausalLM)."""
        import os

        from ..serialization import load
        d = json.load(open(os.path.join(folder, "config.json")))
        d.update(overrides)
        m = cls(DecoderConfig.from_dict(d))
        sd = load(os.path.join(folder, "model.safetensors"))
        if m.config.tie_word_embeddings and "lm_head.weight" not in sd:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        m.load_state_dict(sd)
        return m.eval()


def _causal(t):
    return arange(t).unsqueeze(0) <= arange(t).unsqueeze(1)    # (T, T) bool, lower triangle
