"""Reproducible training scripts for the shipped compressor weights (run with ``python -m``)."""
