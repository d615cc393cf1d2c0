"""Kernels of the runtime, one per op the exporter emits (see registry.py)."""
from . import conv, elementwise, index, linalg, nn, quant, quant4, reduce, shape  # noqa: F401
from .registry import KERNELS, PREPARE, kernel, preparer

__all__ = ["KERNELS", "PREPARE", "kernel", "preparer"]
