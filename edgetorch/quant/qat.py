"""Quantization-aware training: fake quantization with a straight-through estimator.

    model = edgetorch.quant.prepare_qat(model, "int8-dynamic")   # or a QuantConfig
    ... fine-tune as usual ...
    ep = edgetorch.export(model, (x,))          # capture sees the float weights
    qep = edgetorch.exporter.quantize(ep, "int8-dynamic")

Linear, Conv2d and Embedding layers get the weight grid the exporter will use
(same QuantConfig rules: overrides, skips, int4 fallbacks), computed by the
same functions (edgetorch.quant.grids), so the integers written at export are
the ones training saw.  Dynamic presets also fake-quantize each linear's input
per row.  The gradient passes straight through the rounding:
y = w + (fq(w) - w).detach()  (Bengio et al. 2013, "straight-through").

Limits: int8-static trains with its weight grid only (activation ranges come
from calibration at export); a conv followed by batch norm is re-gridded
after the exporter folds the norm into it (train with the norm folded, or
accept that grid change).  convert_qat(model) restores the plain layers.
"""
from __future__ import annotations

import numpy as np

from .._tensor import Tensor
from ..autograd.function import is_tracing
from ..nn import layers as L
from . import grids as Q

_BASES = {}


def _fq_weight(w, scheme, group_size, symmetric):
    a = w.numpy()
    if scheme in ("int4-weight", "int8-dynamic-int4-weight"):
        return Q.fake_quant_int4(a, group_size, symmetric).astype(a.dtype)
    if scheme == "float16-weight":
        return a.astype(np.float16).astype(a.dtype)
    return Q.fake_quant_rows_int8(a.reshape(a.shape[0], -1)).reshape(a.shape).astype(a.dtype)


def _ste(x, value):
    """A tensor whose value is `value` and whose gradient flows to x unchanged."""
    return x + (Tensor(value) - x).detach()


class _QAT:
    _qat_scheme = None
    _qat_cfg = None

    def _qat_weight(self):
        cfg = self._qat_cfg
        return _ste(self.weight, _fq_weight(self.weight.detach(), self._qat_scheme, cfg.group_size, cfg.symmetric))

    def extra_repr(self):
        return super().extra_repr() + f", qat={self._qat_scheme}"

    def _qat_input(self, x):
        if self._qat_scheme in ("int8-dynamic", "int8-dynamic-int4-weight"):
            a = x.detach().numpy()
            return _ste(x, Q.fake_quant_rows_dynamic(a).astype(a.dtype))
        if self._qat_scheme == "int4-weight" and self._qat_cfg.act_block:
            a = x.detach().numpy()          # the int8 blocks int4-weight's matmul puts x on
            return _ste(x, Q.fake_quant_blocks_int8(a, self._qat_cfg.act_block).astype(a.dtype))
        return x


class Linear(_QAT, L.Linear):
    def forward(self, x):
        if is_tracing():
            return super().forward(x)
        from ..nn import functional as F
        return F.linear(self._qat_input(x), self._qat_weight(), self.bias)


class Conv2d(_QAT, L.Conv2d):
    def forward(self, x):
        if is_tracing():
            return super().forward(x)
        from ..nn import functional as F
        return F.conv2d(x, self._qat_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class Embedding(_QAT, L.Embedding):
    def forward(self, ids):
        if is_tracing():
            return super().forward(ids)
        from ..nn import functional as F
        return F.embedding(ids, self._qat_weight(), self.padding_idx)


_SWAP = {L.Linear: Linear, L.Conv2d: Conv2d, L.Embedding: Embedding}
_KIND = {L.Linear: "linear", L.Conv2d: "conv2d", L.Embedding: "embedding"}


def prepare_qat(model, config="int8-weight"):
    """Put fake quantization into `model`'s Linear / Conv2d / Embedding layers, in place
    (parameter names and the state_dict are unchanged); returns the model."""
    from edgetorch.exporter.quantize import QuantConfig
    cfg = QuantConfig(config) if isinstance(config, str) else config
    for name, m in model.named_modules():
        base = type(m)
        if base not in _SWAP:
            continue
        scheme, _ = cfg.layer_scheme(f"{name}.weight" if name else "weight", _KIND[base], tuple(m.weight.shape))
        if scheme is None:
            continue
        m.__class__ = _SWAP[base]
        m._qat_scheme, m._qat_cfg = scheme, cfg
    return model


def convert_qat(model):
    """Undo prepare_qat: plain layers again, with the trained float weights."""
    for _, m in model.named_modules():
        for base, qat in _SWAP.items():
            if type(m) is qat:
                m.__class__ = base
                del m._qat_scheme, m._qat_cfg
    return model
