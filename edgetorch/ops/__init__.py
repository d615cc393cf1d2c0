"""The op registry and its families (see registry.py)."""
from . import registry
from .registry import REGISTRY, OpDef, Sample, TensorMeta, op


def _load_all():
    from . import conv, creation, elementwise, fused, index, linalg, nn, quant, reduce, shape  # noqa: F401


_load_all()

__all__ = ["REGISTRY", "OpDef", "Sample", "TensorMeta", "op", "registry"]
