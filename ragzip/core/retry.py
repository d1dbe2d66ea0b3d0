"""When and how long to wait before retrying an HTTP request: one policy for every client.

Both HTTP clients of ragzip (the generator for OpenAI-compatible servers and the proxy's upstream
connection) wait ``base_s · 2^attempt`` before a retry, stretched to a server's ``Retry-After``
(capped) and, where many clients may retry at once, spread by a little random jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: rate limiting and server-side failures."""

MAX_RETRY_AFTER_S = 30.0
"""The longest ``Retry-After`` honoured; a longer one is cut to this."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff.

    Attributes:
        base_s: Wait before the first retry; doubled for each next one.
        jitter: Fraction of random extra wait (``0.1``: up to 10% more).
        max_retry_after_s: Cap on a server's ``Retry-After``.
    """

    base_s: float
    jitter: float = 0.0
    max_retry_after_s: float = MAX_RETRY_AFTER_S

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0 for the first)."""
        wait = self.base_s * 2**attempt
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after_s))
        if self.jitter:
            wait *= 1.0 + self.jitter * random.random()
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header; ``None`` when absent, negative or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:  # an HTTP date: fall back to the backoff
        return None
    return seconds if seconds >= 0 else None
