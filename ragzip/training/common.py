"""What every training run shares: a random state of its own, threads set by entry points only.

Library code never changes process-wide state: a run seeds torch inside its own fork of the
random state (:func:`own_random_state`), and thread counts are set only by the command-line
entry points (:func:`set_threads`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def own_random_state(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` in a fork of torch's random state: its seeding does not leak to the caller."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return fn(*args, **kwargs)

    return wrapper


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (entry points only; ``None`` or 0 leaves the default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
