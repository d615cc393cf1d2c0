"""nn.functional: torch's functional API over the registry's ops.

Composite functions (cross_entropy, dropout, training-mode batch norm) are
written in frontend ops, so they decompose at capture.
"""
from __future__ import annotations

import numpy as np

from .._errors import EdgeTorchError, ShapeError
from ..autograd import grad_mode
from ..ops import conv as C
from ..ops import elementwise as E
from ..ops import linalg as L
from ..ops import nn as N
from ..ops import shape as S
from ..random import _rng
from .._tensor import Tensor


def _pair(v, name="argument"):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ShapeError(f"{name} must be an int or a pair, got {v}")
    return v


# ------------------------------------------------------------------ activations
def relu(x, inplace=False): return E.relu(x)
def relu6(x, inplace=False): return E.clamp(x, min=0.0, max=6.0)
def leaky_relu(x, negative_slope=0.01, inplace=False): return E.leaky_relu(x, negative_slope=negative_slope)
def gelu(x, approximate="none"): return E.gelu(x, approximate=approximate)
def silu(x, inplace=False): return E.silu(x)
def sigmoid(x): return E.sigmoid(x)
def tanh(x): return E.tanh(x)
def softplus(x, beta=1.0, threshold=20.0): return E.softplus(x, beta=beta, threshold=threshold)
def hardtanh(x, min_val=-1.0, max_val=1.0): return E.clamp(x, min=min_val, max=max_val)


def softmax(x, dim=None, dtype=None):
    if dim is None:
        raise ShapeError("softmax: pass dim explicitly (implicit dim is deprecated in torch too)")
    return N.softmax(x if dtype is None else x.to(dtype), dim=dim)


def log_softmax(x, dim=None, dtype=None):
    if dim is None:
        raise ShapeError("log_softmax: pass dim explicitly")
    return N.log_softmax(x if dtype is None else x.to(dtype), dim=dim)


def glu(x, dim=-1):
    a, b = x.chunk(2, dim)
    return a * b.sigmoid()


def normalize(x, p=2.0, dim=1, eps=1e-12):
    n = (x.abs() ** p).sum(dim=dim, keepdim=True) ** (1.0 / p)
    return x / n.clamp(min=eps)


def cosine_similarity(a, b, dim=1, eps=1e-8):
    na = (a * a).sum(dim=dim).sqrt().clamp(min=eps)
    nb = (b * b).sum(dim=dim).sqrt().clamp(min=eps)
    return (a * b).sum(dim=dim) / (na * nb)


# ------------------------------------------------------------------ linear & conv
def linear(x, weight, bias=None):
    return L.linear(x, weight, bias)


