"""Errors of the synthetic dataset generator."""

from fusionocc_core.errors import FusionOccError


class SynthError(FusionOccError):
    """A synthetic dataset cannot be generated as asked (bad option, existing output, ...)."""
