"""Quantization of exported programs.

    qep = edgetorch.exporter.quantize(ep, "int8-weight")

Implemented preset:
  "int8-weight": linear (and fused linear) weights and embedding tables to
  int8, symmetric, one float32 scale per output row (axis 0):
  scale = max|w_row| / 127, wq = round(w / scale) (the per-channel scheme of
  TorchAO's int8 weight-only and ONNX Runtime's per-channel weights).
  Activations stay float. A tied embedding / LM head shares one int8 table.
Other presets of the quantization issue (int4 groups, dynamic and static
int8 activations, QAT) are refused with a clear error until they land.
`QuantConfig(skip=["lm_head*"])` keeps matching weights (by constant name,
i.e. state_dict name) in float.
"""
from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field

import numpy as np

from .errors import ExportError
from .graph import Value
from .passes.basic import dce

PRESETS = ("int8-weight",)
PLANNED = ("int4-weight", "int8-dynamic", "int8-dynamic-int4-weight", "int8-static", "float16-weight")


@dataclass
class QuantConfig:
    preset: str = "int8-weight"
    skip: list = field(default_factory=list)      # fnmatch patterns of weight names kept in float

    def keeps_float(self, name):
        return any(fnmatch.fnmatch(name, p) for p in self.skip)


def quantize_rows_int8(w):
    """(wq int8, scale float32) with w ~= wq * scale[:, None]; all-zero rows get scale 1."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    wq = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return wq, scale


def _copy(ep):
    """A copy of the program's graphs that shares (does not copy) constant arrays."""
    memo = {}
    for g in ep.graphs.values():
        for v in list(g.constants.values()) + list(g.state.values()):
            if v.data is not None:
                memo[id(v.data)] = v.data
    return copy.deepcopy(ep, memo)


def quantize(ep, config="int8-weight", calibration=None):
    """A new ExportedProgram with quantized weights; `ep` is left unchanged."""
    cfg = QuantConfig(config) if isinstance(config, str) else config
    if cfg.preset not in PRESETS:
        more = " (planned; not implemented yet)" if cfg.preset in PLANNED else ""
        raise ExportError(f"quantization preset {cfg.preset!r} is not available{more}; available: {list(PRESETS)}")
    out = _copy(ep)
    done = {}                                       # id(float weight) -> (int8 Value, scale Value)
    for g in out.graphs.values():
        names = {id(v): k for k, v in g.constants.items()}

        def q8(v):
            if id(v.data) not in done:
                name = names.get(id(v), v.name)
                wq, s = quantize_rows_int8(v.data)
                sv = Value(f"{v.name}.scale", np.dtype(np.float32), s.shape, "const", data=s)
                wv = Value(v.name, np.dtype(np.int8), wq.shape, "const", data=wq,
                           quant={"scheme": "per_channel_symmetric", "bits": 8, "axis": 0, "scale": sv})
                done[id(v.data)] = (wv, sv, name)
            wv, sv, name = done[id(v.data)]
            # new keys: the float weight stays listed while another op still reads it (dce drops it otherwise)
            g.constants[f"{name}#int8"] = wv
            g.constants[f"{name}#scale"] = sv
            return wv, sv

        for n in g.nodes:
            if n.op in ("linear", "fused_linear", "embedding"):
                wi = 1
                w = n.inputs[wi] if len(n.inputs) > wi else None
                if w is None or w.kind != "const" or w.data.ndim != 2 or w.data.dtype != np.float32 \
                        or cfg.keeps_float(names.get(id(w), w.name)):
                    continue
                wv, sv = q8(w)
                if n.op == "embedding":
                    n.op, n.inputs, n.attrs = "embedding_q8", [n.inputs[0], wv, sv], {}
                else:
                    b = n.inputs[2] if len(n.inputs) > 2 else None
                    n.attrs = {"activation": n.attrs.get("activation")}
                    n.op, n.inputs = "linear_q8", [n.inputs[0], wv, sv, b]
        dce(g)
    out.metadata = dict(out.metadata, quantization=cfg.preset)
    return out
