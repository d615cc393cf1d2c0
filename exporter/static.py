"""int8-static rewrite of one graph: conv, linear, add (+relu), max pool and
reshapes run on int8 activations; quantize/dequantize nodes at each boundary.

Walks the nodes in order keeping, per float value, its int8 twin (value,
scale, zero point).  A supported node whose inputs can be quantized becomes
its _qs8 form reading twins (a quantize node is made the first time a float
value is needed in int8); every other node reads float values, and a value
that now only exists in int8 gets one dequantize node at its first float use.
"""
from __future__ import annotations

import numpy as np

from .graph import Node, Value
from .passes.basic import _same_shape

_PASS = ("max_pool2d", "reshape", "permute")         # int8 in, int8 out, same grid


def quantize_static(g, cfg, obs, W, names, log):
    qp = {}

    def qparams(v):
        if v.name not in qp:
            o = obs.get(v.name)
            qp[v.name] = None if o is None else o.qparams()
        return qp[v.name]

    users = g.users()
    twin = {}          # float Value -> (int8 Value, scale, zp)
    gone = set()       # float Values no longer produced in float
    deq = {}
    new = []

    def node(op, inputs, attrs, dtype, shape, src, hint, name=None):
        out = Value(name or g.fresh(hint), np.dtype(dtype), tuple(shape))
        n = Node(op, list(inputs), dict(attrs), out, src)
        out.producer = n
        new.append(n)
        return out

    def as_int8(v, src):
        if v not in twin:
            s, z = qparams(v)
            twin[v] = (node("quantize_per_tensor", [v], {"scale": s, "zero_point": z}, np.int8, v.shape, src, "q"),
                       s, z)
        return twin[v]

    def as_float(v, src):
        if v is None or v not in gone:
            return v
        if v not in deq:
            q, s, z = twin[v]
            deq[v] = node("dequantize_per_tensor", [q], {"scale": s, "zero_point": z}, np.float32, v.shape, src, "dq")
        return deq[v]

    def floatable(v):
        return v is not None and v.kind in ("act", "input") and np.dtype(v.dtype) == np.float32 and \
            (v in twin or qparams(v) is not None)

    def only_user_relu(n):
        us = users.get(n.output, [])
        if len(us) == 1 and us[0].op == "relu" and n.output not in g.outputs:
            return us[0]
        return None

    fused_relu = set()
    for n in g.nodes:
        if n in fused_relu:                      # relu folded into the add before it
            continue
        op, src = n.op, n.source
        w = n.inputs[1] if len(n.inputs) > 1 else None
        wname = names.get(id(w), getattr(w, "name", "")) if w is not None else ""
        if op in ("conv2d", "fused_conv2d", "linear", "fused_linear") and w is not None and w.kind == "const" \
                and w.data.dtype == np.float32 and floatable(n.inputs[0]) \
                and n.attrs.get("activation") in (None, "relu") and qparams(n.output) is not None \
                and cfg.scheme_for(wname, op) == "int8-static":
            xq, s_in, z_in = as_int8(n.inputs[0], src)
            wv, sv = W.int8(g, w, wname)
            s_out, z_out = qparams(n.output)
            b = n.inputs[2] if len(n.inputs) > 2 else None
            q = dict(in_scale=s_in, in_zp=z_in, out_scale=s_out, out_zp=z_out, activation=n.attrs.get("activation"))
            conv = {k: n.attrs[k] for k in ("stride", "padding", "dilation", "groups") if k in n.attrs}
            qop = "conv2d_qs8" if "conv" in op else "linear_qs8"
            # the int8 value keeps the float value's name: compare() matches layers by it
            out = node(qop, [xq, wv, sv, as_float(b, src)], dict(conv, **q), np.int8, n.output.shape, src, "qs8_",
                       n.output.name)
            twin[n.output] = (out, s_out, z_out)
            gone.add(n.output)
            continue
        if op in ("add", "add_relu") and len(n.inputs) == 2 and all(floatable(v) for v in n.inputs) \
                and _same_shape(n.inputs[0].shape, n.inputs[1].shape) and _same_shape(n.inputs[0].shape, n.output.shape):
            # add_relu (the export's fusion of add -> relu) is the add with its ReLU already found
            relu = n if op == "add_relu" else only_user_relu(n)
            final = relu.output if relu is not None else n.output
            if qparams(final) is not None:
                (a, sa, za), (bq, sb, zb) = as_int8(n.inputs[0], src), as_int8(n.inputs[1], src)
                s_out, z_out = qparams(final)
                out = node("add_qs8", [a, bq], dict(a_scale=sa, a_zp=za, b_scale=sb, b_zp=zb, out_scale=s_out,
                                                    out_zp=z_out, activation="relu" if relu is not None else None),
                           np.int8, n.output.shape, src, "qs8_", final.name)
                twin[final] = (out, s_out, z_out)
                gone.add(final)
                if relu is not None and relu is not n:
                    fused_relu.add(relu)
                continue
        if op in _PASS and n.inputs and n.inputs[0] in gone:
            q, s, z = twin[n.inputs[0]]
            out = node(op, [q] + [as_float(v, src) for v in n.inputs[1:]], n.attrs, np.int8, n.output.shape, src,
                       "q_")
            twin[n.output] = (out, s, z)
            gone.add(n.output)
            continue
        n.inputs = [as_float(v, src) for v in n.inputs]
        new.append(n)
    g.outputs = [as_float(v, (None, None)) for v in g.outputs]
    g.state_updates = {k: as_float(v, (None, None)) for k, v in g.state_updates.items()}
    g.nodes = new
    n_q = sum(1 for n in new if n.op.endswith("_qs8"))
    if n_q == 0:
        log.append("int8-static: no layer could be quantized (no calibrated conv/linear/add)")
