"""The exception hierarchy shared by every layer.

One exception type per layer, all subclasses of `EdgeTorchError`, so a user
can catch everything edgetorch raises with one clause.  This module imports
nothing, so the runtime can use it without pulling in the frontend.
"""


class EdgeTorchError(Exception):
    """Base class of every error edgetorch raises on purpose."""


class ShapeError(EdgeTorchError, ValueError):
    """An op got inputs whose shapes do not fit together."""


class DTypeError(EdgeTorchError, TypeError):
    """An op got an input of a dtype it does not accept."""


class AutogradError(EdgeTorchError, RuntimeError):
    """Misuse of autograd: backward twice, in-place on a saved tensor, ..."""


class StateDictError(EdgeTorchError, KeyError):
    """load_state_dict found missing, unexpected or mis-shaped entries."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ExportError(EdgeTorchError):
    """Capture met something it cannot record faithfully; names the user's line."""


class ProgramError(EdgeTorchError):
    """A program file is malformed, unsupported or fails verification."""


class InputError(EdgeTorchError, ValueError):
    """A call passed inputs that do not match the method's signature."""
