"""Compression methods, one module each; see :mod:`ragzip.registry`."""
