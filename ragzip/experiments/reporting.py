"""Helpers every report writer shares: JSON-ready values, Markdown tables, robust medians."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def json_ready(value: Any) -> Any:
    """Make ``value`` JSON-ready: dataclasses to dicts, tuples to lists, NaN/inf to ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; cells are written with ``str`` (format numbers before).

    Args:
        header: Column titles.
        rows: One sequence of cells per row.
        align: One letter per column, ``l`` or ``r`` (right: numbers); left where not given.
    """
    rules = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def finite_median(values: Iterable[float]) -> float:
    """The median of the finite values; NaN when there are none."""
    vals = [v for v in values if math.isfinite(v)]
    return float(statistics.median(vals)) if vals else math.nan
