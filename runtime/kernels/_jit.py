"""The runtime's kernels take `twins` and `chunked` from edgetorch._native (shared with the frontend's
Numba paths)."""
from edgetorch._native.jit import chunked, twins

__all__ = ["chunked", "twins"]
