"""Tolerances that follow from the precision an embedder runs in."""

from __future__ import annotations


def score_tolerance(precision: str) -> float:
    """How far two cosine scores of the same texts may differ when the embedder ran in
    ``precision`` in different batches (padding and batch size change the kernels' blocking).

    bfloat16 keeps 8 significant bits: each activation is rounded to a relative 2**-9, and the
    rounding differs between batch layouts, so a unit-vector dot product moves by up to about
    2**-8 (Intel AMX and AVX512-BF16 kernels were seen 3e-4 apart; emulated bfloat16 on CPUs
    without it, less). float32 results agree to about 1e-6; 1e-4 leaves room for the order of
    the accumulation.
    """
    return 2.0**-8 if precision == "bfloat16" else 1e-4
