"""SGD, Adam and AdamW, with torch's update rules and defaults.

Adam: Kingma & Ba 2015; AdamW (decoupled weight decay): Loshchilov & Hutter 2019.
Updates run in numpy on the parameters' buffers, outside autograd.
"""
import math

import numpy as np

from .._errors import EdgeTorchError
from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD with momentum (dampening, nesterov) and L2 weight decay, as torch.optim.SGD."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise EdgeTorchError(f"invalid SGD hyper-parameters lr={lr}, momentum={momentum}, "
                                 f"weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise EdgeTorchError("nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _step_group(self, g):
        for p, d in self._params_with_grad(g):
            d = -d if g["maximize"] else d
            if g["weight_decay"]:
                d = d + g["weight_decay"] * p._data
            if g["momentum"]:
                st = self.state.setdefault(id(p), {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = np.array(d, copy=True)
                else:
                    buf = buf * g["momentum"] + (1 - g["dampening"]) * d
                st["momentum_buffer"] = buf
                d = d + g["momentum"] * buf if g["nesterov"] else buf
            self._update(p, p._data - g["lr"] * d)


class Adam(Optimizer):
    """Adam with bias correction; weight_decay is L2 added to the gradient (torch.optim.Adam)."""
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise EdgeTorchError(f"invalid betas {betas}: each must be in [0, 1)")
        if lr < 0 or eps < 0:
            raise EdgeTorchError(f"invalid lr {lr} or eps {eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _step_group(self, g):
        b1, b2 = g["betas"]
        lr, eps, wd = g["lr"], g["eps"], g["weight_decay"]
        for p, d in self._params_with_grad(g):
            d = -d if g["maximize"] else d
            x = p._data
            if wd:
                if self._decoupled:
                    x = x * (1 - lr * wd)
                else:
                    d = d + wd * x
            st = self.state.setdefault(id(p), {})
            if not st:
                st["step"] = 0
                st["exp_avg"] = np.zeros_like(x)
                st["exp_avg_sq"] = np.zeros_like(x)
                if g["amsgrad"]:
                    st["max_exp_avg_sq"] = np.zeros_like(x)
            st["step"] += 1
            t = st["step"]
            m = st["exp_avg"] = b1 * st["exp_avg"] + (1 - b1) * d
            v = st["exp_avg_sq"] = b2 * st["exp_avg_sq"] + (1 - b2) * d * d
            if g["amsgrad"]:
                v = st["max_exp_avg_sq"] = np.maximum(st["max_exp_avg_sq"], v)
            bc1 = 1 - b1 ** t
            bc2 = 1 - b2 ** t
            denom = np.sqrt(v) / math.sqrt(bc2) + eps
            self._update(p, x - (lr / bc1) * m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2), as torch.optim.AdamW."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
