"""Quantization of exported programs.

    qep = edgetorch.exporter.quantize(ep, "int8-weight")
    qep = quantize(ep, QuantConfig("int8-static", observer="mse"), calibration=[(x,) for x in batches])
    qep = quantize(ep, QuantConfig("int4-weight", group_size=64, overrides={"lm_head*": "int8-weight"}))

Presets (grids in edgetorch/quant/grids.py, ops in edgetorch/ops/quant.py):
  int8-weight        linear, embedding and conv weights int8 per output channel, symmetric;
                     float activations (TorchAO int8 weight-only)
  int4-weight        linear and embedding weights int4 per group along the input dim
                     (group 32/64/128/256, symmetric or not), packed two per byte,
                     float16 scales; convs fall back to int8-weight.  Activations stay
                     float between ops; inside the matmul they go to int8 per block of
                     32 (llama.cpp's Q8_0, as its Q4_0 does): QuantConfig(act_block=0)
                     keeps them float there (slower: docs/quantization.md)
  int8-dynamic       int8-weight, and activations of linears quantized per row at run
                     time, int32 accumulation (ORT quantize_dynamic, TorchAO int8 dynamic)
  int8-dynamic-int4-weight (8da4w)  int4 group weights with per-row int8 activations
  int8-static        int8 weights per channel and int8 activations per tensor from
                     calibration (observers in edgetorch/quant/observers.py): conv,
                     linear, add (+ relu), max pool and reshapes stay int8 between ops;
                     a quantize / dequantize node sits at each float boundary
  float16-weight     weights stored float16, widened to float32 by a `to` node at run time

QuantConfig(overrides={pattern: preset or None}) chooses per layer: patterns
(fnmatch) match a weight's state_dict name, its module name (the name less
".weight") or the op type ("linear", "conv2d", "embedding"); None keeps the
layer in float.  `skip=[...]` is shorthand for overrides to None.
"""
from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field

import numpy as np

from edgetorch.quant import grids as Q
from edgetorch.quant.grids import quantize_rows_int8  # noqa: F401  (public here since the first preset)
from edgetorch.quant.observers import OBSERVERS

from .errors import ExportError
from .graph import Node, Value
from .passes.basic import dce

PRESETS = ("int8-weight", "int4-weight", "int8-dynamic", "int8-dynamic-int4-weight", "int8-static",
           "float16-weight")
ALIASES = {"8da4w": "int8-dynamic-int4-weight"}
_INT4 = ("int4-weight", "int8-dynamic-int4-weight")
_LINEAR = ("linear", "fused_linear")
_CONV = ("conv2d", "fused_conv2d")


