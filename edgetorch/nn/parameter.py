"""Parameter: a leaf Tensor that a Module registers as trainable."""
import numpy as np

from .._tensor import Tensor, _as_array


class Parameter(Tensor):
    """A Tensor that is a module parameter (requires grad by default)."""
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.zeros((0,), dtype=np.float32)
        super().__init__(_as_array(data))
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """Marks a tensor to register as a module buffer (torch.nn.Buffer)."""
    __slots__ = ("persistent",)

    def __init__(self, data, persistent=True):
        super().__init__(_as_array(data))
        self.persistent = persistent