def _same_padding(k, d):
    total = d * (k - 1)
    return total // 2, total - total // 2


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution over NCHW input; padding may be an int, a pair, 'same' or 'valid'."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ShapeError("conv2d: padding='same' is not supported for strided convolutions")
            ph = _same_padding(weight.shape[2], dilation[0])
            pw = _same_padding(weight.shape[3], dilation[1])
            if ph[0] != ph[1] or pw[0] != pw[1]:
                x = S.pad(x, pad=(pw[0], pw[1], ph[0], ph[1]))
                padding = (0, 0)
            else:
                padding = (ph[0], pw[0])
        else:
            raise ShapeError(f"conv2d: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}")
    return C.conv2d(x, weight, bias, stride=stride, padding=_pair(padding, "padding"),
                    dilation=dilation, groups=groups)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution (N, C, L), computed as a conv2d of height 1."""
    pad = padding if isinstance(padding, str) else (0, padding if isinstance(padding, int) else padding[0])
    y = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, stride=(1, stride if isinstance(stride, int) else stride[0]),
               padding=pad, dilation=(1, dilation if isinstance(dilation, int) else dilation[0]), groups=groups)
    return y.squeeze(2)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return C.conv_transpose2d(x, weight, bias, stride=_pair(stride), padding=_pair(padding),
                              output_padding=_pair(output_padding), dilation=_pair(dilation), groups=groups)


# ------------------------------------------------------------------ pooling
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    if return_indices:
        raise EdgeTorchError("max_pool2d: return_indices=True is not supported")
    k = _pair(kernel_size)
    return C.max_pool2d(x, kernel_size=k, stride=_pair(stride) if stride is not None else k,
                        padding=_pair(padding), dilation=_pair(dilation), ceil_mode=ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    if divisor_override is not None:
        raise EdgeTorchError("avg_pool2d: divisor_override is not supported")
    k = _pair(kernel_size)
    return C.avg_pool2d(x, kernel_size=k, stride=_pair(stride) if stride is not None else k,
                        padding=_pair(padding), ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool2d(x, output_size):
    o = _pair(output_size) if not isinstance(output_size, int) else (output_size, output_size)
    o = tuple(x.shape[-2 + i] if v is None else v for i, v in enumerate(o))
    return C.adaptive_avg_pool2d(x, output_size=o)


# ------------------------------------------------------------------ normalization
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return N.layer_norm(x, weight, bias, normalized_shape=ns, eps=eps)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return N.rms_norm(x, weight, normalized_shape=ns, eps=eps)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch norm; in training, normalizes with batch statistics and updates the
    running ones in place (unbiased variance, as torch)."""
    if not training:
        if running_mean is None or running_var is None:
            raise EdgeTorchError("batch_norm: eval mode needs running_mean and running_var")
        return N.batch_norm(x, running_mean, running_var, weight, bias, eps=eps)
    n = x.numel() // x.shape[1]
    if n <= 1:
        raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, "
                         f"got input of shape {tuple(x.shape)}")
    y = N.batch_norm_train(x, weight, bias, eps=eps)
    if running_mean is not None:
        from .._native import norm
        mean, _, var = norm.stats(x.detach().numpy(), eps)
        with grad_mode.no_grad():
            running_mean.mul_(1 - momentum).add_(Tensor(mean * momentum).to(running_mean.dtype))
            running_var.mul_(1 - momentum).add_(Tensor(var * (n / (n - 1)) * momentum).to(running_var.dtype))
    return y


# ------------------------------------------------------------------ misc
def embedding(ids, weight, padding_idx=None):
    return N.embedding(ids, weight, padding_idx=padding_idx)


