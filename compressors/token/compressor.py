"""The ``token`` compressor: keep the words a query-aware token classifier scores highest, exactly
within the budget (LLMLingua-2 style); see :mod:`ragzip.compressors.token`."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np

from ragzip.compressor import (
    REMEMBERED_REQUESTS,
    CompressionOutput,
    CompressionRequest,
    Compressor,
)
from ragzip.compressors.kept_whole import named_values, value_units
from ragzip.compressors.token.model import (
    Quantize,
    Window,
    _require_torch,
    cut_windows,
    load_token_classifier,
)
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.token.words import forced_mask, unit_maximum
from ragzip.compressors.units import place_penalty, split_words
from ragzip.core.cancellation import checkpoint
from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Interval
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span
from ragzip.encoders.onnx import Backend


class TokenCompressor(Compressor):
    """Keep the words a query-aware token classifier ranks highest, within the budget.

    See the module docstring for the method (LLMLingua-2, Pan et al., 2024, made query-aware
    with LongLLMLingua's contrastive labels, Jiang et al., 2024).

    Args:
        config: Settings; see :class:`TokenCompressor.Config`.
        counter: Token counter of the generator's tokenizer (budgets are counted in it).
        model: A ``BertForTokenClassification``-like model (logits ``(batch, seq, 2)``); the
            shipped one when ``None``.
        tokenizer: Its fast tokenizer (needed when ``model`` is given).
    """

    name: ClassVar[str] = "token"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`TokenCompressor`.

        Attributes:
            weights: Folder of a trained artefact; ``None`` for the shipped one.
            force_keep: Strings always kept when the budget allows (words overlapping them).
            force_patterns: Also force identifiers: UUIDs, e-mails, URLs, code identifiers.
            force_numbers: Also force every word holding a digit (see :data:`NUMBER_PATTERN`
                for why this is off by default).
            whole_values: Keep or drop numbers written over several words, and a key with its
                value, as one unit (:func:`~ragzip.compressors.kept_whole.value_units`), ranked by
                their best word: a kept label keeps its value, and a value is never halved;
                and force the units holding a number the question names
                (:func:`named_values`). ``False`` ranks single words.
            max_window: Encoder tokens per window, question and special tokens included.
            max_query_tokens: Question tokens kept in each window.
            batch_size: Windows per forward pass.
            length_bucketing: Sort windows by length before batching (less padding).
            drop_separators: Drop a separator-only word that follows another kept one.
            quantize: ``"int8"`` for torch's dynamic int8 quantisation of the linear layers
                (CPU; the torch backend).
            backend: What runs the default classifier on the CPU: ``"auto"`` (where the CPU
                has no AMX, ONNX Runtime with int8 weights in the four frozen MiniLM layers and
                float32 in the two trained ones,
                :data:`~ragzip.encoders.onnx.AUTO_ONNX_CLASSIFIER`; torch elsewhere; see
                :func:`~ragzip.encoders.onnx.resolve_backend`), ``"torch"``, ``"onnx"``
                (float32) or ``"onnx-int8"`` (int8 weights in every layer).
            device: Torch device; ``None`` picks the best.
            cache_size: Requests (question and passages) whose word probabilities are
                remembered, so a question asked again over the same passages, or one context
                compressed at several budgets, is scored once; 0 turns the cache off.
            position_weight: The retriever's order as a prior: a word of the passage at place
                ``i`` (0 for the first) ranks as its probability minus ``position_weight ·
                log2(1 + i)`` (forced words stay above all others); 0 ranks every passage
                alike. See the module docstring for the choice.
        """

        weights: str | None = None
        force_keep: tuple[str, ...] = ()
        force_patterns: bool = True
        force_numbers: bool = False
        whole_values: bool = True
        max_window: Annotated[int, Interval(ge=32, le=512)] = 512
        max_query_tokens: Annotated[int, Interval(ge=1, le=480)] = 64
        batch_size: Annotated[int, Interval(ge=1, le=4096)] = 16
        length_bucketing: bool = True
        drop_separators: bool = True
        quantize: Quantize = "none"
        backend: Backend = "auto"
        device: str | None = None
        cache_size: Annotated[int, Interval(ge=0, le=1_000_000)] = REMEMBERED_REQUESTS
        position_weight: Annotated[float, Interval(ge=0, le=100)] = 0.2

        def __post_init__(self) -> None:
            keep = self.force_keep
            if isinstance(keep, str) or not all(isinstance(s, str) for s in keep):
                msg = f"force_keep must be a list of strings, got {keep!r}"
                raise ConfigError(msg)
            object.__setattr__(self, "force_keep", tuple(keep))
            super().__post_init__()
            if self.max_window - self.max_query_tokens - 3 < 16:
                msg = (
                    f"max_window ({self.max_window}) leaves fewer than 16 passage tokens after "
                    f"max_query_tokens ({self.max_query_tokens})"
                )
                raise ConfigError(msg)

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        model: Any | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or TokenCompressor.Config()
        if model is None:
            model, loaded_tok = load_token_classifier(
                self.config.weights, self.config.quantize, self.config.device, self.config.backend
            )
            tokenizer = tokenizer or loaded_tok
        elif tokenizer is None:
            msg = "a tokenizer must be given with the model"
            raise ConfigError(msg)
        if not getattr(tokenizer, "is_fast", False):
            msg = "the token compressor needs a fast tokenizer (one that returns offsets)"
            raise ConfigError(msg)
        self.model = model
        self.tokenizer = tokenizer
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], list[np.ndarray]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        texts = [p.text for p in request.passages]
        t0 = time.perf_counter()
        if request.budget_tokens >= request.original_tokens:
            return CompressionOutput(spans=[[(0, len(t))] if t else [] for t in texts])
        words = [split_words(t) for t in texts]
        if request.sent_limit <= 0:
            return CompressionOutput(spans=[[] for _ in texts])
        probs = self._cached_probabilities(request.query, texts, words)
        t1 = time.perf_counter()
        units = words
        if self.config.whole_values:
            units = [value_units(t, w) for t, w in zip(texts, words, strict=True)]
            probs = [unit_maximum(w, u, p) for w, u, p in zip(words, units, probs, strict=True)]
        priority = self.priority(
            request.query, texts, units, probs, position_weight=self.config.position_weight
        )
        spans = select_words(
            texts,
            units,
            priority,
            request.budget_tokens,
            self.counter,
            drop_separators=self.config.drop_separators,
            framing=request.framing,
            sent_limit=request.sent_limit,
        )
        t2 = time.perf_counter()
        return CompressionOutput(spans=spans, timings={"score": t1 - t0, "select": t2 - t1})

    def priority(
        self,
        query: str,
        texts: Sequence[str],
        units: Sequence[Sequence[Span]],
        probs: Sequence[np.ndarray],
        *,
        position_weight: float = 0.0,
    ) -> list[np.ndarray]:
        """Each unit's rank key: its probability, less ``position_weight · log2(1 + i)`` in the
        passage at place ``i``; a unit that must be kept (a forced string or pattern, a number
        the question names) gets ``1 + probability`` instead, above every other."""
        named = named_values(query) if self.config.whole_values else None
        return [
            np.where(
                forced_mask(
                    t,
                    u,
                    strings=self.config.force_keep,
                    named=named,
                    patterns=self.config.force_patterns,
                    numbers=self.config.force_numbers,
                ),
                1.0 + p,
                p - place_penalty(i, position_weight),
            )
            for i, (t, u, p) in enumerate(zip(texts, units, probs, strict=True))
        ]

    # -- scoring ---------------------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every remembered request (the next sight of any request is scored again)."""
        with self._cache_lock:
            self._cache.clear()

    def _cached_probabilities(
        self, query: str, texts: Sequence[str], words: Sequence[Sequence[Span]]
    ) -> list[np.ndarray]:
        size = self.config.cache_size
        if not size:
            return self.word_probabilities(query, texts, words)
        key = (query, tuple(texts))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return [p.copy() for p in hit]
        probs = self.word_probabilities(query, texts, words)
        with self._cache_lock:
            self._cache[key] = [p.copy() for p in probs]
            while len(self._cache) > size:
                self._cache.popitem(last=False)
        return probs

    def word_probabilities(
        self, query: str, texts: Sequence[str], words: Sequence[Sequence[Span]] | None = None
    ) -> list[np.ndarray]:
        """Keep-probability of every word of every passage for ``query``.

        Args:
            query: The question.
            texts: Passage texts.
            words: Word spans of each passage (:func:`split_words` when ``None``).

        Returns:
            One array per passage, the mean keep-probability of each word's subword tokens
            (0 for a word the encoder's tokenizer gives no token).
        """
        if words is None:
            words = [split_words(t) for t in texts]
        token_probs, offsets = self.token_probabilities(query, texts)
        out: list[np.ndarray] = []
        for w, tp, offs in zip(words, token_probs, offsets, strict=True):
            out.append(aggregate_words(w, offs, tp))
        return out

    def token_probabilities(
        self, query: str, texts: Sequence[str]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Keep-probability of each encoder token of each passage, and the tokens' offsets."""
        torch = _require_torch()
        cfg = self.config
        tok = self.tokenizer
        q_ids = tok(query, add_special_tokens=False)["input_ids"][: cfg.max_query_tokens]
        enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        capacity = cfg.max_window - len(q_ids) - 3
        windows: list[Window] = []
        ids_per_passage: list[list[int]] = enc["input_ids"]
        offsets = [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in enc["offset_mapping"]]
        for i, (text, offs) in enumerate(zip(texts, enc["offset_mapping"], strict=True)):
            windows.extend(cut_windows(text, offs, capacity, i))
        probs = [np.zeros(len(ids), dtype=np.float32) for ids in ids_per_passage]
        if not windows:
            return probs, offsets
        head = [tok.cls_token_id, *q_ids, tok.sep_token_id]
        lengths = [len(head) + w.end - w.start + 1 for w in windows]
        order = (
            sorted(range(len(windows)), key=lengths.__getitem__)
            if cfg.length_bucketing
            else list(range(len(windows)))
        )
        device = next(self.model.parameters()).device if _has_params(self.model) else None
        with torch.inference_mode():
            for b in range(0, len(order), cfg.batch_size):
                checkpoint()  # a cancelled request stops between batches
                batch = order[b : b + cfg.batch_size]
                width = max(lengths[j] for j in batch)
                ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
                types = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, j in enumerate(batch):
                    w = windows[j]
                    row = [*head, *ids_per_passage[w.passage][w.start : w.end], tok.sep_token_id]
                    ids[r, : len(row)] = torch.tensor(row)
                    types[r, len(head) : len(row)] = 1
                    mask[r, : len(row)] = 1
                if device is not None:
                    ids, types, mask = ids.to(device), types.to(device), mask.to(device)
                logits = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
                p = torch.softmax(logits.float(), dim=-1)[..., 1].cpu().numpy()
                for r, j in enumerate(batch):
                    w = windows[j]
                    probs[w.passage][w.start : w.end] = p[
                        r, len(head) : len(head) + w.end - w.start
                    ]
        return probs, offsets


def _has_params(model: Any) -> bool:
    try:
        next(model.parameters())
    except (StopIteration, AttributeError):
        return False
    return True


def aggregate_words(
    words: Sequence[Span], offsets: np.ndarray, token_probs: np.ndarray
) -> np.ndarray:
    """Mean of the token probabilities of each word (a token belongs to the word holding its
    first character); 0 for words without tokens."""
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if len(offsets) == 0:
        return np.zeros(n, dtype=np.float64)
    starts = np.fromiter((s for s, _ in words), dtype=np.int64, count=n)
    ends = np.fromiter((e for _, e in words), dtype=np.int64, count=n)
    tok_start = offsets[:, 0]
    owner = np.searchsorted(starts, tok_start, side="right") - 1
    valid = (owner >= 0) & (tok_start < ends[np.clip(owner, 0, n - 1)])
    owner = owner[valid]
    sums = np.bincount(owner, weights=token_probs[valid], minlength=n)
    counts = np.bincount(owner, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
