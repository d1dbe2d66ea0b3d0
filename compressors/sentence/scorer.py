"""Scoring sentences with a loaded classifier: batches by length, results cached per request."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.artefacts import check_base, read_tensors
from ragzip.cancellation import checkpoint
from ragzip.compressors.sentence.features import Encoded, Featurizer, InputLimits, PassageSentences
from ragzip.compressors.sentence.model import (
    WEIGHTS_DIR,
    SentenceClassifier,
    length_batches,
    load_base,
    pad_batch,
    read_config,
)
from ragzip.embedding import FixedPrecision
from ragzip.errors import ConfigError


class SentenceScorer:
    """Scores sentences in context with a :class:`SentenceClassifier`, in batches.

    Args:
        model: The classifier (put in eval mode here).
        tokenizer: Its fast tokenizer.
        limits: Input segment lengths (must match what the model was trained with).
        threshold: Default probability threshold of ``adaptive`` mode.
        device: Device to run on.
        cache_size: Requests (question and passages) whose probabilities are remembered, so
            the same context compressed at several budgets or in both modes is scored once;
            0 remembers none. :meth:`reserve_cache` raises it.
    """

    def __init__(
        self,
        model: SentenceClassifier,
        tokenizer: Any,
        *,
        limits: InputLimits | None = None,
        threshold: float = 0.5,
        device: str = "cpu",
        cache_size: int = 0,
    ) -> None:
        self.model = model.to(device).eval()
        self.featurizer = Featurizer(tokenizer, limits or InputLimits())
        self.threshold = float(threshold)
        self.device = device
        self.cache_size = 0
        self._cache: OrderedDict[bytes, list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.reserve_cache(cache_size)

    def reserve_cache(self, size: int) -> None:
        """Remember the probabilities of at least ``size`` requests (the cache never shrinks).

        The cache belongs to the scorer, so compressors sharing one scorer share it.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            msg = f"cache size must be an int >= 0, got {size!r}"
            raise ConfigError(msg)
        with self._lock:
            self.cache_size = max(self.cache_size, size)

    def clear_cache(self) -> None:
        """Forget every remembered request (the next sight of any request is scored again)."""
        with self._lock:
            self._cache.clear()

    @property
    def limits(self) -> InputLimits:
        """Input segment lengths."""
        return self.featurizer.limits

    def score(
        self,
        query: str,
        passages: Sequence[PassageSentences],
        *,
        batch_size: int = 32,
        precision: FixedPrecision = "float32",
    ) -> list[np.ndarray]:
        """P(useful) of every sentence, one array per passage.

        All sentences of the call are scored together: sorted by input length, padded per batch,
        run under ``torch.inference_mode()``, and put back in order. With a cache
        (``cache_size > 0``) a request scored before is answered from it.
        """
        key = _request_key(query, passages, batch_size, precision) if self.cache_size else None
        if key is not None:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return [p.copy() for p in hit]
        encoded = self.featurizer.encode(query, passages)
        probs = self.predict(encoded, batch_size=batch_size, precision=precision)
        out: list[np.ndarray] = []
        cursor = 0
        for p in passages:
            out.append(probs[cursor : cursor + len(p.sentences)])
            cursor += len(p.sentences)
        if key is not None:
            with self._lock:
                self._cache[key] = [p.copy() for p in out]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def predict(
        self,
        encoded: Sequence[Encoded],
        *,
        batch_size: int = 32,
        precision: FixedPrecision = "float32",
    ) -> np.ndarray:
        """P(useful) of each encoded input, in input order.

        ``precision="bfloat16"`` runs the matrix products under ``torch.autocast`` in bfloat16:
        about twice as fast on CPUs with native bfloat16 (AVX512-BF16, AMX), probabilities
        within a few thousandths of float32, slower on CPUs without it.
        """
        probs = np.zeros(len(encoded), dtype=np.float32)
        if not encoded:
            return probs
        batches = length_batches([len(e.input_ids) for e in encoded], batch_size)
        device_type = torch.device(self.device).type
        autocast = torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
        )
        with torch.inference_mode(), autocast:
            for batch in batches:
                checkpoint()  # a cancelled request stops between batches
                logits = self.model(pad_batch([encoded[i] for i in batch], self.device)).float()
                probs[batch] = torch.sigmoid(logits).cpu().numpy()
        return probs


def _request_key(
    query: str, passages: Sequence[PassageSentences], batch_size: int, precision: str
) -> bytes:
    digest = hashlib.sha256(f"{batch_size}\x00{precision}\x00{query}\x00".encode())
    for p in passages:
        digest.update(f"\x01{p.title}\x02".encode())
        for sentence in p.sentences:
            digest.update(f"{sentence}\x03".encode())
    return digest.digest()


@lru_cache(maxsize=4)
def load_scorer(folder: str | None = None, device: str | None = None) -> SentenceScorer:
    """The trained classifier in ``folder`` (default: the shipped one) over MiniLM, cached.

    Raises:
        ModelError: Missing or mismatched weights (e.g. another MiniLM release as base).
    """
    from ragzip.models import minilm_dir, resolve_device

    path = Path(folder) if folder else WEIGHTS_DIR
    config = read_config(path)
    model, tokenizer, _ = load_base(int(config["n_frozen"]), int(config["head_hidden"]))
    check_base(
        config, minilm_dir() / "model.safetensors", base_name="all-MiniLM-L6-v2", folder=path
    )
    model.load_trained_state(read_tensors(path))
    return SentenceScorer(
        model,
        tokenizer,
        limits=InputLimits(**config["limits"]),
        threshold=float(config["threshold"]),
        device=resolve_device(device),
    )
