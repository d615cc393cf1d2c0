"""Fusion passes: fold eval-mode batch norm into the preceding conv, and merge
linear/conv + activation into the fused registry ops."""
from __future__ import annotations

import numpy as np

from ..graph import Graph, Value
from .basic import _same_shape, dce, replace_uses

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


def fuse_parallel_linears(g: Graph, max_parts=8) -> Graph:
    """Linears reading the same input with constant weights (q/k/v projections,
    SwiGLU's gate and up) become one linear over the concatenated weights and a
    slice per part: one larger matrix-vector product streams weights faster than
    several small ones, and the runtime makes fewer calls."""
    groups = {}
    for n in g.nodes:
        if n.op != "linear" or len(n.inputs) < 2:
            continue
        x, w = n.inputs[0], n.inputs[1]
        b = n.inputs[2] if len(n.inputs) > 2 else None
        if w.kind != "const" or (b is not None and b.kind != "const") or w.data.ndim != 2:
            continue
        groups.setdefault((id(x), np.dtype(w.dtype).str, b is None), []).append(n)
    new_nodes = {}
    drop = set()
    for key, nodes in groups.items():
        if len(nodes) < 2:
            continue
        nodes = nodes[:max_parts]
        x = nodes[0].inputs[0]
        ws = [n.inputs[1].data for n in nodes]
        if len({w.shape[1] for w in ws}) != 1:
            continue
        wcat = np.ascontiguousarray(np.concatenate(ws, axis=0))
        wv = Value(g.fresh("w_cat"), wcat.dtype, wcat.shape, "const", data=wcat)
        g.constants[f"__{wv.name}"] = wv
        ins = [x, wv]
        if not key[2]:
            bcat = np.concatenate([n.inputs[2].data for n in nodes])
            bv = Value(g.fresh("b_cat"), bcat.dtype, bcat.shape, "const", data=bcat)
            g.constants[f"__{bv.name}"] = bv
            ins.append(bv)
        out_shape = tuple(x.shape[:-1]) + (wcat.shape[0],)
        first = nodes[0]
        cat = g.add_node("linear", ins, {}, nodes[0].output.dtype, out_shape, source=first.source)
        g.nodes.pop()                       # placed below, where the first part was
        seq = [cat]
        start = 0
        for n in nodes:
            width = n.inputs[1].data.shape[0]
            sl = g.add_node("getitem", [cat.output], {"index": (Ellipsis, slice(start, start + width))},
                            n.output.dtype, n.output.shape, source=n.source)
            g.nodes.pop()
            seq.append(sl)
            replace_uses(g, n.output, sl.output)
            start += width
            drop.add(n)
        new_nodes[first] = seq
    out = []
    for n in g.nodes:
        if n in new_nodes:
            out.extend(new_nodes[n])
        if n not in drop:
            out.append(n)
    g.nodes = out
    return dce(g)


