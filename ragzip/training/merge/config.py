"""Settings of a merge adapter training run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Count, NonNegative, Positive, PositiveInt, Share
from ragzip.core.paths import paths

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Settings of an adapter training run.

    Attributes:
        generator: The generator the adapter is for (``smollm2``, ``gemma3-270m``, a model
            folder or ``.gguf``).
        device: Where the generator runs while training (``cpu``, ``cuda``).
        out: Folder the adapter, ``training.json`` and the checkpoint are written to.
        minutes: Wall-clock budget of the optimisation loop (validation excluded).
        max_steps: Upper bound on optimiser steps.
        train_n: Train questions used, the first of the split (0: all 1,200).
        k: Passages per training context.
        ratios: Compression factors drawn per example.
        text_share: The compressor's ``text_share`` while training (the adapter learns to
            work beside kept text); recorded, and the setting to use the adapter with.
        rank: Adapter rank.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        accumulate: Examples per optimiser step.
        kl_weight: Weight of the self-distillation KL term (0 = answer cross-entropy only).
        val_examples: Val questions scored at each validation.
        val_every: Optimiser steps between validations.
        seed: Seed of the example order, ratios and initialisation.
        threads: Torch CPU threads.
        index_cache: Folder of the cached NQ hybrid index (built there when absent).
        data_dir: Data folder (``None``: ``../shared/data``).
    """

    generator: str = "smollm2"
    device: str = "cpu"
    out: str = field(default_factory=lambda: str(paths().trained("merge")))
    minutes: NonNegative = 30.0
    max_steps: PositiveInt = 10_000
    train_n: Count = 0
    k: PositiveInt = 5
    ratios: str = "4,8"
    text_share: Share = 0.5
    rank: PositiveInt = 64
    lr: Positive = 2e-3
    weight_decay: NonNegative = 0.01
    accumulate: PositiveInt = 4
    kl_weight: NonNegative = 0.0
    val_examples: Count = 40
    val_every: PositiveInt = 40
    seed: int = 0
    threads: PositiveInt = 1
    index_cache: str = field(default_factory=lambda: str(paths().index_cache))
    data_dir: str | None = None

    def ratio_list(self) -> list[float]:
        """``ratios`` as numbers."""
        try:
            values = [float(r) for r in self.ratios.split(",") if r.strip()]
        except ValueError as exc:
            msg = f"ratios must be comma-separated numbers, got {self.ratios!r}"
            raise ConfigError(msg) from exc
        if not values or any(not math.isfinite(v) or v < 1 for v in values):
            msg = f"ratios must be numbers >= 1, got {self.ratios!r}"
            raise ConfigError(msg)
        return values
