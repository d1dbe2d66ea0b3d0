"""Cost models fitted to latency measurements: linear and quadratic, robust to outliers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.core.errors import InputError

if TYPE_CHECKING:
    pass


# -- cost models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearModel:
    """``y = intercept + slope · x``."""

    intercept: float
    slope: float

    def __call__(self, x: float | np.ndarray) -> Any:
        return self.intercept + self.slope * np.asarray(x, dtype=float)


@dataclass(frozen=True)
class QuadraticModel:
    """``y = a + b·x + c·x²``."""

    a: float
    b: float
    c: float

    def __call__(self, x: float | np.ndarray) -> Any:
        x = np.asarray(x, dtype=float)
        return self.a + self.b * x + self.c * x * x


def _check_xy(xs: Sequence[float], ys: Sequence[float], needed: int) -> tuple[Any, Any]:
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        msg = f"need two equally long 1-d sequences, got shapes {x.shape} and {y.shape}"
        raise InputError(msg)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        msg = "measurements must be finite numbers"
        raise InputError(msg)
    if len(np.unique(x)) < needed:
        msg = f"need at least {needed} distinct lengths to fit this model, got {len(np.unique(x))}"
        raise InputError(msg)
    return x, y


def _row_weights(y: np.ndarray, relative: bool) -> np.ndarray:
    """``1 / y`` (least *relative* squares) when asked and every ``y`` is positive, else ones."""
    if relative and bool((y > 0).all()):
        return np.asarray(1.0 / y, dtype=float)
    return np.ones_like(y)


def fit_linear(xs: Sequence[float], ys: Sequence[float], *, relative: bool = False) -> LinearModel:
    """Least-squares line through ``(xs, ys)``.

    With one distinct ``x`` the line is flat through the mean (a constant cost).

    Args:
        xs: Lengths.
        ys: Measured values.
        relative: Minimise relative rather than absolute residuals, so short, fast points
            weigh as much as long, slow ones (when every ``y`` is positive).
    """
    x, y = _check_xy(xs, ys, 1)
    if len(np.unique(x)) == 1:
        return LinearModel(float(y.mean()), 0.0)
    w = _row_weights(y, relative)
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return LinearModel(float(coef[0]), float(coef[1]))


def fit_quadratic(
    xs: Sequence[float], ys: Sequence[float], *, relative: bool = False
) -> QuadraticModel:
    """Least-squares ``a + b·x + c·x²`` through ``(xs, ys)``; a line when only two lengths.

    Args:
        xs: Lengths.
        ys: Measured values.
        relative: Minimise relative residuals (see :func:`fit_linear`).
    """
    x, y = _check_xy(xs, ys, 2)
    if len(np.unique(x)) == 2:
        line = fit_linear(xs, ys, relative=relative)
        return QuadraticModel(line.intercept, line.slope, 0.0)
    scale = float(np.abs(x).max()) or 1.0  # condition the design matrix
    xn = x / scale
    w = _row_weights(y, relative)
    design = np.stack([np.ones_like(xn), xn, xn * xn], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return QuadraticModel(float(coef[0]), float(coef[1] / scale), float(coef[2] / scale**2))


def fit_cost(xs: Sequence[float], ys: Sequence[float], *, relative: bool = False) -> LinearModel:
    """A line for a time cost: least squares, or through the origin when the intercept is negative.

    A negative intercept would predict free work for short inputs outside the measured range.

    Args:
        xs: Lengths.
        ys: Measured seconds.
        relative: Minimise relative residuals (see :func:`fit_linear`).
    """
    line = fit_linear(xs, ys, relative=relative)
    if line.intercept >= 0:
        return line
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    w = _row_weights(y, relative) ** 2
    xx = float((w * x) @ x)
    return LinearModel(0.0, float((w * x) @ y) / xx if xx > 0 else 0.0)


def fit_decode(xs: Sequence[float], ys: Sequence[float]) -> LinearModel:
    """Decode seconds per token against prompt tokens: a line, or the median when it falls."""
    line = fit_linear(xs, ys)
    if line.slope <= 0:
        return LinearModel(float(np.median(np.asarray(ys, dtype=float))), 0.0)
    return line
