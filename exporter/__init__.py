"""edgetorch.exporter: capture eager models into programs, optimize them,
plan memory and write the .etp format.

    from edgetorch.exporter import Dim
    ep = edgetorch.export(model, (x,), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    print(ep.graph)          # the IR, one node per line
    ep.module()(x)           # runs the graph with eager ops
    ep.save("model.etp")
"""
from edgetorch.symbolic import Dim

from .capture import export, export_methods
from .errors import ExportError
from .program import ExportedProgram
from .compare import compare
from .quantize import QuantConfig, quantize

__all__ = ["Dim", "ExportError", "ExportedProgram", "QuantConfig", "compare", "export", "export_methods",
           "quantize", "read"]


def read(path_or_bytes):
    """Parse a .etp file into a ProgramInfo (methods, values, constants, plan, metadata)."""
    from edgetorch.schemas.reader import read as _read
    return _read(path_or_bytes)
