"""Progress bars for long evaluation runs (no-ops when progress is off)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(enabled: bool, console: Console | None) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        yield bar


class ProgressTask:
    """A progress task that does nothing when progress bars are off."""

    def __init__(self, bar: Progress | None, description: str, total: int) -> None:
        self._bar = bar
        self._id = bar.add_task(description, total=total) if bar is not None else None

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._id is not None:
            self._bar.advance(self._id, n)
