"""edgetorch.quant: quantization grids and observers (shared by the exporter and
training) and quantization-aware training.

    model = edgetorch.quant.prepare_qat(model, "int8-dynamic")
"""
from . import grids, observers

__all__ = ["convert_qat", "grids", "observers", "prepare_qat"]


def prepare_qat(model, config="int8-weight"):
    """Fake quantization (straight-through) in model's Linear/Conv2d/Embedding layers; see edgetorch.quant.qat."""
    from .qat import prepare_qat as _p          # lazy: the ops import grids from this package
    return _p(model, config)


def convert_qat(model):
    """Undo prepare_qat (plain layers, trained float weights)."""
    from .qat import convert_qat as _c
    return _c(model)
