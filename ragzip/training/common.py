"""What every training run shares: a random state of its own, threads set by entry points only,
and a resumable checkpoint.

Library code never changes process-wide state: a run seeds torch inside its own fork of the
random state (:func:`own_random_state`), and thread counts are set only by the command-line
entry points (:func:`set_threads`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ragzip.core.errors import ConfigError

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


class Checkpoint:
    """A run's resumable state in ``folder/checkpoint.pt``, replaced atomically on each save.

    A run saves what it needs to go on (weights, optimizer, step, data order, curves) with the
    settings it ran under; :meth:`load` gives the state back only for the same settings, so a
    resumed run never mixes two configurations.

    Args:
        folder: The run's output folder.
        settings: The run's settings (JSON-able), compared on :meth:`load`, except those that
            only say how long and where to run (:data:`RUN_LENGTH`): a resumed run may be given
            more time or another device.
    """

    FILE = "checkpoint.pt"
    RUN_LENGTH = frozenset({"minutes", "max_steps", "threads", "device"})

    def __init__(self, folder: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(folder) / self.FILE
        self.settings = {k: v for k, v in settings.items() if k not in self.RUN_LENGTH}

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` (tensors, numbers, lists) with the settings."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"settings": self.settings, "state": dict(state)}, tmp)
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is none.

        Raises:
            ConfigError: A checkpoint of other settings is there (resume with the same ones, or
                start over in another folder).
        """
        import torch

        if not self.path.is_file():
            return None
        saved = torch.load(self.path, weights_only=False, map_location="cpu")
        if saved.get("settings") != self.settings:
            changed = sorted(
                k
                for k in set(saved.get("settings", {})) | set(self.settings)
                if saved.get("settings", {}).get(k) != self.settings.get(k)
            )
            msg = (
                f"{self.path} was written with other settings ({', '.join(changed)}); resume "
                "with the same ones, or write to another --out"
            )
            raise ConfigError(msg)
        state: dict[str, Any] = saved["state"]
        return state

    def remove(self) -> None:
        """Delete the checkpoint (the run finished)."""
        self.path.unlink(missing_ok=True)
