"""Kernels of the runtime, one per op the exporter emits (see registry.py)."""
from . import attention, conv, elementwise, index, linalg, nn, quant, quant4, reduce, shape  # noqa: F401
from .registry import KERNELS, PREPARE, PREPARE_GROUP, group_preparer, kernel, preparer

__all__ = ["KERNELS", "PREPARE", "PREPARE_GROUP", "group_preparer", "kernel", "preparer"]
