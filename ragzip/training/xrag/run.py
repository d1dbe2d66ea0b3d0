"""The training run: both stages, the curves plot, the artefact and its ``training.json``."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragzip.compressors.xrag import (
    XragCompressor,
    save_projector,
)
from ragzip.datasets import load_nq, nq_split
from ragzip.machine import machine_info
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


def train(config: TrainConfig, *, command: str = "") -> dict[str, Any]:
    """Run both stages and write the projector, a stage-1 checkpoint and ``training.json``."""
    from ragzip.models import load_smollm2

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    examples = load_nq(config.data_dir)
    train_set = nq_split("train", examples=examples)
    val_set = nq_split("val", examples=examples)[: config.val_n]
    t0 = time.perf_counter()
    train_vecs = embed_passages(train_set)
    val_vecs = embed_passages(val_set)
    embed_s = time.perf_counter() - t0
    model, tokenizer = load_smollm2("cpu")
    trainer = Trainer(config, SoftLM(model, tokenizer), train_set, train_vecs, val_set, val_vecs)
    out = Path(config.out)
    t0 = time.perf_counter()
    reference = trainer.reference_losses()
    logger.info("reference %s", reference)
    ref_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stage1 = trainer.run_stage(1)
    stage1_s = time.perf_counter() - t0
    save_projector(trainer.projector, out / "stage1", extra={"stage": 1})
    t0 = time.perf_counter()
    stage2 = trainer.run_stage(2)
    stage2_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "command": command,
        "config": asdict(config),
        "data": {"train_questions": len(train_set), "val_questions": len(val_set)},
        "reference": reference,
        "stage1": asdict(stage1),
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
    save_projector(trainer.projector, out, extra={"stage": 2, "compressor": XragCompressor.name})
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_curves(record, out / "curves.png")
    return record
