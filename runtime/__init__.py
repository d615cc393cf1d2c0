"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

It must never import the frontend's registry, nn, optim or the exporter.
The loader and kernels arrive with the runtime issue; this package holds
the runtime's error types so every layer can already name them.
"""
from edgetorch._errors import EdgeTorchError


class ProgramError(EdgeTorchError):
    """A program file is malformed, unsupported or fails verification."""


class InputError(EdgeTorchError, ValueError):
    """A call passed inputs that do not match the method's signature."""


__all__ = ["ProgramError", "InputError"]
