"""The ``merge`` compressor: SmolLM2 token embeddings merged into soft tokens, the budget shared
by MIG; see :mod:`ragzip.compressors.merge`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.merge.adapter import WEIGHTS_DIR, Adapter, _load_adapter
from ragzip.compressors.merge.allocation import allocate, group_mig, merge_runs
from ragzip.compressors.mig import Embedder, MIGCompressor
from ragzip.compressors.units import sentence_spans
from ragzip.core.artefacts import shipped_for
from ragzip.core.errors import CompressionError, ConfigError, ModelError
from ragzip.core.fields import Checked, Ge, Interval
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span
from ragzip.encoders.embedding import normalize
from ragzip.generators.target import SoftTarget

logger = logging.getLogger(__name__)

# -------------------------------------------------------------------------------- compressor


@dataclass(frozen=True)
class _Group:
    passage: int
    start: int  # token positions within the passage
    end: int
    verbatim: bool = False  # kept as the model's own token embeddings, not merged


@dataclass(frozen=True)
class MergedRows:
    """A request's vectors before the adapter.

    Attributes:
        vectors: ``(n, d)`` rows in passage order.
        merged: ``(n,)`` whether each row is a merged run (adapted) or a kept token's own
            embedding (sent as it is).
        counts: Rows per passage.
        timings: Seconds per stage.
    """

    vectors: np.ndarray
    merged: np.ndarray
    counts: tuple[int, ...]
    timings: Mapping[str, float]


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
        embedder: Sentence embedder of the verbatim selection (``text_share > 0``); defaults
            to the packaged all-MiniLM-L6-v2.
        features: Feature cache of the verbatim selection (the proxy shares its own).

    Raises:
        ConfigError: Only one of model and tokenizer given, or a slow tokenizer.
        ModelError: The adapter cannot be read or does not fit the model.
    """

    name: ClassVar[str] = "merge"
    soft: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config(Checked):
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
            text_share: Share of the budget spent on whole sentences kept verbatim (as the
                model's own token embeddings), chosen by :mod:`ragzip.compressors.mig`; the
                rest of the budget merges the other sentences. 0 merges everything (COMI);
                the default 0.5 is what the shipped adapters were trained with, and answered
                far better with small readers.
        """

        redundancy_weight: Annotated[float, Ge(0)] = 0.1
        sharpness: Annotated[float, Ge(0)] = 1.0
        token_sharpness: Annotated[float, Ge(0)] = 5.0
        max_group_tokens: Annotated[int, Ge(1)] = 48
        keep_norm: bool = True
        adapter: str | None = None
        generator: str | None = None
        text_share: Annotated[float, Interval(ge=0, le=1)] = 0.5

        def __post_init__(self) -> None:
            super().__post_init__()
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
        embedder: Embedder | None = None,
        features: FeatureCache | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or MergeCompressor.Config()
        self.selector: MIGCompressor | None = None
        if self.config.text_share > 0:
            self.selector = MIGCompressor(counter=counter, embedder=embedder, features=features)
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
        trained = None if adapter is None else adapter.text_share
        if trained is not None and not math.isclose(trained, self.config.text_share):
            logger.warning(
                "the merge adapter was trained with text_share=%g, used with text_share=%g",
                trained,
                self.config.text_share,
            )
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

    def _groups(
        self, passage: int, text: str, offsets: Sequence[tuple[int, int]], keep: np.ndarray
    ) -> list[_Group]:
        """Groups of one passage's tokens in order: runs of kept tokens (verbatim), and sentence
        groups of the others, each at most ``max_group_tokens`` long.

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
            if (
                t < len(offsets)
                and keep[t] == keep[begin]
                and (sentence is None or sentence[t] == sentence[begin])
            ):
                continue
            if keep[begin]:
                groups.append(_Group(passage, begin, t, verbatim=True))
            else:
                groups.extend(_Group(passage, a, min(a + size, t)) for a in range(begin, t, size))
            begin = t
        return groups

    def _kept(
        self, request: CompressionRequest, encoded: Sequence[tuple[list[int], list[Span]]]
    ) -> list[np.ndarray]:
        """Which tokens of each passage stay verbatim: those overlapping a sentence MIG
        keeps within ``text_share`` of the budget (never more tokens than the budget)."""
        keep = [np.zeros(len(ids), dtype=bool) for ids, _ in encoded]
        text_budget = math.floor(self.config.text_share * request.budget_tokens)
        if self.selector is None or text_budget <= 0:
            return keep
        spans = self.selector.compress_request(replace(request, budget_tokens=text_budget)).spans
        assert spans is not None  # a text compressor returns spans
        for mask, (_, offsets), kept in zip(keep, encoded, spans, strict=True):
            bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            for a, b in kept:  # a token overlapping a kept span (its leading space may not)
                mask |= (bounds[:, 1] > a) & (bounds[:, 0] < b)
        over = sum(int(m.sum()) for m in keep) - request.budget_tokens
        for mask in reversed(keep):  # tokenised in place, kept text can outgrow its count
            if over <= 0:
                break
            on = np.flatnonzero(mask)[::-1][:over]
            mask[on] = False
            over -= len(on)
        return keep

    def token_states(self, ids: Sequence[int]) -> np.ndarray:
        """Input embeddings ``(n, d)`` of token ids."""
        return self.table[np.asarray(ids, dtype=np.int64)]

    def _pool(self, ids: Sequence[int]) -> np.ndarray:
        states = self.token_states(ids) - self.center
        return normalize(states.mean(axis=0)[None, :])[0]

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        rows = self.rows(request)
        vectors = rows.vectors
        t0 = time.perf_counter()
        if self.adapter is not None and rows.merged.any():
            vectors = vectors.copy()
            vectors[rows.merged] = self.apply_adapter(vectors[rows.merged])
        if not np.isfinite(vectors).all():
            msg = "merging produced non-finite vectors"
            raise CompressionError(msg)
        timings = dict(rows.timings)
        timings["adapt"] = time.perf_counter() - t0
        timings["text_vectors"] = float(len(rows.merged) - int(rows.merged.sum()))
        return CompressionOutput(
            embeddings=np.ascontiguousarray(vectors, dtype=np.float32),
            vectors_per_passage=rows.counts,
            timings=timings,
        )

    def rows(self, request: CompressionRequest) -> MergedRows:
        """The request's vectors before the adapter, and which of them are merged (the rest
        are kept tokens' own embeddings): what ``_compress`` adapts and the adapter's trainer
        reads."""
        t0 = time.perf_counter()
        cfg = self.config
        encoded = [self._ids(p.text) for p in request.passages]
        counts = [0] * len(request.passages)
        groups: list[_Group] = []
        if request.budget_tokens > 0:
            keep = self._kept(request, encoded)
            for i, (_, offsets) in enumerate(encoded):
                groups += self._groups(i, request.passages[i].text, offsets, keep[i])
        t_select = time.perf_counter()
        if not groups:
            return MergedRows(
                np.zeros((0, self.dim), dtype=np.float32),
                np.zeros(0, dtype=bool),
                tuple(counts),
                {"select": t_select - t0},
            )
        soft = [g for g in groups if not g.verbatim]
        n_text = sum(g.end - g.start for g in groups if g.verbatim)
        q_ids, _ = self._ids(request.query)
        query = self._pool(q_ids) if q_ids else np.zeros(self.dim, dtype=np.float32)
        states = [self.token_states(ids) for ids, _ in encoded]
        centred = [s - self.center for s in states]
        alloc: dict[_Group, int] = {}
        if soft:
            pooled = np.stack([centred[g.passage][g.start : g.end].mean(axis=0) for g in soft])
            mig = group_mig(query, pooled, cfg.redundancy_weight)
            shares = allocate(
                [g.end - g.start for g in soft], mig, request.budget_tokens - n_text, cfg.sharpness
            )
            alloc = dict(zip(soft, shares, strict=True))
        t_alloc = time.perf_counter()
        pieces: list[np.ndarray] = []
        merged: list[bool] = []
        for g in groups:
            m = g.end - g.start if g.verbatim else alloc[g]
            if m == 0:
                continue
            block = states[g.passage][g.start : g.end]
            if not g.verbatim:
                block = merge_runs(
                    block,
                    centred[g.passage][g.start : g.end],
                    query,
                    m,
                    redundancy_weight=cfg.redundancy_weight,
                    token_sharpness=cfg.token_sharpness,
                    keep_norm=cfg.keep_norm,
                )
            pieces.append(block)
            merged += [not g.verbatim] * m
            counts[g.passage] += m
        return MergedRows(
            np.ascontiguousarray(np.concatenate(pieces, axis=0), dtype=np.float32),
            np.asarray(merged, dtype=bool),
            tuple(counts),
            {
                "select": t_select - t0,
                "group": t_alloc - t_select,
                "merge": time.perf_counter() - t_alloc,
            },
        )

    def apply_adapter(self, vectors: np.ndarray) -> np.ndarray:
        """The adapter's map of ``(n, d)`` merged vectors (identity without an adapter)."""
        if self.adapter is None:
            return vectors
        with torch.inference_mode():
            out = self.adapter(torch.from_numpy(np.asarray(vectors, dtype=np.float32)))
        return np.asarray(out.numpy(), dtype=np.float32)
