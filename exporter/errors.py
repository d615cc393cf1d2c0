"""Exporter errors (defined with the others in edgetorch._errors)."""
from edgetorch._errors import ExportError

__all__ = ["ExportError"]
