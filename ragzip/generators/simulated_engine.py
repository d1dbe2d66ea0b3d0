"""The SIMULATED GPU that the requests of one :class:`~ragzip.generators.simulated.
SimulatedGenerator` share: what makes compression pay more under load than alone.

A real server (vLLM, TGI, SGLang) runs every request on one GPU. Its model here:

- **prefill** is first come, first served at the preset's rate (``1 / per_token_s`` tokens per
  second; chunked prefill shares it in arrival order): a request admitted at ``t`` starts its
  prefill when the GPU has finished the prefills admitted before it, and its first token comes
  ``overhead_s`` after its own prefill ends. Alone, that is ``overhead_s + per_token_s · n``;
  ``N`` requests sent together get their first tokens about ``per_token_s · n`` apart; at
  saturation the server prefills exactly its rate.
- **decode** steps of running requests are batched: a step takes ``decode_s`` plus
  ``decode_batch_s`` per other request decoding at the same time.
- **KV cache**: a request holds ``prompt + max_tokens`` tokens of ``kv_tokens`` from admission to
  its end; one that does not fit waits, in arrival order, until enough is freed (a request alone
  is always admitted). ``kv_tokens = 0``: no limit.

Only the timing is simulated; whatever reports a figure from it says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragzip.core.errors import GenerationError

if TYPE_CHECKING:
    from ragzip.generators.simulated import PrefillModel


@dataclass(frozen=True)
class Admission:
    """One admitted request.

    Attributes:
        wait_s: Seconds from admission to its first token (queued prefill, its own prefill, and
            the overhead).
        kv_tokens: KV-cache tokens it holds until :meth:`SharedEngine.release`.
        queued_s: Seconds it waited for KV-cache room before admission.
    """

    wait_s: float
    kv_tokens: int
    queued_s: float = 0.0


class SharedEngine:
    """Prefill queue, decode batch and KV cache of one simulated GPU (thread-safe).

    Args:
        model: The timing and capacity to simulate.
        clock: Seconds, monotonic (``time.monotonic``; tests pass their own).
    """

    def __init__(self, model: PrefillModel, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self._clock = clock
        self._cond = threading.Condition()
        self._prefill_free_at = -math.inf
        self._kv_in_use = 0
        self._waiting: deque[object] = deque()
        self._decoding = 0

    def admit(self, prompt_tokens: int, max_new: int, timeout: float | None = None) -> Admission:
        """Admit a request (waiting for KV-cache room, in arrival order) and schedule its
        prefill.

        Raises:
            GenerationError: No room within ``timeout`` seconds.
        """
        need = prompt_tokens + max_new
        capacity = self.model.kv_tokens
        me = object()
        with self._cond:
            arrived = self._clock()
            self._waiting.append(me)

            def fits() -> bool:
                room = capacity == 0 or self._kv_in_use == 0 or self._kv_in_use + need <= capacity
                return self._waiting[0] is me and room

            try:
                if not self._cond.wait_for(fits, timeout):
                    msg = f"no KV-cache room for {need} tokens within {timeout:g} s"
                    raise GenerationError(msg)
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()
            self._kv_in_use += need
            now = self._clock()
            start = max(now, self._prefill_free_at)
            prefill = self.model.per_token_s * prompt_tokens
            self._prefill_free_at = start + prefill
        return Admission(start - now + prefill + self.model.overhead_s, need, now - arrived)

    def release(self, admission: Admission) -> None:
        """Free the KV-cache tokens of a finished (or abandoned) request."""
        with self._cond:
            self._kv_in_use -= admission.kv_tokens
            self._cond.notify_all()

    def decoding(self, delta: int) -> None:
        """One more (``+1``) or one fewer (``-1``) request in the decode batch."""
        with self._cond:
            self._decoding += delta

    def decode_step_s(self) -> float:
        """Seconds of one decode step with the batch running now."""
        with self._cond:
            others = max(0, self._decoding - 1)
        return self.model.decode_s + self.model.decode_batch_s * others

    @property
    def kv_in_use(self) -> int:
        """KV-cache tokens held now."""
        with self._cond:
            return self._kv_in_use
