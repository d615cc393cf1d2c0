"""Fusion passes: fold eval-mode batch norm into the preceding conv, and merge
linear/conv + activation into the fused registry ops."""
from __future__ import annotations

import numpy as np

from ..graph import Graph, Value
from .basic import dce, replace_uses

ACTIVATIONS = {"relu": {}, "silu": {}, "gelu": {"approximate": ("none", "tanh")}, "sigmoid": {}, "tanh": {}}


def _single_user(g, v):
    n = sum(1 for node in g.nodes for x in node.inputs if x is v)
    return n == 1 and v not in g.outputs and v not in g.state_updates.values()


def fold_conv_bn(g: Graph) -> Graph:
    """conv2d(x, W, b) -> batch_norm(stats) becomes conv2d(x, W', b') with
    W' = W * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps) (Ioffe & Szegedy 2015)."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op != "batch_norm":
            continue
        x, mean, var, gamma, beta = (n.inputs + [None] * 5)[:5]
        conv = by_out.get(x)
        if conv is None or conv.op != "conv2d" or not _single_user(g, x):
            continue
        w, b = conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else None
        stats = [mean, var, gamma, beta, w, b]
        if any(v is not None and v.kind != "const" for v in stats):
            continue
        s = 1.0 / np.sqrt(var.data.astype(np.float64) + n.attrs.get("eps", 1e-5))
        if gamma is not None:
            s = s * gamma.data
        wf = (w.data * s.reshape(-1, 1, 1, 1)).astype(w.data.dtype)
        bf = ((b.data if b is not None else 0.0) - mean.data) * s + (beta.data if beta is not None else 0.0)
        wv = Value(g.fresh("w_fold"), wf.dtype, wf.shape, "const", data=np.ascontiguousarray(wf))
        bv = Value(g.fresh("b_fold"), w.data.dtype, bf.shape, "const", data=bf.astype(w.data.dtype))
        g.constants[f"__{wv.name}"] = wv
        g.constants[f"__{bv.name}"] = bv
        conv.inputs = [conv.inputs[0], wv, bv]
        replace_uses(g, n.output, conv.output)
        drop.add(n)
    g.nodes = [n for n in g.nodes if n not in drop]
    return dce(g)


def fuse_bias_activation(g: Graph) -> Graph:
    """linear/conv2d followed by relu/silu/gelu/sigmoid/tanh (as the only user)
    becomes fused_linear / fused_conv2d with an `activation` attribute."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op not in ACTIVATIONS or not n.inputs:
            continue
        src = by_out.get(n.inputs[0])
        if src is None or src.op not in ("linear", "conv2d") or not _single_user(g, src.output):
            continue
        act = n.op if n.op != "gelu" else ("gelu_tanh" if n.attrs.get("approximate") == "tanh" else "gelu")
        src.op = "fused_" + src.op
        src.attrs = dict(src.attrs, activation=act)
        src.inputs = (src.inputs + [None, None, None])[:3]
        replace_uses(g, n.output, src.output)
        drop.add(n)
    g.nodes = [n for n in g.nodes if n not in drop]
    return g
