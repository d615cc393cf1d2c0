"""edgetorch dtypes: thin named wrappers over numpy dtypes (torch spelling).

bfloat16 comes from ml_dtypes, which registers it as a numpy dtype.
"""
import numpy as np
import ml_dtypes

from ._errors import DTypeError


class dtype:
    """A tensor element type, e.g. ``edgetorch.float32``."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name, np_dtype):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = name in ("float16", "bfloat16", "float32", "float64")
        self.itemsize = self.np.itemsize

    def __repr__(self):
        return f"edgetorch.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
float16 = dtype("float16", np.float16)
bfloat16 = dtype("bfloat16", ml_dtypes.bfloat16)
int8 = dtype("int8", np.int8)
uint8 = dtype("uint8", np.uint8)
int16 = dtype("int16", np.int16)
int32 = dtype("int32", np.int32)
int64 = dtype("int64", np.int64)
bool_ = dtype("bool", np.bool_)

ALL = (float32, float64, float16, bfloat16, int8, uint8, int16, int32, int64, bool_)
_FROM_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update(float=float32, double=float64, half=float16, long=int64, int=int32)

# Aliases with torch's spelling.
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001


def _by_name(name):
    return _BY_NAME[name]


def from_numpy_dtype(npd):
    """The edgetorch dtype of a numpy dtype; DTypeError for unsupported ones."""
    d = _FROM_NP.get(np.dtype(npd))
    if d is None:
        raise DTypeError(f"numpy dtype {np.dtype(npd)} has no edgetorch equivalent; "
                         f"supported: {', '.join(x.name for x in ALL)}")
    return d


def to_numpy_dtype(d):
    """Accept an edgetorch dtype, a numpy dtype/type or a name; return np.dtype."""
    if isinstance(d, dtype):
        return d.np
    if isinstance(d, str):
        if d not in _BY_NAME:
            raise DTypeError(f"unknown dtype name {d!r}")
        return _BY_NAME[d].np
    return from_numpy_dtype(d).np


def get(d):
    """Normalise any dtype spelling to an edgetorch dtype."""
    return from_numpy_dtype(to_numpy_dtype(d))
