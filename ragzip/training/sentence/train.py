"""Fitting the classifier: frozen lower layers cached once, the upper layers and head trained."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence

import numpy as np
import torch

from ragzip.compressors.sentence.model import (
    SentenceClassifier,
    length_batches,
    pad_batch,
)
from ragzip.training.sentence.config import TrainConfig
from ragzip.training.sentence.samples import Sample

logger = logging.getLogger(__name__)


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN without both classes."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def within_question_auc(samples: Sequence[Sample], probs: np.ndarray) -> float:
    """Mean per-question AUC over the questions with both answer and non-answer sentences."""
    by_q: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_q.setdefault(s.question, []).append(i)
    values = [
        auc([samples[i].label for i in idx], probs[idx])
        for idx in by_q.values()
        if 0 < sum(samples[i].label for i in idx) < len(idx)
    ]
    return float(np.mean(values)) if values else math.nan


def cache_lower(
    model: SentenceClassifier, samples: Sequence[Sample], batch_size: int = 64
) -> list[torch.Tensor]:
    """Frozen lower-layer states of each sample, trimmed to its length, in float16.

    The frozen part never changes during training, so it runs once per sample.
    """
    out: list[torch.Tensor | None] = [None] * len(samples)
    model.eval()
    with torch.inference_mode():
        for batch in length_batches([len(s.encoded.input_ids) for s in samples], batch_size):
            hidden = model.lower(pad_batch([samples[i].encoded for i in batch]))
            for row, i in enumerate(batch):
                n = len(samples[i].encoded.input_ids)
                out[i] = hidden[row, :n].to(torch.float16).clone()
    return [h for h in out if h is not None]


def _stack(
    hidden: Sequence[torch.Tensor], samples: Sequence[Sample]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad cached states: ``(hidden, attention_mask, segment_ids)``."""
    width = max(h.shape[0] for h in hidden)
    x = torch.zeros((len(hidden), width, hidden[0].shape[1]), dtype=torch.float32)
    mask = torch.zeros((len(hidden), width), dtype=torch.long)
    segments = torch.zeros((len(hidden), width), dtype=torch.long)
    for row, (h, s) in enumerate(zip(hidden, samples, strict=True)):
        x[row, : h.shape[0]] = h.float()
        mask[row, : h.shape[0]] = 1
        segments[row, : h.shape[0]] = torch.tensor(s.encoded.segment_ids)
    return x, mask, segments


def predict_cached(
    model: SentenceClassifier,
    samples: Sequence[Sample],
    cached: Sequence[torch.Tensor],
    batch_size: int = 64,
) -> np.ndarray:
    """P(useful) from cached lower-layer states (what training sees), in sample order."""
    probs = np.zeros(len(samples), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for batch in length_batches([h.shape[0] for h in cached], batch_size):
            x, mask, seg = _stack([cached[i] for i in batch], [samples[i] for i in batch])
            probs[batch] = torch.sigmoid(model.upper(x, mask, seg)).numpy()
    return probs


def train(
    model: SentenceClassifier,
    samples: Sequence[Sample],
    cached: Sequence[torch.Tensor],
    cfg: TrainConfig,
) -> list[float]:
    """Fine-tune the upper layers and the head; returns the mean loss of each epoch.

    AdamW with a linear warm-up and linear decay; batches of similar length, their order
    shuffled each epoch with a private ``random.Random(cfg.seed)``.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    upper = model.encoder.encoder.layer[model.n_frozen :]
    for p in [*upper.parameters(), *model.head.parameters()]:
        p.requires_grad_(True)
    labels = torch.tensor([float(s.label) for s in samples])
    batches = length_batches([h.shape[0] for h in cached], cfg.batch_size)
    steps = cfg.epochs * len(batches)
    warm = max(1, int(cfg.warmup * steps))
    optim = torch.optim.AdamW(
        [
            {"params": list(upper.parameters()), "lr": cfg.lr},
            {"params": list(model.head.parameters()), "lr": cfg.head_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    params = [p for g in optim.param_groups for p in g["params"]]
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        order = list(batches)
        rng.shuffle(order)
        total = 0.0
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        for batch in order:
            x, mask, seg = _stack([cached[i] for i in batch], [samples[i] for i in batch])
            logits = model.upper(x, mask, seg)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(samples))
        logger.info(
            "epoch %d: loss %.4f (%.0f s, %.0f CPU s)",
            epoch + 1,
            losses[-1],
            time.perf_counter() - t_epoch,
            time.process_time() - c_epoch,
        )
    model.eval()
    return losses
