"""Errors of the synthetic dataset generator."""


class SynthError(Exception):
    """A synthetic dataset cannot be generated as asked (bad option, existing output, ...)."""
