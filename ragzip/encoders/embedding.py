"""Vectors from embedding models, in one place: unit rows, and the reduced precision embedders
run in where the hardware computes it natively."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Literal, get_args

import numpy as np

from ragzip.core.errors import ConfigError, needs_extra

FixedPrecision = Literal["float32", "bfloat16"]
Precision = Literal["auto", "float32", "bfloat16"]
"""``"auto"`` resolves per device (:func:`resolve_precision`)."""

PRECISION_ENV = "RAGZIP_PRECISION"
"""Environment variable that fixes what ``"auto"`` resolves to (``float32`` or ``bfloat16``),
on every device: to run on one CPU what another would pick, or to pin a deployment's numbers."""


def resolve_precision(precision: Precision, device: str = "cpu") -> FixedPrecision:
    """``"auto"``: what :data:`PRECISION_ENV` says when it is set; otherwise bfloat16 on CPUs
    that compute it natively (AVX512-BF16 or AMX), float32 elsewhere, CUDA included: on an
    H200, MiniLM under bfloat16 autocast took 7x longer per request of varied sentence lengths
    than in float32 (``mig`` cold p50 188 vs 26 ms,
    ``benchmarks/results/compress_latency_h200.md``). Other values as they are.

    Raises:
        ConfigError: :data:`PRECISION_ENV` holds something else than a fixed precision.
    """
    if precision != "auto":
        return precision
    forced = os.environ.get(PRECISION_ENV, "").strip()
    if forced:
        if forced not in get_args(FixedPrecision):
            msg = f"{PRECISION_ENV}={forced!r}: use one of {', '.join(get_args(FixedPrecision))}"
            raise ConfigError(msg)
        return forced  # type: ignore[return-value]
    if device != "cpu":
        return "float32"
    from ragzip.core.machine import native_bf16_cpu

    return "bfloat16" if native_bf16_cpu() else "float32"


def feature_namespace(embedder: str, precision: str) -> str:
    """The identity under which unit vectors of ``embedder`` at ``precision`` are cached: one
    namespace for every component that embeds text with the same model the same way (the
    index's query vectors, ``mig``'s sentence vectors, vectors precomputed at index time)."""
    return f"unit-vector|{embedder}|{precision}"


def device_of(model: Any) -> str:
    """``"cpu"``, ``"cuda"``, ... : where a torch model (or a SentenceTransformer) runs."""
    device = getattr(model, "device", None)
    return str(getattr(device, "type", device or "cpu")).split(":")[0]


def autocast(device: str, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on ``device`` when ``precision`` resolves to it there, else nothing
    (thread-local, like every torch autocast)."""
    if device not in ("cpu", "cuda") or resolve_precision(precision, device) == "float32":
        return contextlib.nullcontext()
    with needs_extra("models", "bfloat16 embedding needs torch"):
        import torch
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Vectors (the last axis) scaled to unit L2 norm, zero ones left zero, as a new contiguous
    float32 array."""
    array = np.array(vectors, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array
