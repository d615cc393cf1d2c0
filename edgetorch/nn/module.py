"""nn.Module: parameters, buffers, submodules, state dicts, hooks, repr."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._errors import EdgeTorchError, StateDictError
from .._tensor import Tensor
from .parameter import Buffer, Parameter


class Module:
    """Base class of every layer and model, as torch.nn.Module.

    >>> class Net(et.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = et.nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x).relu()
    """
    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise EdgeTorchError(f"cannot assign {name!r} before Module.__init__() is called; "
                                 "call super().__init__() first")
        if name in self._buffers and isinstance(value, Tensor) and not isinstance(value, (Parameter, Buffer)):
            self._buffers[name] = value
            return
        if name in self._parameters and value is None:
            self._parameters[name] = None
            return
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Buffer):
            self.register_buffer(name, Tensor._wrap(value._data), persistent=value.persistent)
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        else:
            self._non_persistent.discard(name)

    def add_module(self, name, module):
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mp}.{name}" if mp else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{name}" if mp else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        m = self
        for part in target.split(".") if target else []:
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (in {target!r})")
            m = m._modules[part]
        return m

    def get_parameter(self, target):
        mod, _, name = target.rpartition(".")
        return getattr(self.get_submodule(mod), name)

    # ------------------------------------------------------------ modes
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad = p.grad.new_zeros(p.shape)

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs):
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, str) and a.startswith("cuda"):
                raise EdgeTorchError("device 'cuda' is not available in the eager frontend")
            if not isinstance(a, str):
                dtype = a
        if dtype is not None:
            from .. import dtypes as D
            npd = D.to_numpy_dtype(dtype)
            for m in self.modules():
                for t in list(m._parameters.values()) + list(m._buffers.values()):
                    if t is not None and t.is_floating_point():
                        t._data = t._data.astype(npd)
        return self

    def float(self):
        from .. import dtypes as D
        return self.to(D.float32)

    def double(self):
        from .. import dtypes as D
        return self.to(D.float64)

    def half(self):
        from .. import dtypes as D
        return self.to(D.float16)

    def cpu(self):
        return self

    # ------------------------------------------------------------ call
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        for h in self._forward_pre_hooks.values():
            r = h(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        out = self.forward(*args, **kwargs)
        for h in self._forward_hooks.values():
            r = h(self, args, out)
            if r is not None:
                out = r
        return out

    def register_forward_hook(self, hook):
        """hook(module, args, output) -> output or None; returns a removable handle."""
        return _Handle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """hook(module, args) -> args or None; returns a removable handle."""
        return _Handle(self._forward_pre_hooks, hook)

    # ------------------------------------------------------------ state dict
    def state_dict(self, prefix="", keep_vars=False):
        out = OrderedDict()
        for mp, m in self.named_modules(prefix=prefix.rstrip(".")):
            pre = f"{mp}." if mp else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[pre + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy tensors from `state_dict`; report missing/unexpected keys and shape mismatches.

        Returns (missing_keys, unexpected_keys); with strict=True any of them,
        or any shape mismatch, raises StateDictError listing them all.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else np.asarray(v)
            if tuple(arr.shape) != tuple(t.shape):
                mismatched.append(f"{k}: checkpoint shape {tuple(arr.shape)}, model shape {tuple(t.shape)}")
        if mismatched or (strict and (missing or unexpected)):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__}:"]
            if missing:
                lines.append("  Missing key(s): " + ", ".join(repr(k) for k in missing))
            if unexpected:
                lines.append("  Unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
            for m in mismatched:
                lines.append("  size mismatch for " + m)
            raise StateDictError("\n".join(lines))
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                arr = v._data if isinstance(v, Tensor) else np.asarray(v)
                t._data = np.array(arr, dtype=t._data.dtype, copy=True)
                t._version.v += 1
        return _LoadResult(missing, unexpected)

    # ------------------------------------------------------------ repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            r = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {r}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._modules) + list(self._buffers)


class _LoadResult(tuple):
    def __new__(cls, missing, unexpected):
        r = super().__new__(cls, (missing, unexpected))
        r.missing_keys, r.unexpected_keys = missing, unexpected
        return r


class _Handle:
    _next = 0

    def __init__(self, store, hook):
        _Handle._next += 1
        self.id = _Handle._next
        self.store = store
        store[self.id] = hook

    def remove(self):
        self.store.pop(self.id, None)
