"""et.save / et.load: state dicts in the safetensors format (never pickle).

Files written by PyTorch or Hugging Face (float32, float16, bfloat16, ints)
load directly; bfloat16 arrives as an ml_dtypes.bfloat16 tensor.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ._errors import EdgeTorchError
from ._tensor import Tensor


def _flatten(obj):
    if isinstance(obj, Tensor):
        return obj._data
    if isinstance(obj, np.ndarray):
        return obj
    raise EdgeTorchError(f"et.save stores dicts of tensors (a state_dict); got a value of type "
                         f"{type(obj).__name__}")


def save(obj, path, metadata=None):
    """Write a dict of name -> Tensor (e.g. model.state_dict()) to a .safetensors file."""
    from safetensors.numpy import save_file
    if not isinstance(obj, dict):
        raise EdgeTorchError(f"et.save expects a dict of tensors (a state_dict), got {type(obj).__name__}; "
                             "edgetorch never pickles")
    # not np.ascontiguousarray: it turns 0-d arrays (num_batches_tracked) into shape (1,)
    arrays = {str(k): np.array(_flatten(v), order="C", copy=None) for k, v in obj.items()}
    meta = {"format": "edgetorch"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    save_file(arrays, os.fspath(path), metadata=meta)


def load(path, map_location=None):
    """Read a .safetensors file into an ordered dict of name -> Tensor."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    p = os.fspath(path)
    if not os.path.exists(p):
        raise EdgeTorchError(f"et.load: no such file {p!r}")
    try:
        arrays = load_file(p)
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise EdgeTorchError(f"et.load: {p!r} is not a valid safetensors file ({e})") from None
    return {k: Tensor._wrap(v) for k, v in arrays.items()}