def dropout(x, p=0.5, training=True, inplace=False, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise EdgeTorchError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = (_rng(generator).random(x.shape) >= p).astype(x._data.dtype) / (1.0 - p)
    return x * Tensor._wrap(keep)


def pad(x, pad, mode="constant", value=0.0):  # noqa: A002
    if mode != "constant":
        raise EdgeTorchError(f"pad: only mode='constant' is supported, got {mode!r}")
    return S.pad(x, pad=tuple(int(p) for p in pad), value=float(value))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """softmax(q k^T / sqrt(d) + mask) v; bool masks mark allowed positions."""
    if dropout_p:
        raise EdgeTorchError("scaled_dot_product_attention: dropout_p > 0 is not supported")
    return N.scaled_dot_product_attention(query, key, value, attn_mask, is_causal=is_causal,
                                          scale=scale, enable_gqa=enable_gqa)


def one_hot(ids, num_classes=-1):
    a = ids._data
    n = int(a.max()) + 1 if num_classes < 0 else num_classes
    if a.size and (a.min() < 0 or a.max() >= n):
        raise EdgeTorchError(f"one_hot: class values must be in [0, {n}), got range [{a.min()}, {a.max()}]")
    return Tensor._wrap(np.eye(n, dtype=np.int64)[a])


def apply_rotary_emb(x, cos, sin):
    """Rotary position embedding (rotate-half layout, as Hugging Face Llama)."""
    return N.rotary_embedding(x, cos, sin)


def rotary_cos_sin(positions, head_dim, base=10000.0, dtype=None):
    """cos/sin tables (T, head_dim) for the given positions (Su et al. 2021)."""
    pos = positions._data if isinstance(positions, Tensor) else np.asarray(positions)
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = pos.astype(np.float64)[..., None] * inv
    emb = np.concatenate([ang, ang], -1)
    npd = np.float32 if dtype is None else dtype.np
    return Tensor._wrap(np.cos(emb).astype(npd)), Tensor._wrap(np.sin(emb).astype(npd))


# ------------------------------------------------------------------ losses
def _reduce(loss, reduction, weight_sum=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / weight_sum if weight_sum is not None else loss.mean()
    raise EdgeTorchError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def nll_loss(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices; logp is (N, C, ...) log-probabilities."""
    if target.dtype.is_floating_point:
        raise EdgeTorchError("nll_loss: target must hold class indices (an integer tensor)")
    c = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    t = target._data
    valid = t != ignore_index
    if np.any((t[valid] < 0) | (t[valid] >= c)):
        bad = t[valid][(t[valid] < 0) | (t[valid] >= c)][0]
        raise EdgeTorchError(f"nll_loss: target {int(bad)} is out of bounds for {c} classes")
    safe = Tensor._wrap(np.where(valid, t, 0).astype(np.int64))
    lp = logp if logp.ndim > 1 else logp.unsqueeze(0)
    sf = safe if logp.ndim > 1 else safe.reshape(1)
    picked = -lp.gather(1, sf.unsqueeze(1)).squeeze(1)
    w = Tensor._wrap(valid.astype(logp._data.dtype).reshape(sf.shape))
    if weight is not None:
        w = w * weight.index_select(0, sf.reshape(-1)).reshape(sf.shape)
    loss = picked * w
    if logp.ndim == 1:
        loss, w = loss.reshape(()), w.reshape(())
    return _reduce(loss, reduction, w.sum() if reduction == "mean" else None)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):  # noqa: A002
    """Cross entropy of logits (N, C, ...) against class indices or class probabilities."""
    logp = log_softmax(input, dim=1 if input.ndim > 1 else 0)
    if target.dtype.is_floating_point:
        if tuple(target.shape) != tuple(input.shape):
            raise ShapeError(f"cross_entropy: probability targets must have the input's shape "
                             f"{tuple(input.shape)}, got {tuple(target.shape)}")
        c = input.shape[1] if input.ndim > 1 else input.shape[0]
        tgt = target * (1 - label_smoothing) + label_smoothing / c if label_smoothing else target
        wl = logp * weight.reshape((-1,) + (1,) * (input.ndim - 2)) if weight is not None else logp
        loss = -(tgt * wl).sum(dim=1 if input.ndim > 1 else 0)
        return _reduce(loss, reduction)
    nll = nll_loss(logp, target, weight, ignore_index, reduction="none")
    t = target._data
    valid = Tensor._wrap((t != ignore_index).astype(input._data.dtype))
    if weight is not None:
        safe = Tensor._wrap(np.where(t != ignore_index, t, 0).astype(np.int64))
        denom_w = valid * weight.index_select(0, safe.reshape(-1)).reshape(safe.shape)
    else:
        denom_w = valid
    if label_smoothing:
        c = input.shape[1] if input.ndim > 1 else input.shape[0]
        wl = logp * weight.reshape((-1,) + (1,) * (input.ndim - 2)) if weight is not None else logp
        smooth = -wl.sum(dim=1 if input.ndim > 1 else 0) / c * valid
        nll = nll * (1 - label_smoothing) + smooth * label_smoothing
    return _reduce(nll, reduction, denom_w.sum() if reduction == "mean" else None)


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input, target, reduction="mean"):  # noqa: A002
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):  # noqa: A002
    d = (input - target).abs()
    return _reduce(E.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):  # noqa: A002
    """Stable form: max(x,0) - x*t + log(1+exp(-|x|)), with optional pos_weight."""
    if pos_weight is not None:
        lw = 1 + (pos_weight - 1) * target
        loss = (1 - target) * input + lw * (softplus(-input.abs()) + (-input).relu())
    else:
        loss = input.relu() - input * target + softplus(-input.abs())
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):  # noqa: A002
    x = input
    loss = -(target * x.log().clamp(min=-100.0) + (1 - target) * (1 - x).log().clamp(min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input, target, reduction="mean", log_target=False):  # noqa: A002
    loss = target.exp() * (target - input) if log_target else target * (target.clamp(min=1e-30).log() - input)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction)