@dataclass
class QuantConfig:
    preset: str = "int8-weight"
    group_size: int = 32                            # int4 schemes
    symmetric: bool = True                          # int4 schemes: False = affine with zero points
    overrides: dict = field(default_factory=dict)   # pattern -> preset name, or None for float
    skip: list = field(default_factory=list)        # patterns kept in float
    observer: str = "minmax"                        # int8-static: minmax | moving_average | percentile | mse
    percentile: float = 99.99
    embeddings: bool = True                         # quantize embedding tables too
    act_block: int = Q.ACT_BLOCK                    # int4-weight: x to int8 per block of 32 in the matmul
                                                    # (llama.cpp's Q8_0); 0 keeps x float there

    def __post_init__(self):
        self.preset = ALIASES.get(self.preset, self.preset)
        for p in [self.preset] + [v for v in self.overrides.values() if v is not None]:
            p = ALIASES.get(p, p)
            if p not in PRESETS:
                raise ExportError(f"unknown quantization preset {p!r}; presets: {list(PRESETS)}")
        if self.group_size not in Q.INT4_GROUPS:
            raise ExportError(f"int4 group size {self.group_size} not supported; choose one of {Q.INT4_GROUPS}")
        if self.act_block not in (0, Q.ACT_BLOCK):
            raise ExportError(f"act_block {self.act_block!r}: 0 (float activations) or {Q.ACT_BLOCK}")
        if self.observer not in OBSERVERS:
            raise ExportError(f"unknown observer {self.observer!r}; observers: {list(OBSERVERS)}")

    def scheme_for(self, weight_name, op):
        """The preset for one layer (None = float), overrides first, in insertion order."""
        module = weight_name[:-len(".weight")] if weight_name.endswith(".weight") else weight_name
        kind = op.replace("fused_", "")
        keys = (weight_name, module, kind)
        if any(fnmatch.fnmatch(k, p) for p in self.skip for k in keys):
            return None
        for pat, preset in self.overrides.items():
            if any(fnmatch.fnmatch(k, pat) for k in keys):
                return ALIASES.get(preset, preset)
        return self.preset


    def layer_scheme(self, weight_name, op, weight_shape):
        """The preset a layer gets after the fallbacks: embeddings off -> float; int4 where the
        groups do not fit (and for convs) -> the int8 scheme of the same activation kind.
        Returns (preset or None, note or None).  Shared by quantize() and prepare_qat()."""
        kind = op.replace("fused_", "")
        scheme = self.scheme_for(weight_name, op)
        if kind == "embedding" and not self.embeddings:
            return None, None
        if scheme in _INT4 and (kind == "conv2d" or len(weight_shape) != 2 or weight_shape[1] % self.group_size):
            fallback = "int8-dynamic" if scheme == "int8-dynamic-int4-weight" else "int8-weight"
            return fallback, (f"{weight_name}: {kind} {tuple(weight_shape)} cannot take int4 groups of "
                              f"{self.group_size}; int8 instead")
        return scheme, None


def _copy(ep):
    """A copy of the program's graphs that shares (does not copy) constant arrays."""
    memo = {}
    for g in ep.graphs.values():
        for v in list(g.constants.values()) + list(g.state.values()):
            if v.data is not None:
                memo[id(v.data)] = v.data
    return copy.deepcopy(ep, memo)


def _const(name, a, quant=None):
    return Value(name, a.dtype, a.shape, "const", data=np.ascontiguousarray(a), quant=quant)


class _Weights:
    """Quantized copies of float weights, made once per (array, scheme) and shared by every
    method and node reading them (a tied embedding / LM head is stored once)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.done = {}

    def int8(self, g, v, name):
        key = (id(v.data), "int8")
        if key not in self.done:
            wq, s = Q.quantize_rows_int8(v.data.reshape(v.data.shape[0], -1))
            sv = _const(f"{name}#scale", s)
            wv = _const(f"{name}#int8", wq.reshape(v.data.shape),
                        {"scheme": "per_channel_symmetric", "bits": 8, "axis": 0, "scale": sv})
            self.done[key] = (wv, sv)
        return self._add(g, self.done[key])

    def int4(self, g, v, name):
        cfg = self.cfg
        key = (id(v.data), "int4", cfg.group_size, cfg.symmetric)
        if key not in self.done:
            wp, s, z = Q.quantize_groups_int4(v.data, cfg.group_size, cfg.symmetric)
            sv = _const(f"{name}#scale", s)
            zv = None if z is None else _const(f"{name}#zero", z)
            q = {"scheme": "per_group_symmetric" if z is None else "per_group_affine", "bits": 4, "axis": 1,
                 "group_size": cfg.group_size, "scale": sv, "scale_dtype": "float16"}
            if zv is not None:
                q["zero_point"] = zv
            self.done[key] = (_const(f"{name}#int4", wp, q), sv, zv)
        return self._add(g, self.done[key])

    def f16(self, g, v, name):
        key = (id(v.data), "f16")
        if key not in self.done:
            self.done[key] = (_const(f"{name}#f16", v.data.astype(np.float16)),)
        return self._add(g, self.done[key])

    @staticmethod
    def _add(g, vals):
        for x in vals:
            if x is not None:
                g.constants[x.name] = x
        return vals


def _weight_through(g, n, op, inputs, attrs, hint):
    """A node making n's float32 weight from stored constants (a cast, a dequantize); n reads it."""
    w = n.inputs[1]
    made = Node(op, inputs, attrs, Value(g.fresh(hint), np.dtype(np.float32), w.shape), n.source)
    made.output.producer = made
    n.inputs = [n.inputs[0], made.output] + n.inputs[2:]
    return made


