"""nn.utils: gradient clipping and parameter vectors."""
import math

import numpy as np

from ..autograd import grad_mode


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients in place so their joint norm is at most max_norm; return the norm."""
    from .._tensor import Tensor
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(np.zeros((), np.float32))
    if norm_type == math.inf:
        total = max(float(np.abs(g._data).max()) for g in grads)
    else:
        total = float(sum(float((np.abs(g._data.astype(np.float64)) ** norm_type).sum()) for g in grads)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        from .._errors import EdgeTorchError
        raise EdgeTorchError(f"the total norm of gradients is {total}; set error_if_nonfinite=False to ignore")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        with grad_mode.no_grad():
            for g in grads:
                g._data = (g._data * coef).astype(g._data.dtype)
    return Tensor(np.asarray(total, dtype=np.float32))


def clip_grad_value_(parameters, clip_value):
    from .._tensor import Tensor
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for p in params:
        if p.grad is not None:
            np.clip(p.grad._data, -clip_value, clip_value, out=p.grad._data)


def parameters_to_vector(parameters):
    from .._tensor import Tensor
    return Tensor(np.concatenate([p._data.reshape(-1) for p in parameters]))
