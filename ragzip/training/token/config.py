"""Settings of a token-classifier training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ragzip.core.fields import Checked, Count, Interval, NonNegative, Positive, PositiveInt
from ragzip.core.paths import paths

WITH_QUESTION = "Question: {question}\nContext:\n"
WITHOUT_QUESTION = "Context:\n"
VAL_RATIOS = (2.0, 4.0, 8.0)


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Settings of one training run.

    Attributes:
        data_dir: Folder with ``nq_open_dev.jsonl.gz`` (``None``: ``../shared/data``).
        out: Folder for ``config.json``, ``model.safetensors`` and ``training.json``.
        cache: Folder of cached teacher losses.
        seed: Seed of head initialisation, dropout, synthetic data and batch order.
        train_layers: Top MiniLM layers trained (the rest stay frozen).
        epochs: Passes over the training examples.
        lr: Learning rate of the trained layers.
        head_lr: Learning rate of the head.
        batch_size: Training batch size.
        positive_fraction: Share of a gold passage's words labelled *keep* by importance.
        surprisal_weight: Weight of the remaining loss given the question in word importance.
        negatives: BM25 negative passages per train question.
        kv_train: Synthetic key-value questions for training (each with 1 match + 3 others).
        kv_val: Synthetic key-value cases (75 records each) for validation.
        max_query_tokens: Question tokens kept (as the compressor does).
        threads: Torch CPU threads (``None``: torch's default).
        teacher_batch_tokens: Tokens per teacher forward pass.
    """

    data_dir: Path | None = None
    out: Path = field(default_factory=lambda: paths().trained("token"))
    cache: Path = field(default_factory=lambda: paths().cache / "token-teacher")
    seed: int = 0
    train_layers: Annotated[int, Interval(ge=1, le=6)] = 2
    epochs: PositiveInt = 3
    lr: Positive = 1e-4
    head_lr: Positive = 1e-3
    batch_size: PositiveInt = 16
    positive_fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.3
    surprisal_weight: NonNegative = 0.2
    negatives: Count = 1
    kv_train: Count = 400
    kv_val: Count = 40
    max_query_tokens: PositiveInt = 64
    threads: PositiveInt | None = None
    teacher_batch_tokens: PositiveInt = 1536
