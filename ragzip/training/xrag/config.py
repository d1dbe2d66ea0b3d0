"""Settings of an xrag projector training run."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragzip.core.fields import Checked, Count, NonNegative, Positive, PositiveInt, Share
from ragzip.core.paths import paths

RECON_SYSTEM_PROMPT = "Repeat the context word for word."
RECON_QUERY = "Repeat the context."


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Settings of one training run.

    Attributes:
        data_dir: Folder with ``nq_open_dev.jsonl.gz`` (``None``: ``../shared/data``).
        generator: The generator the projector is for (``smollm2``, ``gemma3-270m``, a model
            folder or ``.gguf``).
        device: Where the generator runs while training (``cpu``, ``cuda``).
        minutes: Training time of both stages together (0: no limit); stage 1 gets
            ``stage1_share`` of it, stage 2 the rest.
        stage1_share: Share of ``minutes`` for stage 1.
        out: Folder for ``config.json``, ``model.safetensors``, ``training.json``, the
            stage-1 projector (``stage1/``) and the resumable checkpoint.
        seed: Seed of the projector initialisation and the example order.
        hidden: Projector hidden width.
        train_n: Train questions used, the first of the split (0: all 1,200).
        stage1_examples: Paraphrase examples (train passages, one pass, shuffled).
        stage2_examples: Question-answering examples (train questions, one pass, shuffled).
        accum: Examples per optimizer step (gradient accumulation).
        lr1: Peak learning rate of stage 1.
        lr2: Peak learning rate of stage 2.
        warmup: Fraction of each stage's steps with linear warm-up (then cosine decay).
        recon_tokens: Passage tokens the paraphrase target keeps.
        kl_weight: Weight of the distillation term in stage 2.
        val_n: Validation questions (first of the val split) for the curves.
        eval_every: Optimizer steps between validation points.
        threads: torch CPU threads.
    """

    data_dir: str | None = None
    generator: str = "smollm2"
    device: str = "cpu"
    minutes: NonNegative = 0.0
    stage1_share: Share = 0.4
    out: str = field(default_factory=lambda: str(paths().trained("xrag")))
    seed: int = 0
    hidden: PositiveInt = 1536
    train_n: Count = 0
    stage1_examples: Count = 640
    stage2_examples: Count = 640
    accum: PositiveInt = 8
    lr1: Positive = 1e-3
    lr2: Positive = 3e-4
    warmup: Share = 0.05
    recon_tokens: PositiveInt = 48
    kl_weight: NonNegative = 1.0
    val_n: PositiveInt = 32
    eval_every: PositiveInt = 20
    threads: PositiveInt = 1
