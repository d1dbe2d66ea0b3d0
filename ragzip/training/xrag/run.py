"""The training run: both stages, the curves plot, the artefact and its ``training.json``."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragzip.compressors.xrag import (
    XragCompressor,
    load_projector,
    save_projector,
)
from ragzip.core.machine import machine_info
from ragzip.experiments.datasets import load_nq, nq_split
from ragzip.training.common import Checkpoint
from ragzip.training.xrag.config import TrainConfig
from ragzip.training.xrag.trainer import SoftLM, Trainer, embed_passages

logger = logging.getLogger(__name__)


def plot_curves(record: dict[str, Any], path: Path) -> None:
    """Training and validation losses of both stages, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(
        axes, ("stage1", "stage2"), ("stage 1: paraphrase", "stage 2: QA"), strict=True
    ):
        stage = record[key]
        steps = [r["step"] for r in stage["steps"]]
        ax.plot(steps, [r["loss"] for r in stage["steps"]], alpha=0.4, label="train loss")
        val = stage["val"]
        ax.plot([r["step"] for r in val], [r["recon_ce"] for r in val], "o-", label="val recon CE")
        if key == "stage2":
            ax.plot(
                [r["step"] for r in val], [r["qa_ce"] for r in val], "s-", label="val answer CE"
            )
            ref = record["reference"]
            ax.axhline(ref["qa_ce_no_context"], ls="--", c="grey", label="answer CE, no context")
            ax.axhline(ref["qa_ce_full_text"], ls=":", c="k", label="answer CE, full passage")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(config: TrainConfig, *, command: str = "", resume: bool = True) -> dict[str, Any]:
    """Run both stages for ``config.generator`` and write the projector, a stage-1 projector
    and ``training.json`` to ``config.out``.

    A checkpoint is saved at every validation point; with ``resume`` a run with the same
    settings goes on from it (the time budget counts the training of all runs together).
    """
    from ragzip.generators.local import load_causal_lm
    from ragzip.generators.target import load_target

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out = Path(config.out)
    checkpoint = Checkpoint(out, asdict(config))
    saved = (checkpoint.load() if resume else None) or {}
    examples = load_nq(config.data_dir)
    train_set = nq_split("train", examples=examples)[: config.train_n or None]
    val_set = nq_split("val", examples=examples)[: config.val_n]
    t0 = time.perf_counter()
    train_vecs = embed_passages(train_set)
    val_vecs = embed_passages(val_set)
    embed_s = time.perf_counter() - t0
    target = load_target(config.generator)
    model, tokenizer = load_causal_lm(config.generator, config.device)
    trainer = Trainer(config, SoftLM(model, tokenizer), train_set, train_vecs, val_set, val_vecs)
    t0 = time.perf_counter()
    reference = saved.get("reference") or trainer.reference_losses()
    logger.info("reference %s", reference)
    ref_s = time.perf_counter() - t0
    budget = config.minutes * 60 if config.minutes > 0 else math.inf

    def keep(stage: int, done: dict[str, Any] | None) -> Callable[[dict[str, Any]], None]:
        def save(state: dict[str, Any]) -> None:
            checkpoint.save(
                {"reference": reference, "stage1": done, "stage": stage, "current": state}
            )

        return save

    t0 = time.perf_counter()
    stage1_record = saved.get("stage1")
    if stage1_record is None:
        current = saved.get("current") if saved.get("stage") == 1 else None
        stage1 = trainer.run_stage(
            1, seconds=budget * config.stage1_share, saved=current, save=keep(1, None)
        )
        save_projector(trainer.projector, out / "stage1", target=target, extra={"stage": 1})
        stage1_record = asdict(stage1)
        checkpoint.save({"reference": reference, "stage1": stage1_record, "stage": 2})
    elif saved.get("current") is None:  # stage 1 done, stage 2 not begun: start from stage 1
        done = load_projector(out / "stage1", target)
        trainer.projector.load_state_dict(done.state_dict())
    stage1_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    current = saved.get("current") if saved.get("stage") == 2 else None
    left = budget - float(stage1_record.get("seconds", 0.0))
    stage2 = trainer.run_stage(2, seconds=left, saved=current, save=keep(2, stage1_record))
    stage2_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "command": command,
        "config": asdict(config),
        "generator": target.to_dict(),
        "data": {"train_questions": len(train_set), "val_questions": len(val_set)},
        "reference": reference,
        "stage1": stage1_record,
        "stage2": asdict(stage2),
        "timings_s": {
            "embed_passages": embed_s,
            "reference": ref_s,
            "stage1": stage1_s,
            "stage2": stage2_s,
            "wall_total": time.perf_counter() - t_start,
            "cpu_total": time.process_time() - cpu_start,
        },
        "environment": machine_info(),
    }
    save_projector(
        trainer.projector.cpu(),
        out,
        target=target,
        extra={"stage": 2, "compressor": XragCompressor.name},
    )
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_curves(record, out / "curves.png")
    checkpoint.remove()
    return record
