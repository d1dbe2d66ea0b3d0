"""Coarse-to-fine token merging by Marginal Information Gain: fewer, denser soft tokens.

After COMI (Tang et al., "COMI: Coarse-to-fine Context Compression via Marginal Information
Gain", ICLR 2026, arXiv:2602.01719), at the scale of SmolLM2-135M-Instruct on a CPU. The
context's token states are SmolLM2's own input embeddings of the passage tokens (the generator's
tokenizer), so merged vectors live in the space the generator reads through ``inputs_embeds``:

1. **Coarse: groups and their MIG.** Each passage is split into sentences (pySBD, the cached
   :func:`ragzip.compressors.units.sentence_spans`); a sentence's tokens form a group (long
   sentences are cut into groups of at most ``max_group_tokens``). A group's state is the mean
   of its *centred* token states (the vocabulary's mean embedding subtracted, so the direction
   every token shares does not dominate cosines); the question is pooled the same way. As in
   COMI, a group's marginal information gain is its relevance to the question minus its
   redundancy with the other groups::

       MIG(g) = cos(q, g) - λ · max_{h : cos(q, h) > cos(q, g)} cos(g, h)

   Redundancy counts only groups more relevant than ``g``, so of two near-duplicates the less
   relevant one pays, not both (the greedy order of :mod:`ragzip.compressors.mig`).
2. **Reallocation.** The budget of ``budget_tokens`` vectors is shared across groups in
   proportion to ``tokens(g) · exp(sharpness · z(g))``, ``z`` the MIG standardised over the
   request's groups: high-MIG groups keep more vectors (up to one per token, i.e. unmerged),
   low-MIG groups are merged harder, and the lowest get none (largest-remainder rounding of the
   water-filled shares).
3. **Fine: merging.** A group of ``n`` tokens given ``m`` vectors is cut into ``m`` runs of
   consecutive tokens (sizes differ by at most one; order kept). Each run becomes one vector,
   the average of its token states weighted by ``softmax(token_sharpness · MIG(t))`` with a
   token's MIG its cosine to the question minus ``λ`` times its cosine to the run's mean. The
   vector is rescaled to the weighted mean norm of its tokens (``keep_norm``): an average of
   differing embeddings is shorter than any of them, and the generator never saw such short
   inputs.

COMI fine-tunes the generator to read merged tokens. Here the generator stays frozen; an
optional small *adapter* (a residual low-rank linear map on the merged vectors, trained by
:mod:`ragzip.training.merge` with gold-answer cross-entropy and self-distillation from the same
model reading the full text) is applied when ``Config.adapter`` names a weights folder
(``"default"``: the shipped ``compressors/weights/merge``). Without it the method is
training-free. The shipped adapter (rank 64, 74k parameters, 0.3 MB) saw 400 train questions
(top-5 hybrid contexts at 4x or 8x) in 23 minutes of one CPU thread; its mean answer
cross-entropy on 40 val questions at 4x and 8x fell from 5.53 (identity) to 3.39. Much of that
gain is the answer *form*: with the adapter SmolLM2 replies with a bare answer, where it
otherwise wraps it in a sentence (see ``training.json`` and ``reports/merge``).

Budgets count vectors: each vector takes one prompt position, exactly as one text token would,
so ``budget_tokens`` of a 4x budget is a quarter of the context's tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ragzip.artefacts import read_artefact_config, read_tensors, write_artefact
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.units import sentence_spans
from ragzip.embedding import normalize
from ragzip.errors import CompressionError, ConfigError, ModelError
from ragzip.tokenization import TokenCounter

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "merge"
"""Folder of the shipped adapter (``config.json``, ``model.safetensors``, ``training.json``)."""
FORMAT = "ragzip-merge-adapter"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------ adapter


class Adapter(nn.Module):
    """Residual low-rank map on merged vectors: ``v + up(down(v / scale)) · scale + bias``.

    ``up`` starts at zero, so an untrained adapter is the identity. Inputs are divided by
    ``scale`` (the typical norm of an input embedding over ``sqrt(dim)``) so the low-rank path
    sees unit-variance entries.

    Args:
        dim: Width of the generator's input embeddings.
        rank: Rank of the correction.
        scale: Typical per-entry scale of the input embeddings.
    """

    def __init__(self, dim: int, rank: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        if rank < 1 or dim < 1:
            msg = f"adapter needs dim >= 1 and rank >= 1, got dim={dim}, rank={rank}"
            raise ConfigError(msg)
        self.dim = dim
        self.rank = rank
        self.scale = float(scale)
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.zeros_(self.up.weight)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Map ``(n, dim)`` merged vectors to ``(n, dim)``."""
        x = vectors / self.scale
        return vectors + (self.up(torch.tanh(self.down(x))) + self.bias) * self.scale

    def save(self, folder: Path, *, extra: dict[str, Any] | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (float32) to ``folder``."""
        config = {"dim": self.dim, "rank": self.rank, "scale": self.scale, **(extra or {})}
        state = {k: v.float() for k, v in self.state_dict().items()}
        write_artefact(folder, kind=FORMAT, version=FORMAT_VERSION, tensors=state, config=config)

    @classmethod
    def load(cls, folder: Path) -> Adapter:
        """Read an adapter written by :meth:`save`.

        Raises:
            ModelError: Missing files, another format, or weights that do not fit.
        """
        config = read_artefact_config(
            folder, kind=FORMAT, version=FORMAT_VERSION, what="merge adapter"
        )
        state = read_tensors(folder)
        try:
            adapter = cls(int(config["dim"]), int(config["rank"]), float(config["scale"]))
            adapter.load_state_dict(state, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            msg = f"the adapter weights in {folder} do not fit its config: {exc}"
            raise ModelError(msg) from exc
        return adapter.eval()


@lru_cache(maxsize=4)
def _load_adapter(folder: str) -> Adapter:
    return Adapter.load(Path(folder))


# ------------------------------------------------------------------------ MIG and allocation


def group_mig(query: np.ndarray, groups: np.ndarray, redundancy_weight: float) -> np.ndarray:
    """COMI's marginal information gain of each group: relevance minus redundancy.

    Args:
        query: Pooled question state ``(d,)``.
        groups: Pooled group states ``(n, d)``.
        redundancy_weight: λ.

    Returns:
        ``(n,)`` scores ``cos(q, g) - λ · max cos(g, h)`` over groups ``h`` more relevant
        than ``g`` (ties broken by position; the most relevant group has no redundancy).
    """
    if len(groups) == 0:
        return np.zeros(0, dtype=np.float32)
    q = normalize(query[None, :])[0]
    g = normalize(groups)
    relevance = g @ q
    sims = g @ g.T
    order = np.lexsort((np.arange(len(g)), -relevance))  # most relevant first
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g))
    ahead = rank[None, :] < rank[:, None]  # ahead[i, j]: j is more relevant than i
    redundancy = np.where(ahead, np.clip(sims, 0.0, None), 0.0).max(axis=1)
    return np.asarray(relevance - redundancy_weight * redundancy, dtype=np.float32)


def allocate(sizes: Sequence[int], mig: np.ndarray, budget: int, sharpness: float) -> list[int]:
    """Vectors per group: more for high-MIG groups, never more than a group's tokens.

    Shares are ``size · exp(sharpness · z)`` with ``z`` the standardised MIG, water-filled so
    no group gets more than its size, then rounded by largest remainder (ties to the higher
    MIG) to integers summing to ``min(budget, sum(sizes))``. Low-MIG groups may get 0.

    Args:
        sizes: Tokens per group.
        mig: MIG per group.
        budget: Vectors to hand out.
        sharpness: How strongly MIG moves the shares (0 = in proportion to size).

    Returns:
        Vectors per group.
    """
    n = len(sizes)
    cap = np.asarray(sizes, dtype=np.float64)
    total = int(min(max(budget, 0), int(cap.sum())))
    if n == 0 or total == 0:
        return [0] * n
    m = np.asarray(mig, dtype=np.float64)
    std = float(m.std())
    z = (m - m.mean()) / std if std > 1e-9 else np.zeros(n)
    weight = cap * np.exp(np.clip(sharpness * z, -30.0, 30.0))
    share = np.zeros(n)
    free = cap > 0
    left = float(total)
    while left > 1e-9 and free.any():  # water-filling: capped groups pass their surplus on
        part = np.where(free, weight, 0.0)
        part = part / part.sum() * left
        over = free & (share + part >= cap)
        if not over.any():
            share += part
            break
        left -= float((cap[over] - share[over]).sum())
        share[over] = cap[over]
        free &= ~over
    counts = np.minimum(np.floor(share + 1e-9), cap).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        remainder = np.where(counts < cap, share - counts, -np.inf)
        order = np.lexsort((-m, -remainder))
        for i in order[:rest]:
            counts[i] += 1
    return [int(c) for c in counts]


def run_bounds(n: int, m: int) -> list[tuple[int, int]]:
    """``m`` runs of consecutive positions covering ``0..n``, sizes differing by at most one."""
    if m <= 0:
        return []
    edges = [round(i * n / m) for i in range(m + 1)]
    return [(edges[i], edges[i + 1]) for i in range(m)]


def merge_runs(
    states: np.ndarray,
    centred: np.ndarray,
    query: np.ndarray,
    m: int,
    *,
    redundancy_weight: float,
    token_sharpness: float,
    keep_norm: bool,
) -> np.ndarray:
    """Merge a group's token states into ``m`` vectors by MIG-weighted averaging.

    Args:
        states: The group's token states ``(n, d)`` (input embeddings, merged as they are).
        centred: The same states centred (used only for the weights).
        query: Unit pooled question state ``(d,)`` (centred).
        m: Vectors to produce, ``1 <= m <= n``.
        redundancy_weight: λ of the token-level MIG.
        token_sharpness: Inverse temperature of the weights' softmax.
        keep_norm: Rescale each vector to the weighted mean norm of its tokens.

    Returns:
        ``(m, d)`` merged vectors in order.
    """
    out = np.empty((m, states.shape[1]), dtype=np.float32)
    unit = normalize(centred)
    relevance = unit @ query
    for k, (a, b) in enumerate(run_bounds(len(states), m)):
        if b - a == 1:
            out[k] = states[a]
            continue
        mean = normalize(unit[a:b].mean(axis=0)[None, :])[0]
        gain = relevance[a:b] - redundancy_weight * (unit[a:b] @ mean)
        w = np.exp(token_sharpness * (gain - gain.max()))
        w = w / w.sum()
        vec = w @ states[a:b]
        if keep_norm:
            target = float(w @ np.linalg.norm(states[a:b], axis=1))
            vec = vec * (target / max(float(np.linalg.norm(vec)), 1e-8))
        out[k] = vec
    return out


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
        model: SmolLM2-135M-Instruct (anything with ``get_input_embeddings()``); with
            ``tokenizer``, defaults to :func:`ragzip.models.load_smollm2`.
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
            adapter: Folder of a trained adapter, ``"default"`` for the shipped one, or
                ``None`` for none (training-free).
        """

        redundancy_weight: float = 0.1
        sharpness: float = 1.0
        token_sharpness: float = 5.0
        max_group_tokens: int = 48
        keep_norm: bool = True
        adapter: str | None = None

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

        def adapter_dir(self) -> Path | None:
            """The adapter folder, ``None`` when there is none."""
            if self.adapter is None:
                return None
            return WEIGHTS_DIR if self.adapter == "default" else Path(self.adapter).expanduser()

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
            msg = "give both model and tokenizer, or neither (for the default SmolLM2)"
            raise ConfigError(msg)
        if model is None:
            from ragzip.models import load_smollm2

            model, tokenizer = load_smollm2("cpu")
        if not getattr(tokenizer, "is_fast", False):
            msg = "merge needs a fast tokenizer (one that returns character offsets)"
            raise ConfigError(msg)
        self.tokenizer = tokenizer
        weight = model.get_input_embeddings().weight.detach().float().cpu().numpy()
        self.table: np.ndarray = np.ascontiguousarray(weight, dtype=np.float32)
        self.center: np.ndarray = self.table.mean(axis=0)
        if adapter is None and (folder := self.config.adapter_dir()) is not None:
            adapter = _load_adapter(str(folder.resolve()))
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
