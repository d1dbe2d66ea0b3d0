"""What an evaluation run measures and how: :class:`EvalConfig`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Count, PositiveInt
from ragzip.experiments.datasets import (
    SPLIT_SIZES,
)
from ragzip.retrievers.backends import check_backend, display_dsn

if TYPE_CHECKING:
    from ragzip.retrievers.fusion import Mode


RETRIEVAL_MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
UNCOMPRESSED = "uncompressed"
"""Label of the generation row that sends the full top-k context."""
NO_CONTEXT = "no context"
"""Label of the generation row that asks the question alone."""


def _positive_ratio(value: float) -> float:
    ratio = float(value)
    if not (math.isfinite(ratio) and ratio >= 1.0):
        msg = f"ratios are compression factors >= 1, got {value!r}"
        raise ConfigError(msg)
    return ratio


@dataclass(frozen=True)
class EvalConfig(Checked):
    """What to evaluate.

    Attributes:
        data_dir: Folder with the NQ and KV files; ``None`` means ``../shared/data``.
        split: NQ split to score (``test`` keeps training questions out of reports).
        questions: Questions of the split to use (the first ones, in file order).
        k: Passages retrieved per question as the context to compress.
        compressors: Specs of the compressors to compare: registry names, optionally with
            config settings (``sentence:mode=budgeted;threshold=0.4``, see
            :mod:`ragzip.registry`); rows are labelled with the spec.
        ratios: Requested compression factors.
        retrieval_ks: Cut-offs for retrieval recall.
        retrieval: Run the retrieval stage.
        compression: Run the compression stage.
        generate_n: Questions to answer with the generator (0 skips the stage).
        generate_ratio: Compression factor for the generation stage.
        max_new_tokens: Answer length limit for the generator.
        kv: Run the key-value stage.
        kv_cases: Key-value cases to use (``None`` for all).
        index_cache: Folder to load the NQ index from, or to save it to after building.
        chunk: Chunk passages when indexing (NQ passages are already passage-sized).
        backend: Where the NQ index lives: ``folder`` (in memory, saved to ``index_cache``) or
            ``postgres`` (a table named after the corpus, reused while it matches).
        dsn: The Postgres URL (or ``embedded``) of the ``postgres`` backend.
        generator: The local model that answers (``smollm2``, ``gemma3-270m``, a model folder
            or ``.gguf``); soft compressors make their vectors for it. ``None``: SmolLM2.
    """

    data_dir: Path | None = None
    split: str = "test"
    questions: PositiveInt = 500
    k: PositiveInt = 10
    compressors: tuple[str, ...] = ("truncate", "random", "mig")
    ratios: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    retrieval_ks: tuple[int, ...] = (1, 5, 10)
    retrieval: bool = True
    compression: bool = True
    generate_n: Count = 0
    generate_ratio: float = 4.0
    max_new_tokens: PositiveInt = 32
    kv: bool = True
    kv_cases: PositiveInt | None = None
    index_cache: Path | None = None
    chunk: bool = False
    backend: str = "folder"
    dsn: str | None = None
    generator: str | None = None

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.backend == "postgres" and not self.dsn:
            msg = "the postgres backend needs a DSN (a Postgres URL, or 'embedded')"
            raise ConfigError(msg)
        if self.split not in (*SPLIT_SIZES, "all"):
            msg = f"unknown split {self.split!r}; choose one of: {', '.join([*SPLIT_SIZES, 'all'])}"
            raise ConfigError(msg)
        super().__post_init__()
        if not self.ratios:
            msg = "give at least one ratio"
            raise ConfigError(msg)
        ratios = tuple(sorted({_positive_ratio(r) for r in self.ratios}))
        object.__setattr__(self, "ratios", ratios)
        object.__setattr__(self, "generate_ratio", _positive_ratio(self.generate_ratio))
        if not self.retrieval_ks or any(int(k) < 1 for k in self.retrieval_ks):
            msg = f"retrieval cut-offs must be >= 1, got {self.retrieval_ks}"
            raise ConfigError(msg)
        object.__setattr__(self, "retrieval_ks", tuple(sorted({int(k) for k in self.retrieval_ks})))
        names = tuple(dict.fromkeys(c.strip() for c in self.compressors if c.strip()))
        if (self.compression or self.kv or self.generate_n) and not names:
            msg = "give at least one compressor"
            raise ConfigError(msg)
        object.__setattr__(self, "compressors", names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        for key in ("data_dir", "index_cache"):
            out[key] = str(out[key]) if out[key] is not None else None
        for key in ("compressors", "ratios", "retrieval_ks"):
            out[key] = list(out[key])
        out["dsn"] = display_dsn(self.dsn)
        return out
