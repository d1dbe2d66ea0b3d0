"""The training run: samples, training, the adaptive threshold, the artefact and its record."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.compressors.sentence.features import Featurizer
from ragzip.compressors.sentence.model import (
    load_base,
    save_classifier,
)
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.core.machine import machine_info
from ragzip.experiments.datasets import load_nq, nq_split
from ragzip.training.common import own_random_state
from ragzip.training.negatives import HardNegatives
from ragzip.training.sentence.config import TrainConfig
from ragzip.training.sentence.evaluate import adaptive_curve, choose_threshold, evaluate
from ragzip.training.sentence.samples import build_samples
from ragzip.training.sentence.train import cache_lower, train, within_question_auc

logger = logging.getLogger(__name__)


@own_random_state
def run(cfg: TrainConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, validate and save; returns the ``training.json`` record."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    examples = load_nq(cfg.data_dir)
    train_q = nq_split("train", examples=examples)
    val_q = nq_split("val", examples=examples)
    if cfg.train_limit is not None:
        train_q = train_q[: cfg.train_limit]
    if cfg.val_limit is not None:
        val_q = val_q[: cfg.val_limit]

    model, tokenizer, base_sha = load_base(cfg.n_frozen, cfg.head_hidden)
    featurizer = Featurizer(tokenizer, cfg.limits)
    train_docs = nq_split("train", examples=examples)
    bm25_train = HardNegatives.over_questions(train_docs)
    train_samples = build_samples(
        train_q,
        bm25_train.top(train_q, cfg.retrieved_passages),
        featurizer,
        rng=rng,
        retrieved_sentences=cfg.retrieved_sentences,
    )
    bm25_val = HardNegatives.over_questions([*train_docs, *nq_split("val", examples=examples)])
    val_samples = build_samples(
        val_q, bm25_val.top(val_q, cfg.val_passages), featurizer, rng=None, retrieved_sentences=None
    )
    logger.info(
        "%d train sentences (%d positive), %d val sentences",
        len(train_samples),
        sum(s.label for s in train_samples),
        len(val_samples),
    )
    scorer_untrained = SentenceScorer(model, tokenizer, limits=cfg.limits)
    gold_val = [s for s in val_samples if s.gold]
    untrained_probs = scorer_untrained.predict([s.encoded for s in gold_val])
    untrained_auc = within_question_auc(gold_val, untrained_probs)

    t_train, c_train = time.perf_counter(), time.process_time()
    cached = cache_lower(model, train_samples)
    logger.info(
        "cached lower-layer states of %d sentences in %.0f s (%.0f CPU s)",
        len(train_samples),
        time.perf_counter() - t_train,
        time.process_time() - c_train,
    )
    losses = train(model, train_samples, cached, cfg)
    del cached
    train_seconds = time.perf_counter() - t_train
    train_cpu = time.process_time() - c_train

    scorer = SentenceScorer(model, tokenizer, limits=cfg.limits)
    t_val = time.perf_counter()
    probs = scorer.predict([s.encoded for s in val_samples], batch_size=64)
    val_seconds = time.perf_counter() - t_val
    answers = {q.index: list(q.answers) for q in val_q}
    texts = [s.text for s in val_samples]
    grid = [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)]
    curve = adaptive_curve(val_samples, probs, answers, texts, grid)
    full = adaptive_curve(val_samples, probs, answers, texts, [0.0])[0]["answer_in_context_recall"]
    threshold = choose_threshold(curve, full, cfg.threshold_recall)
    metrics = evaluate(val_samples, probs, threshold)
    metrics_05 = evaluate(val_samples, probs, 0.5)
    adaptive = next(r for r in curve if r["threshold"] == threshold)

    out = Path(cfg.out)
    save_classifier(model, out, limits=cfg.limits, threshold=threshold, base_sha256=base_sha)
    record: dict[str, Any] = {
        "method": "EXIT-style context-aware sentence classifier (Hwang et al., 2024)",
        "command": "python -m ragzip.training.sentence " + " ".join(argv or []),
        "settings": {**asdict(cfg), "limits": asdict(cfg.limits)},
        "data": {
            "source": "nq_open_dev.jsonl.gz (NQ-open with gold passages, Lost in the Middle)",
            "train_questions": len(train_q),
            "val_questions": len(val_q),
            "train_sentences": len(train_samples),
            "train_positives": sum(s.label for s in train_samples),
            "val_sentences": len(val_samples),
            "val_ambiguous_sentences": sum(s.ambiguous for s in val_samples),
            "negatives": "other gold-passage sentences + BM25 (bm25s) top non-gold passages",
        },
        "losses": losses,
        "machine": machine_info(),
        "time": {
            "train_seconds": round(train_seconds, 1),
            "train_process_cpu_seconds": round(train_cpu, 1),
            "val_predict_seconds": round(val_seconds, 1),
            "total_wall_seconds": round(time.perf_counter() - wall0, 1),
            "total_process_cpu_seconds": round(time.process_time() - cpu0, 1),
        },
        "validation": {
            "threshold": threshold,
            "threshold_rule": (
                f"highest threshold on a 0.05 grid whose val answer-in-context recall is >= "
                f"{cfg.threshold_recall} x the recall of all candidate sentences ({full:.3f})"
            ),
            "at_threshold": metrics,
            "at_0.5": metrics_05,
            "adaptive_at_threshold": adaptive,
            "adaptive_curve": curve,
            "untrained_head_auc_within_gold_passage": untrained_auc,
        },
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
