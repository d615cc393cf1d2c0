"""edgetorch: write and train models eagerly in the PyTorch idiom, export them
to a self-contained `.etp` program, run them with a lean Numba runtime.

    import edgetorch as et
    model = et.nn.Linear(4, 2)
    loss = model(et.randn(8, 4)).pow(2).mean()
    loss.backward()

Names load on first use: `import edgetorch.runtime` on a device pulls in
the runtime alone; the frontend (Tensor, ops, autograd) loads when one of its
names is first touched, `nn`, `optim`, `utils`, `models` and the exporter
when they are.
"""
import importlib

from ._errors import (AutogradError, DTypeError, EdgeTorchError, ExportError, InputError, ProgramError,
                      ShapeError, StateDictError)

__version__ = "0.1.0"

_LAZY = {"nn", "optim", "utils", "models", "autograd", "serialization", "exporter", "runtime", "cli", "ops",
         "symbolic", "functional", "dtypes", "quant"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("save", "load"):
        return getattr(importlib.import_module(f"{__name__}.serialization"), name)
    if name in ("export", "export_methods"):
        return getattr(importlib.import_module(f"{__name__}.exporter"), name)
    front = importlib.import_module(f"{__name__}._frontend")
    try:
        value = getattr(front, name)
    except AttributeError:
        raise AttributeError(f"module 'edgetorch' has no attribute {name!r}") from None
    globals()[name] = value   # later lookups skip this function
    return value


def __dir__():
    front = importlib.import_module(f"{__name__}._frontend")
    return sorted(set(globals()) | set(dir(front)) | _LAZY)
