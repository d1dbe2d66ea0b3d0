"""Cooperative cancellation of compression work running in a thread.

A thread cannot be killed, so long work stops itself: the caller runs it inside
:func:`cancellable` with a :class:`CancelToken`, and the work calls :func:`checkpoint` between
steps (the compressor base class around each call, embedding and classifier loops between
batches). Once the token is cancelled — the client went away, the deadline passed — the next
checkpoint raises :class:`Cancelled` and the thread is free for other requests. Outside
:func:`cancellable`, :func:`checkpoint` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ragzip.core.errors import CompressionError


class Cancelled(CompressionError):
    """The work was cancelled before it finished."""


class CancelToken:
    """A flag another thread sets to stop the work, with the reason."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def cancel(self, reason: str) -> None:
        """Ask the work to stop at its next checkpoint."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            msg = f"compression cancelled: {self.reason}"
            raise Cancelled(msg)


_current: ContextVar[CancelToken | None] = ContextVar("ragzip_cancel_token", default=None)


@contextmanager
def cancellable(token: CancelToken) -> Iterator[CancelToken]:
    """Make :func:`checkpoint` in this thread (and context) obey ``token``."""
    reset = _current.set(token)
    try:
        token.check()
        yield token
    finally:
        _current.reset(reset)


def checkpoint() -> None:
    """Stop here (raise :class:`Cancelled`) if the current work was cancelled."""
    token = _current.get()
    if token is not None:
        token.check()
