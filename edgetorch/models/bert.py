"""A BERT-style encoder whose parameter names match Hugging Face's BertModel,
so real checkpoints (all-MiniLM-L6-v2) load with load_state_dict.

Devlin et al. 2019; post-LayerNorm blocks, learned absolute positions.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .. import nn
from ..functional import arange, zeros
from ..nn import functional as F
from ._config import FromHF


@dataclass
class EncoderConfig(FromHF):
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0



def _act(name):
    if name == "gelu":
        return lambda x: F.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported hidden_act {name!r}")


class BertEmbeddings(nn.Module):
    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids, token_type_ids=None):         # ids (B, T)
        t = ids.shape[1]
        pos = arange(t).unsqueeze(0)                      # (1, T)
        if token_type_ids is None:
            token_type_ids = zeros(ids.shape, dtype="int64")
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)                          # (B, T, H)


class BertSelfAttention(nn.Module):
    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.h = c.num_attention_heads
        self.d = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x, mask):                            # x (B, T, H); mask (B, 1, 1, T) bool
        b, t, _ = x.shape
        q = self.query(x).reshape(b, t, self.h, self.d).transpose(1, 2)   # (B, h, T, d)
        k = self.key(x).reshape(b, t, self.h, self.d).transpose(1, 2)
        v = self.value(x).reshape(b, t, self.h, self.d).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, mask)  # (B, h, T, d)
        return o.transpose(1, 2).reshape(b, t, self.h * self.d)


class BertSelfOutput(nn.Module):
    def __init__(self, c: EncoderConfig, din):
        super().__init__()
        self.dense = nn.Linear(din, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _act(c.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, x, mask):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoderStack(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x, mask):
        for lyr in self.layer:
            x = lyr(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, h):
        return F.tanh(self.dense(h[:, 0]))


class Encoder(nn.Module):
    """BERT encoder: Encoder(config)(input_ids, attention_mask) -> (B, T, hidden)."""

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = c = config or EncoderConfig()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoderStack(c)
        self.pooler = BertPooler(c)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        b, t = input_ids.shape
        mask = None
        if attention_mask is not None:
            mask = attention_mask.reshape(b, 1, 1, t).to("bool")   # True = may attend
        x = self.embeddings(input_ids, token_type_ids)
        return self.encoder(x, mask)                               # (B, T, H)

    def pooled_output(self, hidden):
        return self.pooler(hidden)

    @staticmethod
    def mean_pool(hidden, attention_mask):
        """Sentence embedding: mean of token vectors where attention_mask is 1."""
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)          # (B, T, 1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)

    @classmethod
    def from_pretrained(cls, folder):
        """Load config.json + model.safetensors written by Hugging Face (BertModel)."""
        from ..serialization import load
        cfg = EncoderConfig.from_json(os.path.join(folder, "config.json"))
        m = cls(cfg)
        sd = load(os.path.join(folder, "model.safetensors"))
        sd = {k.removeprefix("bert."): v for k, v in sd.items() if not k.endswith("position_ids")}
        m.load_state_dict(sd)
        return m.eval()


del math