def _weight_only(g, cfg, W, names, log):
    """Rewrite linears, embeddings and convs of one graph for the weight-only and dynamic presets."""
    new = []
    for n in g.nodes:
        kind = n.op
        w = n.inputs[1] if len(n.inputs) > 1 else None
        if kind not in _LINEAR + _CONV + ("embedding",) or w is None or w.kind != "const" \
                or w.data.dtype != np.float32:
            new.append(n)
            continue
        name = names.get(id(w), w.name)
        scheme, note = cfg.layer_scheme(name, kind, w.data.shape)
        if note:
            log.append(note)
        if scheme is None or scheme == "int8-static":
            new.append(n)
            continue
        if scheme == "float16-weight":
            wv, = W.f16(g, w, name)
            new += [_weight_through(g, n, "to", [wv], {"dtype": "float32"}, "w32_"), n]
            continue
        dynamic = scheme in ("int8-dynamic", "int8-dynamic-int4-weight")
        act = n.attrs.get("activation")
        if kind in _CONV:                                   # int8 weights read through a dequantize node
            new += [_weight_through(g, n, "dequantize_per_channel", list(W.int8(g, w, name)), {}, "w_dq"), n]
        elif scheme in _INT4:
            wv, sv, zv = W.int4(g, w, name)
            if kind == "embedding":
                n.op, n.inputs, n.attrs = "embedding_q4", [n.inputs[0], wv, sv, zv], {"group_size": cfg.group_size}
            else:
                b = n.inputs[2] if len(n.inputs) > 2 else None
                n.op, n.inputs = "linear_q4", [n.inputs[0], wv, sv, zv, b]
                n.attrs = {"group_size": cfg.group_size, "activation": act, "dynamic": dynamic}
                if not dynamic and cfg.act_block:
                    n.attrs["act_block"] = cfg.act_block
            new.append(n)
        else:
            wv, sv = W.int8(g, w, name)
            if kind == "embedding":
                n.op, n.inputs, n.attrs = "embedding_q8", [n.inputs[0], wv, sv], {}
            else:
                b = n.inputs[2] if len(n.inputs) > 2 else None
                n.op, n.inputs, n.attrs = "linear_q8", [n.inputs[0], wv, sv, b], {"activation": act,
                                                                                 "dynamic": dynamic}
            new.append(n)
    g.nodes = new


def quantize(ep, config="int8-weight", calibration=None, progress=False):
    """A new ExportedProgram with quantized weights (and activations for the dynamic and
    static presets); `ep` is left unchanged.  `calibration`: an iterable of argument tuples
    for the method being quantized, needed by int8-static."""
    cfg = QuantConfig(config) if isinstance(config, str) else config
    if not isinstance(cfg, QuantConfig):
        raise ExportError(f"config must be a preset name or a QuantConfig, got {type(config).__name__}")
    static = cfg.preset == "int8-static" or "int8-static" in cfg.overrides.values()
    stats = None
    if static:
        if calibration is None:
            raise ExportError("int8-static needs calibration data: quantize(ep, 'int8-static', "
                              "calibration=[(x,), ...]) with example inputs of the exported method")
        from .calibrate import calibrate
        stats = calibrate(ep, calibration, cfg, progress=progress)
    out = _copy(ep)
    W = _Weights(cfg)
    log = []
    for mname, g in out.graphs.items():
        names = {id(v): k for k, v in g.constants.items()}
        if static and mname in stats:
            from .static import quantize_static
            quantize_static(g, cfg, stats[mname], W, names, log)
        _weight_only(g, cfg, W, names, log)
        dce(g)
    meta = dict(out.metadata, quantization=cfg.preset)
    if cfg.preset in _INT4:
        meta["quantization"] += f"-g{cfg.group_size}" + ("" if cfg.symmetric else "-asym")
    if log:
        meta["quantization_notes"] = "; ".join(log)
    out.metadata = meta
    return out
