"""Running a registry op on Tensors: the forward, the graph node, the hooks.

`apply` is the single path every op takes.  It unwraps arrays, runs the
numpy forward, wraps the result and, when an input requires grad, records a
`Node` holding what the op's backward may read.  Capture for export hooks in
here once (`capture_hooks`), not per op.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .._errors import AutogradError, EdgeTorchError, ShapeError
from ..ops import registry
from . import grad_mode

# Called as hook(opdef, inputs, attrs, output) for every op while non-empty;
# the exporter's tracer installs itself here.
capture_hooks: list = []


def is_tracing():
    """True while the exporter captures a model (et.is_tracing())."""
    return bool(capture_hooks)


def data_guard(t, what):
    """Called before Python reads a tensor's values; capture refuses traced ones."""
    for h in capture_hooks:
        g = getattr(h, "guard", None)
        if g is not None:
            g(t, what)

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Library code that a "user's line" never points into: the frontend's
# machinery (not edgetorch/models, whose forwards are model code) and the
# exporter, which adds itself here.
SKIP_DIRS = [_PKG_DIR + os.sep]
KEEP_DIRS = [os.path.join(_PKG_DIR, "models") + os.sep]


def user_frame():
    """(file, line) of the innermost stack frame in user (or reference model) code."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not any(fn.startswith(d) for d in SKIP_DIRS) or any(fn.startswith(d) for d in KEEP_DIRS):
            return fn, f.f_lineno
        f = f.f_back
    return None, None


class Version:
    """A tensor's in-place modification counter, shared with saved copies."""
    __slots__ = ("v",)

    def __init__(self):
        self.v = 0


class Node:
    """One recorded op application: what backward needs and where grads go.

    `next` holds one edge per input: the producing Node, the leaf Tensor that
    accumulates the grad, or None when that input needs no grad.  Edges are
    taken when the op runs, so later in-place ops on an input do not reroute
    earlier consumers.  The output is kept as an array plus its version box
    (never as a Tensor) so no reference cycle keeps activations alive.
    """
    __slots__ = ("op", "attrs", "_inputs", "_in_versions", "_out", "_out_version",
                 "_out_ver_seen", "next", "out_shape", "out_dtype", "retain", "released", "__weakref__")

    def __init__(self, opdef, inputs, attrs, out):
        self.op = opdef
        self.attrs = attrs
        self._inputs = inputs
        self._in_versions = tuple(t._version.v if t is not None else 0 for t in inputs)
        self._out = out._data
        self._out_version = out._version
        self._out_ver_seen = out._version.v
        nxt = []
        for t in inputs:
            if t is None or not t.requires_grad:
                nxt.append(None)
            elif t.grad_fn is not None:
                nxt.append(t.grad_fn)
            else:
                nxt.append(t)
        self.next = tuple(nxt)
        self.out_shape = out._data.shape
        self.out_dtype = out._data.dtype
        self.retain = None
        self.released = False

    def name(self):
        return self.op.name.title().replace("_", "") + "Backward"

    def __repr__(self):
        return f"<{self.name()}>"

    # -- what backward functions read --------------------------------------
    def _check_alive(self):
        if self.released:
            raise AutogradError(
                f"{self.name()}: trying to backward through the graph a second time "
                "(or to read saved tensors after they were freed). Pass "
                "retain_graph=True to the first backward() if you need to do this.")

    @property
    def inputs(self):
        self._check_alive()
        for i, t in enumerate(self._inputs):
            if t is not None and t._version.v != self._in_versions[i]:
                raise AutogradError(
                    f"{self.name()}: input {i} ({self.op.inputs[min(i, len(self.op.inputs) - 1)]}) "
                    f"of shape {tuple(t.shape)} needed for gradient computation was modified "
                    f"by an in-place operation (version {self._in_versions[i]} -> "
                    f"{t._version.v}). Use an out-of-place op (x = x + y, not x += y) "
                    "or clone() the tensor before modifying it.")
        return self._inputs

    @property
    def output(self):
        self._check_alive()
        if self._out_version.v != self._out_ver_seen:
            raise AutogradError(
                f"{self.name()}: its output, needed for gradient computation, was "
                "modified by an in-place operation. clone() it before modifying it.")
        from .._tensor import Tensor
        return Tensor._wrap(self._out, grad_fn=self, version=self._out_version)

    @property
    def needs_input_grad(self):
        return tuple(e is not None for e in self.next)

    def release(self):
        self._inputs = ()
        self._out = None
        self.released = True


def _describe(args):
    parts = []
    for i, a in enumerate(args):
        if a is None:
            parts.append(f"  input {i}: None")
        elif hasattr(a, "_data"):
            parts.append(f"  input {i}: shape {tuple(a._data.shape)}, dtype {a._data.dtype}")
        else:
            parts.append(f"  input {i}: {type(a).__name__} {a!r}"[:120])
    return "\n".join(parts)


def _forward_error(opdef, args, attrs, exc):
    """Turn a numpy failure into an error naming the op, inputs and user line."""
    fn, line = user_frame()
    where = f" (at {fn}:{line})" if fn else ""
    metas = [None if a is None else registry.TensorMeta(a._data.shape, a._data.dtype) for a in args]
    try:
        opdef.meta(*metas, **{**{k: v for k, v in opdef.attrs.items() if v is not registry.REQUIRED}, **attrs})
    except EdgeTorchError as e:
        msg = str(e) if str(e).startswith(opdef.name) else f"{opdef.name}: {e}"
        return type(e)(f"{msg}{where}")
    except Exception:  # noqa: BLE001  (the rule could not even run: the generic message below says more)
        where += " (shape rule failed too)"
    msg = f"{opdef.name}{where}: {type(exc).__name__}: {exc}\n{_describe(args)}"
    if attrs:
        msg += f"\n  attributes: {attrs}"
    cls = ShapeError if isinstance(exc, ValueError) else EdgeTorchError
    return cls(msg)


def apply(opdef, args, attrs):
    """Run `opdef` on Tensors (or None for optional inputs); record for autograd."""
    from .._tensor import Tensor
    if len(args) < opdef.n_inputs:
        args = tuple(args) + (None,) * (opdef.n_inputs - len(args))  # omitted optional inputs
    arrays = []
    tens = []
    req = False
    for a in args:
        if a is None:
            arrays.append(None)
        else:
            if not isinstance(a, Tensor):
                a = Tensor._const(a)
            arrays.append(a._data)
            if a.requires_grad:
                req = True
        tens.append(a)
    try:
        out = opdef.forward(*arrays, **attrs)
    except EdgeTorchError as e:
        fn, line = user_frame()
        msg = str(e) if str(e).startswith(opdef.name) else f"{opdef.name}: {e}"
        raise type(e)(msg + (f" (at {fn}:{line})" if fn else "")) from None
    except (ValueError, TypeError, IndexError) as e:
        raise _forward_error(opdef, tens, attrs, e) from None
    t = Tensor._wrap(out if type(out) is np.ndarray else np.asarray(out))
    if req and grad_mode._state.enabled and opdef.backward is not None:
        t.grad_fn = Node(opdef, tuple(tens), attrs, t)
        t.requires_grad = True
    if capture_hooks:
        for h in capture_hooks:
            h(opdef, tens, attrs, t)
    return t


registry._apply = apply
