"""Calibration for int8-static: run the float program over example inputs and
observe the range of every float activation (inputs included).

A batch is a tuple of the method's inputs (or one array for a one-input
method); a batch with exactly one item more — the (x, y) batches of a
DataLoader over a labelled dataset — has its last item (the target) ignored.
"""
from __future__ import annotations

import numpy as np

from edgetorch._tensor import Tensor
from edgetorch.quant.observers import make_observer

from .errors import ExportError


def _args(batch):
    if isinstance(batch, dict):
        raise ExportError("calibration batches must be argument tuples (or single arrays), not dicts")
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    return (batch,)


def calibrate(ep, data, cfg, method=None, progress=False):
    """{method: {value name: observer}} over the float activations of one method."""
    from .compare import _trace
    method = method or ("forward" if "forward" in ep.graphs else next(iter(ep.graphs)))
    g = ep.graphs[method]
    kw = {"percentile": cfg.percentile} if cfg.observer == "percentile" else {}
    obs = {}
    it = data
    if progress:
        from tqdm import tqdm
        it = tqdm(data, desc="calibrating", unit="batch")
    n = 0
    for batch in it:
        args = _args(batch)
        if len(args) > len(g.inputs) and len(args) == len(g.inputs) + 1:
            args = args[:len(g.inputs)]           # an (inputs..., target) batch from a DataLoader
        if len(args) != len(g.inputs):
            raise ExportError(f"calibration batch has {len(args)} arguments; method {method!r} takes "
                              f"{len(g.inputs)} ({', '.join(v.name for v in g.inputs)}), or one more "
                              "(a target, ignored)")
        arrays = [a._data if isinstance(a, Tensor) else np.asarray(a) for a in args]
        values, _ = _trace(ep, method, arrays)
        seen = [(v.name, a) for v, a in zip(g.inputs, arrays)] + [(k, a) for k, (_, _, a) in values.items()]
        for name, a in seen:
            if np.asarray(a).dtype.kind != "f":
                continue
            if name not in obs:
                obs[name] = make_observer(cfg.observer, **kw)
            obs[name].update(a)
        n += 1
    if n == 0:
        raise ExportError("calibration data is empty")
    return {method: obs}
