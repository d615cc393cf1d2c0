"""edgetorch.quant: quantization grids (shared by the exporter and QAT) and
quantization-aware training."""
from . import grids

__all__ = ["grids"]
