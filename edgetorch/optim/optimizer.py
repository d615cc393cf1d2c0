"""Optimizer base: parameter groups, zero_grad, state_dict (torch.optim layout)."""
from __future__ import annotations

import copy

import numpy as np

from .._errors import EdgeTorchError


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        params = list(params)
        if not params:
            raise EdgeTorchError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for g in params:
            self.add_param_group(g)

    def add_param_group(self, group):
        g = dict(group)
        g["params"] = list(g["params"])
        for p in g["params"]:
            if not p.requires_grad:
                raise EdgeTorchError("optimizer can only optimize tensors that require grad")
        for k, v in self.defaults.items():
            g.setdefault(k, v)
        self.param_groups.append(g)

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad._data[...] = 0

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is not None:
                yield p, p.grad._data.astype(p._data.dtype, copy=False)

    def _update(self, p, new):
        p._data[...] = new
        p._version.v += 1

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import grad_mode
            with grad_mode.enable_grad():
                loss = closure()
        for g in self.param_groups:
            self._step_group(g)
        return loss

    def state_dict(self):
        ids = {}
        groups = []
        for g in self.param_groups:
            gd = {k: v for k, v in g.items() if k != "params"}
            gd["params"] = []
            for p in g["params"]:
                ids.setdefault(id(p), len(ids))
                gd["params"].append(ids[id(p)])
            groups.append(gd)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if id(p) in self.state:
                    state[ids[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                         for k, v in self.state[id(p)].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd):
        if len(sd["param_groups"]) != len(self.param_groups):
            raise EdgeTorchError(f"loaded state dict has {len(sd['param_groups'])} parameter groups, "
                                 f"the optimizer has {len(self.param_groups)}")
        for g, sg in zip(self.param_groups, sd["param_groups"]):
            if len(g["params"]) != len(sg["params"]):
                raise EdgeTorchError("loaded state dict has a group of a different size")
            for k, v in sg.items():
                if k != "params":
                    g[k] = v
            for p, i in zip(g["params"], sg["params"]):
                if i in sd["state"]:
                    self.state[id(p)] = copy.deepcopy(sd["state"][i])

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
