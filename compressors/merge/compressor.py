"""The ``merge`` compressor: SmolLM2 token embeddings merged into soft tokens, the budget shared
by MIG; see :mod:`ragzip.compressors.merge`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ragzip.artefacts import shipped_for
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.merge.adapter import WEIGHTS_DIR, Adapter, _load_adapter
from ragzip.compressors.merge.allocation import allocate, group_mig, merge_runs
from ragzip.compressors.units import sentence_spans
from ragzip.embedding import normalize
from ragzip.errors import CompressionError, ConfigError, ModelError
from ragzip.generators.target import SoftTarget
from ragzip.tokenization import TokenCounter

# -------------------------------------------------------------------------------- compressor


@dataclass(frozen=True)
class _Group:
    passage: int
    start: int  # token positions within the passage
    end: int


class MergeCompressor(Compressor):
    """COMI-style coarse-to-fine merging of SmolLM2 token embeddings into soft tokens.

    Args:
        config: λ, sharpness of the reallocation and of the token weights, group size, adapter.
        counter: Token counter of the generator's tokenizer (budgets are counted in it).
        model: A loaded generator (anything with ``get_input_embeddings()``) to read the table
            from; by default only the table and tokenizer of ``config.generator`` are read
            (:func:`ragzip.generators.target.load_table`).
        tokenizer: The model's fast tokenizer (token offsets are needed to find sentences).
        adapter: A trained :class:`Adapter` to apply instead of the one ``config.adapter``
            names.

    Raises:
        ConfigError: Only one of model and tokenizer given, or a slow tokenizer.
        ModelError: The adapter cannot be read or does not fit the model.
    """

    name: ClassVar[str] = "merge"
    soft: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config:
        """Settings of :class:`MergeCompressor`.

        Attributes:
            redundancy_weight: λ of both the group and the token MIG (0 = relevance only).
            sharpness: How strongly the group MIG (standardised) moves the reallocation;
                0 shares the budget in proportion to group length (uniform merging).
            token_sharpness: Inverse temperature of the token weights inside a run; 0 is a
                plain average.
            max_group_tokens: Longest group; longer sentences are cut into several groups.
            keep_norm: Rescale merged vectors to their tokens' weighted mean norm.
            adapter: Folder of a trained adapter, ``"default"`` for the one shipped for the
                generator, or ``None`` for none (training-free).
            generator: The generator the vectors are for (``smollm2``, ``gemma3-270m``, a
                model folder or ``.gguf``; see :mod:`ragzip.generators.local`); ``None`` is
                the embedded SmolLM2. Only its tokenizer and input-embedding table are read.
        """

        redundancy_weight: float = 0.1
        sharpness: float = 1.0
        token_sharpness: float = 5.0
        max_group_tokens: int = 48
        keep_norm: bool = True
        adapter: str | None = None
        generator: str | None = None

        def __post_init__(self) -> None:
            for key in ("redundancy_weight", "sharpness", "token_sharpness"):
                value = getattr(self, key)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    msg = f"{key} must be a number, got {value!r}"
                    raise ConfigError(msg)
                if not math.isfinite(value) or value < 0:
                    msg = f"{key} must be a finite number >= 0, got {value!r}"
                    raise ConfigError(msg)
            size = self.max_group_tokens
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                msg = f"max_group_tokens must be an int >= 1, got {size!r}"
                raise ConfigError(msg)
            if not isinstance(self.keep_norm, bool):
                msg = f"keep_norm must be a bool, got {self.keep_norm!r}"
                raise ConfigError(msg)
            if self.adapter is not None and (
                not isinstance(self.adapter, str) or not self.adapter.strip()
            ):
                msg = f"adapter must be a folder, 'default' or None, got {self.adapter!r}"
                raise ConfigError(msg)

        def adapter_dir(self, target: SoftTarget) -> Path | None:
            """The adapter folder, ``None`` when there is none."""
            if self.adapter is None:
                return None
            if self.adapter == "default":
                return shipped_for(WEIGHTS_DIR, target.name, target.identity, what="merge adapter")
            return Path(self.adapter).expanduser()

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        model: Any = None,
        tokenizer: Any = None,
        adapter: Adapter | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or MergeCompressor.Config()
        if (model is None) != (tokenizer is None):
            msg = "give both model and tokenizer, or neither (for the configured generator)"
            raise ConfigError(msg)
        self.target: SoftTarget
        if model is None:
            from ragzip.generators.local import load_tokenizer
            from ragzip.generators.target import load_table

            table = load_table(self.config.generator)
            tokenizer = load_tokenizer(self.config.generator)
            self.target = table.target
            weight = table.weight
        else:
            from ragzip.generators.target import table_target

            module = model.get_input_embeddings()
            scale = float(getattr(module, "embed_scale", 1.0))  # Gemma scales its embeddings
            weight = module.weight.detach().float().cpu().numpy() * scale
            name = Path(str(getattr(model, "name_or_path", ""))).name or type(model).__name__
            self.target = table_target(name, weight)
        if not getattr(tokenizer, "is_fast", False):
            msg = "merge needs a fast tokenizer (one that returns character offsets)"
            raise ConfigError(msg)
        self.tokenizer = tokenizer
        self.table: np.ndarray = np.ascontiguousarray(weight, dtype=np.float32)
        self.center: np.ndarray = self.table.mean(axis=0)
        if adapter is None and self.config.adapter is not None:
            folder = self.config.adapter_dir(self.target)
            assert folder is not None
            adapter = _load_adapter(str(folder.resolve()), self.target)
        if adapter is not None and adapter.dim != self.table.shape[1]:
            msg = f"the adapter maps {adapter.dim}-d vectors, the model's are {self.table.shape[1]}"
            raise ModelError(msg)
        self.adapter = adapter

    @property
    def dim(self) -> int:
        """Width of the vectors produced (the generator's input-embedding width)."""
        return int(self.table.shape[1])

    def _ids(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [int(i) for i in enc["input_ids"]], [
            (int(s), int(e)) for s, e in enc["offset_mapping"]
        ]

    def _groups(self, passage: int, text: str, offsets: Sequence[tuple[int, int]]) -> list[_Group]:
        """Sentence groups of one passage's tokens, each at most ``max_group_tokens`` long.

        A token belongs to the last sentence starting at or before its first character. A
        passage of whitespace only has no groups (nothing worth a vector).
        """
        if not text.strip():
            return []
        starts = np.asarray([s for s, _ in sentence_spans(text)], dtype=np.int64)
        token_starts = np.asarray([s for s, _ in offsets], dtype=np.int64)
        sentence = np.searchsorted(starts, token_starts, side="right") if len(starts) else None
        size = self.config.max_group_tokens
        groups: list[_Group] = []
        begin = 0
        for t in range(1, len(offsets) + 1):
            if t < len(offsets) and (sentence is None or sentence[t] == sentence[begin]):
                continue
            groups.extend(_Group(passage, a, min(a + size, t)) for a in range(begin, t, size))
            begin = t
        return groups

    def token_states(self, ids: Sequence[int]) -> np.ndarray:
        """Input embeddings ``(n, d)`` of token ids."""
        return self.table[np.asarray(ids, dtype=np.int64)]

    def _pool(self, ids: Sequence[int]) -> np.ndarray:
        states = self.token_states(ids) - self.center
        return normalize(states.mean(axis=0)[None, :])[0]

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        cfg = self.config
        encoded = [self._ids(p.text) for p in request.passages]
        groups = [
            g
            for i, (_, off) in enumerate(encoded)
            for g in self._groups(i, request.passages[i].text, off)
        ]
        counts = [0] * len(request.passages)
        if not groups or request.budget_tokens <= 0:
            return CompressionOutput(
                embeddings=np.zeros((0, self.dim), dtype=np.float32),
                vectors_per_passage=counts,
                timings={"group": time.perf_counter() - t0},
            )
        q_ids, _ = self._ids(request.query)
        query = self._pool(q_ids) if q_ids else np.zeros(self.dim, dtype=np.float32)
        states = [self.token_states(ids) for ids, _ in encoded]
        centred = [s - self.center for s in states]
        pooled = np.stack([centred[g.passage][g.start : g.end].mean(axis=0) for g in groups])
        t_group = time.perf_counter()
        mig = group_mig(query, pooled, cfg.redundancy_weight)
        alloc = allocate(
            [g.end - g.start for g in groups], mig, request.budget_tokens, cfg.sharpness
        )
        t_alloc = time.perf_counter()
        pieces: list[np.ndarray] = []
        for g, m in zip(groups, alloc, strict=True):
            if m == 0:
                continue
            pieces.append(
                merge_runs(
                    states[g.passage][g.start : g.end],
                    centred[g.passage][g.start : g.end],
                    query,
                    m,
                    redundancy_weight=cfg.redundancy_weight,
                    token_sharpness=cfg.token_sharpness,
                    keep_norm=cfg.keep_norm,
                )
            )
            counts[g.passage] += m
        vectors = np.concatenate(pieces, axis=0)
        if self.adapter is not None:
            vectors = self.apply_adapter(vectors)
        if not np.isfinite(vectors).all():
            msg = "merging produced non-finite vectors"
            raise CompressionError(msg)
        t_merge = time.perf_counter()
        return CompressionOutput(
            embeddings=np.ascontiguousarray(vectors, dtype=np.float32),
            vectors_per_passage=counts,
            timings={
                "group": t_group - t0,
                "allocate": t_alloc - t_group,
                "merge": t_merge - t_alloc,
            },
        )

    def apply_adapter(self, vectors: np.ndarray) -> np.ndarray:
        """The adapter's map of ``(n, d)`` merged vectors (identity without an adapter)."""
        if self.adapter is None:
            return vectors
        with torch.inference_mode():
            out = self.adapter(torch.from_numpy(np.asarray(vectors, dtype=np.float32)))
        return np.asarray(out.numpy(), dtype=np.float32)
