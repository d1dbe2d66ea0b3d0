"""Settings of a token-classifier training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragzip.core.errors import ConfigError
from ragzip.core.paths import paths

WITH_QUESTION = "Question: {question}\nContext:\n"
WITHOUT_QUESTION = "Context:\n"
VAL_RATIOS = (2.0, 4.0, 8.0)


@dataclass(frozen=True)
class TrainConfig:
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
    train_layers: int = 2
    epochs: int = 3
    lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 16
    positive_fraction: float = 0.3
    surprisal_weight: float = 0.2
    negatives: int = 1
    kv_train: int = 400
    kv_val: int = 40
    max_query_tokens: int = 64
    threads: int | None = None
    teacher_batch_tokens: int = 1536

    def __post_init__(self) -> None:
        if not 1 <= self.train_layers <= 6:
            msg = f"train_layers must be in [1, 6], got {self.train_layers}"
            raise ConfigError(msg)
        if not 0.0 < self.positive_fraction < 1.0:
            msg = f"positive_fraction must be in (0, 1), got {self.positive_fraction}"
            raise ConfigError(msg)
        if self.epochs < 1 or self.batch_size < 1:
            msg = "epochs and batch_size must be >= 1"
            raise ConfigError(msg)
