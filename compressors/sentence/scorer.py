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

from ragzip.compressors.sentence.features import (
    Encoded,
    Featurizer,
    InputLimits,
    PassageSentences,
)
from ragzip.compressors.sentence.model import (
    WEIGHTS_DIR,
    SentenceClassifier,
    length_batches,
    load_base,
    pad_batch,
    read_config,
)
from ragzip.core.artefacts import check_base, read_tensors, sha256_file
from ragzip.core.cancellation import checkpoint
from ragzip.core.errors import ConfigError
from ragzip.encoders.embedding import FixedPrecision
from ragzip.encoders.onnx import (
    AUTO_ONNX_CLASSIFIER,
    Backend,
    FixedBackend,
    OnnxModel,
    auto_int8_layers,
    classifier_graph,
    resolve_backend,
)


class SentenceScorer:
    """Scores sentences in context with a :class:`SentenceClassifier`, in batches.

    Args:
        model: The classifier (put in eval mode here).
        tokenizer: Its fast tokenizer.
        limits: Input segment lengths (must match what the model was trained with).
        threshold: Default probability threshold of ``adaptive`` mode.
        device: Device to run on.
        graph: The classifier exported to ONNX (:func:`load_scorer`): when given, batches run
            on it instead of ``model``.
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
        graph: OnnxModel | None = None,
        cache_size: int = 0,
    ) -> None:
        self.model = model.to(device).eval()
        self.graph = graph
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
        within a few thousandths of float32, slower on CPUs without it. With an ONNX graph the
        graph's own precision applies.
        """
        probs = np.zeros(len(encoded), dtype=np.float32)
        if not encoded:
            return probs
        if self.graph is not None:
            return self._predict_graph(encoded, probs)
        batches = length_batches([len(e.input_ids) for e in encoded], batch_size)
        device_type = torch.device(self.device).type
        autocast = torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
        )
        with torch.inference_mode(), autocast:
            for batch in batches:
                checkpoint()  # a cancelled request stops between batches
                padded = pad_batch([encoded[i] for i in batch], self.device)
                probs[batch] = torch.sigmoid(self.model(padded).float()).cpu().numpy()
        return probs

    def _predict_graph(self, encoded: Sequence[Encoded], probs: np.ndarray) -> np.ndarray:
        """Each input alone, unpadded, through the ONNX graph (faster on the CPU than padded
        batches, and an int8 graph then scores a sentence the same whatever it is batched
        with)."""
        assert self.graph is not None
        for i, e in enumerate(encoded):
            if i % 32 == 0:
                checkpoint()  # a cancelled request stops here
            ids = np.asarray(e.input_ids, dtype=np.int64)[None, :]
            logit = self.graph.run(
                input_ids=ids,
                token_type_ids=np.asarray(e.token_type_ids, dtype=np.int64)[None, :],
                segment_ids=np.asarray(e.segment_ids, dtype=np.int64)[None, :],
            )
            probs[i] = 1.0 / (1.0 + np.exp(-float(logit.reshape(-1)[0])))
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


@lru_cache(maxsize=8)
def load_scorer(
    folder: str | None = None,
    device: str | None = None,
    backend: Backend = "auto",
    precision: str = "auto",
) -> SentenceScorer:
    """The trained classifier in ``folder`` (default: the shipped one) over MiniLM, cached;
    where ``backend`` resolves to ONNX Runtime (:func:`~ragzip.encoders.onnx.resolve_backend`)
    it runs as a graph exported from those weights on first use (a pinned ``precision`` keeps
    torch).

    Raises:
        ModelError: Missing or mismatched weights (e.g. another MiniLM release as base).
    """
    from ragzip.weights import minilm_dir, resolve_device

    path = Path(folder) if folder else WEIGHTS_DIR
    config = read_config(path)
    model, tokenizer, base_sha = load_base(int(config["n_frozen"]), int(config["head_hidden"]))
    check_base(
        config, minilm_dir() / "model.safetensors", base_name="all-MiniLM-L6-v2", folder=path
    )
    model.load_trained_state(read_tensors(path))
    dev = resolve_device(device)
    fixed = resolve_backend(backend, dev, precision, onnx=AUTO_ONNX_CLASSIFIER)
    graph = None
    if fixed != "torch":
        weights = sha256_file(path / "model.safetensors")
        int8_layers = auto_int8_layers(backend, fixed, model.n_frozen)
        graph = _export_classifier(model.eval(), (base_sha, weights), fixed, int8_layers)
    return SentenceScorer(
        model,
        tokenizer,
        limits=InputLimits(**config["limits"]),
        threshold=float(config["threshold"]),
        device=dev,
        graph=graph,
    )


def _export_classifier(
    model: SentenceClassifier,
    digests: Sequence[str],
    backend: FixedBackend,
    int8_layers: int | None = None,
) -> OnnxModel:
    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, segment_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.model.unpadded(input_ids, token_type_ids, segment_ids)

    return classifier_graph(
        Graph(),
        name="sentence-classifier",
        digests=digests,
        backend=backend,
        inputs=["input_ids", "token_type_ids", "segment_ids"],
        int8_layers=int8_layers,
    )
