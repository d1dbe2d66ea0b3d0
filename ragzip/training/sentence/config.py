"""Settings of a sentence-classifier training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from ragzip.compressors.sentence.features import InputLimits
from ragzip.core.fields import (
    Checked,
    Count,
    Interval,
    NonNegative,
    Positive,
    PositiveInt,
    Share,
)
from ragzip.core.paths import paths


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Settings of one training run.

    Attributes:
        data_dir: Folder with ``nq_open_dev.jsonl.gz`` (``None``: ``../shared/data``).
        out: Folder to write ``config.json``, ``model.safetensors`` and ``training.json`` to.
        seed: Seed of negative sampling, head initialisation, dropout and batch order.
        n_frozen: Lower MiniLM layers kept frozen (of 6); the rest are trained.
        head_hidden: Width of the classifier head.
        epochs: Passes over the training sentences.
        lr: Learning rate of the trained encoder layers.
        head_lr: Learning rate of the head.
        weight_decay: AdamW weight decay.
        warmup: Fraction of steps with a linear warm-up (then linear decay to 0).
        batch_size: Training batch size.
        retrieved_passages: Non-gold BM25 passages per question that negatives are drawn from.
        retrieved_sentences: Negatives sampled from those passages per question.
        val_passages: Non-gold BM25 passages per validation question (all their sentences).
        threshold_recall: The adaptive threshold is the highest one whose validation
            answer-in-context recall is at least this share of the recall of the whole context.
        limits: Classifier input segment lengths.
        threads: torch CPU threads (one thread wastes least CPU time on shared cores).
        train_limit: Use only the first N train questions (quick trials; ``None`` = all).
        val_limit: Use only the first N val questions (``None`` = all).
    """

    data_dir: str | None = None
    out: str = field(default_factory=lambda: str(paths().trained("sentence")))
    seed: int = 0
    n_frozen: Annotated[int, Interval(ge=0, lt=6)] = 4
    head_hidden: PositiveInt = 256
    epochs: PositiveInt = 2
    lr: Positive = 3e-4
    head_lr: Positive = 2e-3
    weight_decay: NonNegative = 0.01
    warmup: Share = 0.06
    batch_size: PositiveInt = 32
    retrieved_passages: Count = 3
    retrieved_sentences: Count = 4
    val_passages: Count = 3
    threshold_recall: Annotated[float, Interval(gt=0, le=1)] = 0.9
    limits: InputLimits = field(default_factory=InputLimits)
    threads: PositiveInt = 1
    train_limit: PositiveInt | None = None
    val_limit: PositiveInt | None = None
