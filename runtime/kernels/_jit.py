"""The runtime's kernels take `twins` from edgetorch._native (shared with the frontend's
Numba paths)."""
from edgetorch._native.jit import twins

__all__ = ["twins"]