def fuse_swiglu(g: Graph) -> Graph:
    """mul(silu(a), b) (or mul(b, silu(a))) of one shape, the silu read only there, becomes
    swiglu(a, b): one pass and no temporary for the gated MLP of Llama-style models."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op != "mul" or len(n.inputs) != 2 or any(v is None for v in n.inputs):
            continue
        for i in (0, 1):
            src = by_out.get(n.inputs[i])
            other = n.inputs[1 - i]
            if src is None or src.op != "silu" or src in drop or not _single_user(g, src.output) \
                    or not _same_shape(src.output.shape, other.shape) \
                    or not _same_shape(n.output.shape, other.shape) or src.output.dtype != other.dtype:
                continue
            n.op, n.inputs, n.attrs = "swiglu", [src.inputs[0], other], {}
            drop.add(src)
            break
    g.nodes = [n for n in g.nodes if n not in drop]
    return g


def fuse_add_layer_norm(g: Graph) -> Graph:
    """layer_norm(add(a, b)) with a and b of one shape and dtype, the sum read only by the norm,
    becomes add_layer_norm(a, b, w, bias): a post-norm transformer's residual add and its norm in
    one pass over the rows (ONNX Runtime's SkipLayerNormalization)."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op != "layer_norm" or not n.inputs:
            continue
        src = by_out.get(n.inputs[0])
        if src is None or src.op != "add" or len(src.inputs) != 2 or any(v is None for v in src.inputs) \
                or not _single_user(g, src.output):
            continue
        a, b = src.inputs
        if a.dtype != b.dtype or not _same_shape(a.shape, b.shape) or not _same_shape(a.shape, src.output.shape):
            continue
        n.op = "add_layer_norm"
        n.inputs = [a, b] + (list(n.inputs[1:]) + [None, None])[:2]
        drop.add(src)
    g.nodes = [n for n in g.nodes if n not in drop]
    return g


def fold_cast_into_index_put(g: Graph) -> Graph:
    """index_put(base, to(v, dtype=base's dtype), ...) without accumulation, the cast read only
    there, becomes index_put(base, v, ...): the write casts as it stores (numpy's assignment rounds
    as astype does), so a float16 KV cache's two writes a layer lose their separate cast calls."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op != "index_put" or len(n.inputs) < 2 or n.attrs.get("accumulate") or n.inputs[1] is None:
            continue
        src = by_out.get(n.inputs[1])
        if src is None or src.op != "to" or not _single_user(g, src.output) \
                or np.dtype(src.attrs.get("dtype")) != np.dtype(n.inputs[0].dtype):
            continue
        n.inputs = [n.inputs[0], src.inputs[0]] + list(n.inputs[2:])
        drop.add(src)
    g.nodes = [n for n in g.nodes if n not in drop]
    return g


def _heads_slice(g, v, by_out):
    """For v = permute(reshape(x[..., lo:hi], (B, T, h, d)), (0, 2, 1, 3)), each step
    read only by the next: (x, lo, hi, h, d, the three nodes); else None."""
    per = by_out.get(v)
    if per is None or per.op != "permute" or tuple(per.attrs.get("dims", ())) != (0, 2, 1, 3) \
            or not _single_user(g, v):
        return None
    rs = by_out.get(per.inputs[0])
    if rs is None or rs.op != "reshape" or len(rs.output.shape) != 4 or not _single_user(g, rs.output):
        return None
    gi = by_out.get(rs.inputs[0])
    if gi is None or gi.op != "getitem" or len(gi.inputs) != 1 or not _single_user(g, gi.output):
        return None
    idx = tuple(gi.attrs.get("index", ()))
    x = gi.inputs[0]
    full = slice(None)
    # x[..., lo:hi] or x[:, :, lo:hi]
    if len(x.shape) != 3 or not idx or not isinstance(idx[-1], slice) \
            or not (idx[:-1] == (Ellipsis,) or (len(idx) == 3 and idx[:-1] == (full, full))):
        return None
    sl = idx[-1]
    h, d = rs.output.shape[2], rs.output.shape[3]
    if not all(isinstance(i, (int, np.integer)) for i in (sl.start, sl.stop, h, d, x.shape[2])) \
            or sl.step not in (None, 1) or not _same_shape(rs.output.shape[:2], x.shape[:2]) \
            or sl.stop - sl.start != h * d:
        return None
    return x, int(sl.start), int(sl.stop), int(h), int(d), (per, rs, gi)


def fuse_packed_attention(g: Graph) -> Graph:
    """scaled_dot_product_attention whose q, k and v are heads sliced out of one packed projection
    x (B, T, [q | k | v]) (as fuse_parallel_linears leaves a BERT layer's q/k/v linears) and whose
    output is permuted back and reshaped to (B, T, h d) becomes packed_attention(x, mask): the
    kernel reads the heads in place and writes the output in its final layout, so the three
    slices and four permutes (seven copies a layer) are gone."""
    by_out = {n.output: n for n in g.nodes}
    users = g.users()
    drop = set()
    for n in g.nodes:
        if n.op != "scaled_dot_product_attention" or len(n.inputs) < 3 or any(v is None for v in n.inputs[:3]):
            continue
        parts = [_heads_slice(g, v, by_out) for v in n.inputs[:3]]
        if any(p is None for p in parts) or len({id(p[0]) for p in parts}) != 1:
            continue
        (x, q0, q1, hq, d, _), (_, k0, k1, hk, dk, _), (_, v0, v1, hv, dv, _) = parts
        if (q0, q1, k0, k1, v0, v1) != (0, hq * d, hq * d, (hq + hk) * d, (hq + hk) * d, x.shape[2]) \
                or hk != hv or d != dk or d != dv or hq % hk or (hq != hk and not n.attrs.get("enable_gqa")):
            continue
        us = users.get(n.output, [])
        per = us[0] if len(us) == 1 and n.output not in g.outputs else None
        if per is None or per.op != "permute" or tuple(per.attrs.get("dims", ())) != (0, 2, 1, 3):
            continue
        ru = users.get(per.output, [])
        rs = ru[0] if len(ru) == 1 and per.output not in g.outputs else None
        if rs is None or rs.op != "reshape" or len(rs.output.shape) != 3 \
                or not _same_shape(rs.output.shape, tuple(x.shape[:2]) + (hq * d,)):
            continue
        mask = n.inputs[3] if len(n.inputs) > 3 else None
        rs.op, rs.inputs = "packed_attention", [x, mask]
        rs.attrs = {"heads": hq, "kv_heads": hk, "is_causal": bool(n.attrs.get("is_causal", False)),
                    "scale": n.attrs.get("scale")}
        drop.update([n, per])
        for p in parts:
            drop.update(p[5])
    g.nodes = [n for n in g.nodes if n not in drop]
    return dce(g)


def fuse_add_relu(g: Graph) -> Graph:
    """relu(add(a, b)) with a and b of one shape and dtype, the sum read only by the ReLU, becomes
    add_relu(a, b): a residual block's sum and activation in one pass (int8-static quantizes it as
    its add + ReLU)."""
    by_out = {n.output: n for n in g.nodes}
    drop = set()
    for n in g.nodes:
        if n.op != "relu" or len(n.inputs) != 1:
            continue
        src = by_out.get(n.inputs[0])
        if src is None or src.op != "add" or len(src.inputs) != 2 or any(v is None for v in src.inputs) \
                or not _single_user(g, src.output) or src in drop:
            continue
        a, b = src.inputs
        if a.dtype != b.dtype or not _same_shape(a.shape, b.shape) or not _same_shape(a.shape, src.output.shape):
            continue
        n.op, n.inputs, n.attrs = "add_relu", [a, b], {}
        drop.add(src)
    g.nodes = [n for n in g.nodes if n not in drop]
    return g
