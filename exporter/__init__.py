"""edgetorch.exporter: capture, passes, quantization and serialization (.etp).

Arrives with the exporter issue; `edgetorch.export` resolves here lazily.
"""
from edgetorch._errors import EdgeTorchError


class ExportError(EdgeTorchError):
    """Capture met something it cannot record faithfully."""


def export(*args, **kwargs):
    raise ExportError("edgetorch.export is not implemented yet (exporter issue)")


def export_methods(*args, **kwargs):
    raise ExportError("edgetorch.export_methods is not implemented yet (exporter issue)")
