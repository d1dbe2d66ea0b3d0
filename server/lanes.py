"""Where compression runs: bounded, size-classed worker lanes with cancellation.

A request's compression runs on one of two lanes, each a thread pool of its own: *small*
requests (at most ``small_request_chars`` characters of context) and *large* ones, so a heavy
request never queues in front of small ones. Each lane admits at most
``max_queued_compressions`` pieces of work (running or waiting) and no more than
``max_queue_seconds`` of estimated work (a running average of recent jobs' durations); beyond
that the request is answered at once with 503 and ``Retry-After`` instead of waiting without
bound. Fast compressions can thus queue deep, slow ones only a little. Work whose
client went away or whose deadline passed is cancelled cooperatively
(:mod:`ragzip.core.cancellation`): it stops at its next checkpoint and frees the thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ragzip.core.cancellation import CancelToken, cancellable
from ragzip.core.types import Passage
from ragzip.server.errors import ServerBusyError
from ragzip.server.settings import Settings

T = TypeVar("T")


def _libc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to hand back explicitly
        return None
    return lambda: trim(0)


_TRIM = _libc_trim()


def release_memory() -> None:
    """Hand freed heap memory back to the system after a large job (glibc ``malloc_trim``).

    Measured in ``benchmarks/proxy_isolation.py``, this does not bring the proxy's resident
    memory back to its baseline after a heavy round: about 50 MiB stay (without growing on the
    next round)."""
    if _TRIM is not None:
        _TRIM()


class Lane:
    """One thread pool and its admission count."""

    def __init__(self, name: str, workers: int, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.admitted = 0
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ragzip-{name}")
        self.seconds_per_job = 0.1  # running estimate, for admission and Retry-After

    def _release(self, seconds: float) -> None:
        self.admitted -= 1
        self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * seconds


class Lanes:
    """The small and large lanes of one proxy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        workers, capacity = settings.compression_workers, settings.max_queued_compressions
        self.small = Lane("small", workers, capacity)
        self.large = Lane("large", workers, capacity)

    def lane_for(self, passages: Sequence[Passage]) -> Lane:
        """The lane of a request by its context size."""
        chars = sum(len(p.text) for p in passages)
        return self.small if chars <= self.settings.small_request_chars else self.large

    async def run(self, lane: Lane, fn: Callable[[], T], token: CancelToken) -> T:
        """Run ``fn`` on ``lane`` under ``token``; the awaiting task's cancellation (a client
        gone, a deadline) cancels the work too.

        Raises:
            ServerBusyError: The lane already holds ``capacity`` pieces of work.
        """
        wait = lane.seconds_per_job * lane.admitted / max(1, self._workers)
        if lane.admitted >= lane.capacity or wait > self.settings.max_queue_seconds:
            retry = max(1, math.ceil(wait))
            msg = (
                f"the proxy is busy: {lane.admitted} {lane.name} compressions are queued or "
                f"running, about {wait:.1f} s of work (limits: max_queued_compressions="
                f"{lane.capacity}, max_queue_seconds={self.settings.max_queue_seconds:g}); "
                f"retry in {retry} s"
            )
            raise ServerBusyError(msg, retry)
        loop = asyncio.get_running_loop()
        ran = [0.0]  # seconds the work itself ran (queueing left out of the estimate)

        def work() -> T:
            started = time.perf_counter()
            try:
                with cancellable(token):
                    return fn()
            finally:
                ran[0] = time.perf_counter() - started
                if lane is self.large:
                    release_memory()

        lane.admitted += 1
        future = loop.run_in_executor(lane.executor, work)

        def done(f: asyncio.Future[T]) -> None:
            lane._release(ran[0])
            if not f.cancelled():
                f.exception()  # seen: abandoned work that stopped (Cancelled) is not an error

        future.add_done_callback(done)
        try:
            return await asyncio.shield(future)
        except BaseException:
            token.cancel("the request was abandoned (client gone or deadline passed)")
            raise

    @property
    def _workers(self) -> int:
        return self.settings.compression_workers

    def submit_plain(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run model loading and other short work on the small lane, outside admission."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.small.executor, lambda: fn(*args))

    def shutdown(self) -> None:
        """Stop the threads; queued work is dropped."""
        for lane in (self.small, self.large):
            lane.executor.shutdown(wait=False, cancel_futures=True)
