"""nn.MultiheadAttention with torch's parameter layout (packed in_proj)."""
import math

import numpy as np

from .._errors import ShapeError
from . import functional as F
from . import init
from .layers import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017), torch.nn.MultiheadAttention's API.

    Inputs are (L, N, E) unless batch_first=True; returns (output, weights or None).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False):
        super().__init__()
        if embed_dim % num_heads:
            raise ShapeError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), np.float32))
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None
        if not bias:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, lq, e = query.shape
        ls = key.shape[1]
        if e != self.embed_dim:
            raise ShapeError(f"MultiheadAttention: query has embed dim {e}, expected {self.embed_dim}")
        w, bias = self.in_proj_weight, self.in_proj_bias
        wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        bq, bk, bv = (None, None, None) if bias is None else (bias[:e], bias[e:2 * e], bias[2 * e:])
        h, d = self.num_heads, self.head_dim
        q = F.linear(query, wq, bq).reshape(b, lq, h, d).transpose(1, 2)
        k = F.linear(key, wk, bk).reshape(b, ls, h, d).transpose(1, 2)
        v = F.linear(value, wv, bv).reshape(b, ls, h, d).transpose(1, 2)
        mask = None
        if attn_mask is not None:
            mask = attn_mask.logical_not() if attn_mask.dtype.name == "bool" else attn_mask
        if key_padding_mask is not None:
            kp = key_padding_mask.reshape(b, 1, 1, ls)
            allowed = kp.logical_not() if kp.dtype.name == "bool" else None
            if allowed is None:
                mask = kp if mask is None else mask + kp
            elif mask is None:
                mask = allowed
            elif mask.dtype.name == "bool":
                mask = mask & allowed
            else:
                mask = mask.masked_fill(allowed.logical_not(), float("-inf"))
        if need_weights:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            if is_causal and mask is None:
                from ..functional import ones
                mask = ones(lq, ls, dtype="bool").tril()
            if mask is not None:
                s = s.masked_fill(mask.logical_not(), float("-inf")) if mask.dtype.name == "bool" else s + mask
            p = s.softmax(-1)
            o = p @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal and mask is None)
            p = None
        o = self.out_proj(o.transpose(1, 2).reshape(b, lq, e))
        if not self.batch_first:
            o = o.transpose(0, 1)
        if p is not None and average_attn_weights:
            p = p.mean(dim=1)
        return o, p
