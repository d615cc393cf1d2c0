"""How each registry op is spelled in PyTorch (the oracle for tests/test_ops.py)."""


def _t():
    import torch
    return torch


def _F():
    import torch.nn.functional as F
    return F


def _idx(x, *idx, index):
    it = iter(idx)
    return tuple(next(it) if (isinstance(e, str) and e == "#") else e for e in index)


def _getitem(x, *idx, index):
    import pytest
    if any(isinstance(e, slice) and (e.step or 1) < 0 for e in index):
        pytest.skip("torch has no negative-step slices")
    return x[_idx(x, *idx, index=index)]


def _index_put(b, v, *idx, index, accumulate=False):
    key = _idx(b, *idx, index=index)
    return b.index_put(key, v.expand_as(b[key]) if v.dim() == 0 else v, accumulate=accumulate) \
        if all(not isinstance(k, slice) and k is not Ellipsis and k is not None and not isinstance(k, int)
               for k in key) else _setitem(b, key, v)


def _setitem(b, key, v):
    c = b.clone()
    c[key] = v
    return c


def _sum(x, dim=None, keepdim=False):
    return x.sum() if dim is None else x.sum(dim=dim, keepdim=keepdim)


def _red(name):
    def f(x, dim=None, keepdim=False):
        t = _t()
        if dim is None:
            r = getattr(t, name)(x)
            return r.reshape((1,) * x.dim()) if keepdim else r
        return getattr(t, name)(x, dim=dim, keepdim=keepdim)
    return f


def _prod(x, dim=None, keepdim=False):
    return x.prod() if dim is None else x.prod(dim=dim, keepdim=keepdim)


def _logsumexp(x, dim=None, keepdim=False):
    return _t().logsumexp(x, dim=tuple(range(x.dim())) if dim is None else dim, keepdim=keepdim)


def _var(x, dim=None, correction=1, keepdim=False):
    return _t().var(x, dim=dim, correction=correction, keepdim=keepdim)


def _conv_kw(a):
    return {k: a[k] for k in ("stride", "padding", "dilation", "groups") if k in a}


def _pool(name):
    def f(x, **a):
        return getattr(_F(), name)(x, **a)
    return f


def _emb(ids, w, padding_idx=None):
    return _F().embedding(ids, w, padding_idx=padding_idx)


def _bn(x, m, v, w=None, b=None, eps=1e-5):
    return _F().batch_norm(x, m, v, w, b, training=False, eps=eps)


def _bn_train(x, w=None, b=None, eps=1e-5):
    return _F().batch_norm(x, None, None, w, b, training=True, eps=eps)


def _rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + _t().cat([-x[..., h:], x[..., :h]], -1) * sin


def _sdpa(q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False):
    return _F().scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale,
                                            enable_gqa=enable_gqa)


def _clamp(x, min=None, max=None):  # noqa: A002
    return _t().clamp(x, min=min, max=max)


def _pad(x, pad, value=0.0):
    return _F().pad(x, pad, value=value)


def _act(y, a):
    if a == "gelu_tanh":
        return _F().gelu(y, approximate="tanh")
    return getattr(_F(), a)(y) if a in ("relu", "silu", "gelu") else getattr(_t(), a)(y)


TORCH = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
    "maximum": lambda a, b: _t().maximum(a, b), "minimum": lambda a, b: _t().minimum(a, b),
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "where": lambda c, a, b: _t().where(c, a, b), "clamp": _clamp,
    "neg": lambda x: -x, "abs": lambda x: x.abs(), "exp": lambda x: x.exp(), "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(), "rsqrt": lambda x: x.rsqrt(), "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(), "tanh": lambda x: x.tanh(), "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: _F().relu(x), "leaky_relu": lambda x, negative_slope=0.01: _F().leaky_relu(x, negative_slope),
    "gelu": lambda x, approximate="none": _F().gelu(x, approximate=approximate),
    "silu": lambda x: _F().silu(x), "softplus": lambda x, beta=1.0, threshold=20.0: _F().softplus(x, beta, threshold),
    "sum": _sum, "mean": lambda x, dim=None, keepdim=False: x.mean() if dim is None else x.mean(dim=dim, keepdim=keepdim),
    "amax": lambda x, dim=None, keepdim=False: _t().amax(x, dim=() if dim is None else dim, keepdim=keepdim),
    "amin": lambda x, dim=None, keepdim=False: _t().amin(x, dim=() if dim is None else dim, keepdim=keepdim),
    "argmax": _red("argmax"), "argmin": _red("argmin"), "var": _var, "logsumexp": _logsumexp, "prod": _prod,
    "matmul": lambda a, b: a @ b, "linear": lambda x, w, b=None: _F().linear(x, w, b),
    "einsum": lambda a, b, equation: _t().einsum(equation, a, b),
    "reshape": lambda x, shape: x.reshape(shape), "permute": lambda x, dims: x.permute(dims),
    "expand": lambda x, shape: x.expand(shape), "repeat": lambda x, repeats: x.repeat(repeats),
    "cat": lambda *xs, dim=0: _t().cat(xs, dim=dim), "pad": _pad,
    "roll": lambda x, shifts, dims=None: _t().roll(x, shifts, dims),
    "triu": lambda x, diagonal=0: _t().triu(x, diagonal), "tril": lambda x, diagonal=0: _t().tril(x, diagonal),
    "flip": lambda x, dims: _t().flip(x, dims),
    "getitem": _getitem, "index_put": _index_put,
    "gather": lambda x, i, dim: _t().gather(x, dim, i),
    "scatter_add": lambda x, i, s, dim: x.scatter_add(dim, i, s),
    "index_select": lambda x, i, dim: _t().index_select(x, dim, i),
    "index_add": lambda x, i, s, dim: x.index_add(dim, i, s),
    "softmax": lambda x, dim: _F().softmax(x, dim), "log_softmax": lambda x, dim: _F().log_softmax(x, dim),
    "layer_norm": lambda x, w=None, b=None, normalized_shape=None, eps=1e-5: _F().layer_norm(x, normalized_shape, w, b, eps),
    "rms_norm": lambda x, w=None, normalized_shape=None, eps=None: _F().rms_norm(x, normalized_shape, w, eps),
    "embedding": _emb, "batch_norm": _bn, "batch_norm_train": _bn_train, "rotary_embedding": _rope,
    "scaled_dot_product_attention": _sdpa,
    "conv2d": lambda x, w, b=None, **a: _F().conv2d(x, w, b, **_conv_kw(a)),
    "conv_transpose2d": lambda x, w, b=None, **a: _F().conv_transpose2d(
        x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0),
        output_padding=a.get("output_padding", 0), groups=a.get("groups", 1), dilation=a.get("dilation", 1)),
    "max_pool2d": _pool("max_pool2d"), "avg_pool2d": _pool("avg_pool2d"),
    "arange": lambda end, start=0, step=1, dtype="int64": _t().arange(start, end, step, dtype=getattr(_t(), dtype)),
    "full": lambda shape, value=0.0, dtype="float32": _t().full(shape, value, dtype=getattr(_t(), dtype)),
    "fused_linear": lambda x, w, b=None, activation=None: _act(_F().linear(x, w, b), activation),
    "fused_conv2d": lambda x, w, b=None, activation=None, **a: _act(_F().conv2d(x, w, b, **_conv_kw(a)), activation),
    "adaptive_avg_pool2d": lambda x, output_size: _F().adaptive_avg_pool2d(x, output_size),
}
