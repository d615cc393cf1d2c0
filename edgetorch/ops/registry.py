"""The op registry: one definition per primitive op.

An entry holds the op's torch spelling as its name, its tensor inputs and
typed attributes (taken from the numpy forward's signature: positional
parameters are tensor inputs, keyword-only parameters are attributes with
their defaults), a pure shape/dtype rule (`meta`) written in plain
arithmetic so it runs on symbolic dims at export and on ints elsewhere, the
numpy forward, the backward written in edgetorch ops (so it is itself
differentiable), and sample inputs that make the op's edge cases visible.

    @op(meta=same, samples=unary_samples)
    def relu(x):
        return np.maximum(x, 0)

    @relu.grad
    def _(ctx, g):
        x, = ctx.inputs
        return (g * (x > 0),)

Calling the entry (`relu(t)`) runs it on Tensors through autograd; the
runtime never imports this module (programs carry shapes as expressions).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

REGISTRY: dict[str, "OpDef"] = {}

# Set by edgetorch.autograd.function at import: runs an op on Tensors.
_apply: Callable | None = None


class _Required:
    """Marks an attribute without a default."""

    def __repr__(self):
        return "<required>"


REQUIRED = _Required()


class TensorMeta(NamedTuple):
    """Shape and dtype of a value, as shape rules see it."""
    shape: tuple
    dtype: np.dtype


@dataclass
class Sample:
    """One set of example inputs for an op: arrays (or None) and attributes."""
    args: tuple
    attrs: dict = field(default_factory=dict)
    # positions of inputs that are not differentiable (indices, masks)
    nondiff: tuple = ()
    note: str = ""
    # False where finite differences disagree with the op's defined gradient
    # by design (embedding's padding_idx); torch still checks those.
    gradcheck: bool = True


@dataclass
class OpDef:
    name: str
    forward: Callable
    meta: Callable
    inputs: tuple
    attrs: dict
    family: str
    samples: Callable | None = None
    backward: Callable | None = None
    doc: str = ""
    # True when the forward is a fused kernel of several ops (linear + act, ...)
    fused: bool = False
    # number of declared tensor inputs; -1 when variadic (cat)
    n_inputs: int = -1

    def __call__(self, *args, **attrs):
        return _apply(self, args, attrs)

    def grad(self, fn):
        """Decorator: register `fn(ctx, grad_output) -> tuple of input grads`."""
        self.backward = fn
        return fn

    @property
    def differentiable(self):
        return self.backward is not None

    def __repr__(self):
        a = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"<op {self.name}({', '.join(self.inputs)}{'; ' + a if a else ''})>"


def op(name=None, *, meta, samples=None, fused=False):
    """Register a primitive op; see the module docstring."""
    def deco(fn):
        sig = inspect.signature(fn)
        ins, attrs = [], {}
        for p in sig.parameters.values():
            if p.kind == p.KEYWORD_ONLY:
                attrs[p.name] = REQUIRED if p.default is p.empty else p.default
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                ins.append(p.name)
            else:
                ins.append("*" + p.name)
        opname = name or fn.__name__.rstrip("_")
        if opname in REGISTRY:
            raise RuntimeError(f"op {opname!r} registered twice")
        family = fn.__module__.rsplit(".", 1)[-1]
        variadic = any(i.startswith("*") for i in ins)
        d = OpDef(opname, fn, meta, tuple(ins), attrs, family, samples,
                  doc=(fn.__doc__ or "").strip(), fused=fused, n_inputs=-1 if variadic else len(ins))
        REGISTRY[opname] = d
        return d
    return deco


# ---------------------------------------------------------------- shape rules
# Rules use only ==, +, -, *, // and comparisons with ints, so a symbolic dim
# class implementing those runs them unchanged.

def same(x, *rest, **attrs):
    return TensorMeta(tuple(x.shape), x.dtype)


def broadcast_shapes(*shapes):
    """numpy/torch broadcasting of shapes; ShapeError names both shapes."""
    from .._errors import ShapeError
    n = max(len(s) for s in shapes)
    out = []
    for i in range(n):
        d = 1
        for s in shapes:
            k = len(s) - n + i
            if k < 0:
                continue
            e = s[k]
            if e == 1:
                continue
            if d == 1:
                d = e
            elif not (d == e):
                raise ShapeError("shapes " + " and ".join(str(tuple(x)) for x in shapes)
                                 + f" do not broadcast (dim {i - n}: {d} vs {e})")
        out.append(d)
    return tuple(out)


def result_dtype(*dts):
    return np.result_type(*dts)


def broadcast(*metas, **attrs):
    ms = [m for m in metas if m is not None]
    return TensorMeta(broadcast_shapes(*[m.shape for m in ms]), result_dtype(*[m.dtype for m in ms]))


def float_dtype(dt):
    dt = np.dtype(dt)
    return dt if dt.kind == "f" or dt.name == "bfloat16" else np.dtype(np.float32)


def norm_dim(d, ndim, what="dim"):
    from .._errors import ShapeError
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise ShapeError(f"{what} {d} is out of range for a tensor of rank {ndim}")
    return d % max(ndim, 1)


def norm_dims(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    return tuple(sorted({norm_dim(d, ndim) for d in dim}))


def reduced_shape(shape, dims, keepdim):
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


def numel(shape):
    n = 1
    for s in shape:
        n = n * s
    return n


def get(name) -> OpDef:
    from .._errors import EdgeTorchError
    try:
        return REGISTRY[name]
    except KeyError:
        raise EdgeTorchError(f"no op named {name!r} in the registry") from None


def all_ops() -> dict[str, OpDef]:
    from . import _load_all  # noqa: F401  (imports every family)
    return dict(REGISTRY)
