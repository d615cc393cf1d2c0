"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

It must never import the frontend's registry, nn, optim or the exporter.
"""
from edgetorch._errors import InputError, ProgramError

__all__ = ["ProgramError", "InputError"]
