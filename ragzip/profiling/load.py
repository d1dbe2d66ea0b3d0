"""What a proxy sees of its generator's load, live: how long the generator has recently taken
per prompt token (queueing included), the fastest it was seen to go, and what is in flight.

The proxy reports every upstream request to a :class:`LoadWatch` (prompt size when sent, the
wait for its first byte when it answers); ``auto`` reads a :class:`Load` snapshot per request
(:meth:`~ragzip.policy.AutoPolicy.decide`): a generator that takes many times its idle time per
token is the bottleneck, and every token compression removes is worth that much to the queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ragzip.core.errors import ConfigError


@dataclass(frozen=True)
class Load:
    """One look at the generator's load.

    Attributes:
        seconds_per_token: Recent wait for the first byte per prompt token (an exponentially
            weighted mean; queueing included), or ``None`` before enough answers.
        idle_seconds_per_token: The lowest such wait among recent answers: the generator's
            own speed when nothing waits ahead.
        tokens_in_flight: Prompt tokens sent and not yet answered.
        compressions_in_flight: Requests this proxy is compressing now.
        cpus: CPUs the proxy compresses on.
        samples: Answers the figures rest on.
    """

    seconds_per_token: float | None
    idle_seconds_per_token: float | None
    tokens_in_flight: int = 0
    compressions_in_flight: int = 0
    cpus: int = 1
    samples: int = 0

    @property
    def pressure(self) -> float:
        """How many times its idle time per token the generator takes now (1.0: idle, or
        unknown)."""
        if not self.seconds_per_token or not self.idle_seconds_per_token:
            return 1.0
        return max(1.0, self.seconds_per_token / self.idle_seconds_per_token)

    @property
    def cpu_contention(self) -> float:
        """How much slower a compression starting now runs than alone: one more compression
        shares the CPUs with those in flight (1.0 while a CPU is free)."""
        return max(1.0, (self.compressions_in_flight + 1) / max(self.cpus, 1))


class LoadWatch:
    """Thread-safe tracker of upstream answers and in-flight work (one per proxy).

    Args:
        half_life_s: Half-life of the weighted mean of seconds per token.
        idle_window: Recent answers among which the fastest per token is the idle speed.
        stale_s: With no answer for this long, the recent mean is forgotten (a generator nobody
            uses is idle).
        cpus: CPUs compressions share.
        min_samples: Answers seen before the figures are given (a few answers say little).
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        half_life_s: float = 5.0,
        idle_window: int = 256,
        stale_s: float = 30.0,
        cpus: int = 1,
        min_samples: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("half_life_s", half_life_s), ("stale_s", stale_s)):
            if not math.isfinite(value) or value <= 0:
                msg = f"{name} must be a number > 0, got {value!r}"
                raise ConfigError(msg)
        if min(idle_window, cpus, min_samples) < 1:
            msg = (
                "idle_window, cpus and min_samples must be >= 1, got "
                f"{idle_window}, {cpus} and {min_samples}"
            )
            raise ConfigError(msg)
        self.min_samples = min_samples
        self.half_life_s = half_life_s
        self.stale_s = stale_s
        self.cpus = cpus
        self._clock = clock
        self._lock = threading.Lock()
        self._mean: float | None = None
        self._last = 0.0
        self._recent: deque[float] = deque(maxlen=idle_window)
        self._tokens = 0
        self._compressing = 0
        self._samples = 0

    def observe(self, prompt_tokens: int, wait_s: float) -> None:
        """One answer: ``wait_s`` from sending ``prompt_tokens`` to the first byte back."""
        if prompt_tokens <= 0 or not math.isfinite(wait_s) or wait_s < 0:
            return
        per_token = wait_s / prompt_tokens
        with self._lock:
            now = self._clock()
            if self._mean is None or now - self._last > self.stale_s:
                self._mean = per_token
            else:
                keep = 0.5 ** ((now - self._last) / self.half_life_s)
                self._mean = keep * self._mean + (1.0 - keep) * per_token
            self._last = now
            self._recent.append(per_token)
            self._samples += 1

    @contextmanager
    def upstream(self, prompt_tokens: int) -> Iterator[None]:
        """Counts ``prompt_tokens`` in flight while the block runs (the wait for an answer)."""
        with self._lock:
            self._tokens += prompt_tokens
        try:
            yield
        finally:
            with self._lock:
                self._tokens -= prompt_tokens

    @contextmanager
    def compressing(self) -> Iterator[None]:
        """Counts one compression in flight while the block runs."""
        with self._lock:
            self._compressing += 1
        try:
            yield
        finally:
            with self._lock:
                self._compressing -= 1

    def snapshot(self) -> Load:
        """The load now."""
        with self._lock:
            known = self._samples >= self.min_samples
            fresh = known and self._clock() - self._last <= self.stale_s
            idle = min(self._recent) if known and self._recent else None
            return Load(
                seconds_per_token=self._mean if fresh else idle,
                idle_seconds_per_token=idle,
                tokens_in_flight=self._tokens,
                compressions_in_flight=self._compressing,
                cpus=self.cpus,
                samples=self._samples,
            )
