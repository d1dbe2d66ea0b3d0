"""Train the context-aware sentence classifier of :mod:`ragzip.compressors.sentence` (EXIT).

Recipe after EXIT (Hwang et al., 2024, *EXIT: Context-Aware Extractive Compression for Enhancing
Retrieval-Augmented Generation*): a cross-encoder reads question, sentence and the sentence's
surrounding context and is trained to tell sentences that answer the question from hard
negatives. Here, at CPU scale, on the NQ-open questions of ``../shared/data``:

* **train** split (1,200 questions) only. Positives: sentences of the gold passage holding an
  accepted answer (:func:`ragzip.text.answer_in_text`). Hard negatives: the other sentences of
  the gold passage, and sentences of the passages BM25 (bm25s) ranks highest for the question
  among the *train* passages, minus the gold one. Retrieved sentences that hold an answer are
  ambiguous and left out. Questions whose gold passage has no answer-holding sentence are skipped.
* The encoder is all-MiniLM-L6-v2; its embeddings and lower layers stay frozen, so their outputs
  are computed once and cached, and only the upper layers and a small head are trained. Only
  those are saved, in float16.
* **val** split (300 questions, BM25 over train + val passages): AUC, accuracy, answer-sentence
  recall, and the adaptive threshold. The test split is never read here.

Run from the project root::

    python -m ragzip.training.sentence --out compressors/weights/sentence

Everything is seeded; ``training.json`` beside the weights records the command, settings, data
counts, CPU and wall time, and the validation figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.compressors.sentence.features import Encoded, Featurizer, InputLimits, PassageSentences
from ragzip.compressors.sentence.model import (
    SentenceClassifier,
    length_batches,
    load_base,
    pad_batch,
    save_classifier,
)
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.compressors.units import sentence_spans
from ragzip.errors import ConfigError
from ragzip.evaluation.data import NQExample, load_nq, nq_split
from ragzip.text import answer_in_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
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
    out: str = "compressors/weights/sentence"
    seed: int = 0
    n_frozen: int = 4
    head_hidden: int = 256
    epochs: int = 2
    lr: float = 3e-4
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    batch_size: int = 32
    retrieved_passages: int = 3
    retrieved_sentences: int = 4
    val_passages: int = 3
    threshold_recall: float = 0.9
    limits: InputLimits = field(default_factory=InputLimits)
    threads: int = 1
    train_limit: int | None = None
    val_limit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.n_frozen < 6:
            msg = f"n_frozen must be in [0, 6), got {self.n_frozen}"
            raise ConfigError(msg)
        if self.epochs < 1 or self.batch_size < 1:
            msg = "epochs and batch_size must be >= 1"
            raise ConfigError(msg)
        if not 0 < self.threshold_recall <= 1:
            msg = f"threshold_recall must be in (0, 1], got {self.threshold_recall}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class Sample:
    """One labelled sentence.

    Attributes:
        question: Index of the question (line number in the NQ file).
        encoded: Classifier input.
        label: 1 if the sentence holds an accepted answer.
        gold: Whether the sentence comes from the question's gold passage.
        ambiguous: A retrieved (non-gold) sentence that holds an answer: not a clean label.
        tokens: Length of the sentence in the classifier's tokenizer (a cost proxy).
        text: The sentence.
    """

    question: int
    encoded: Encoded
    label: int
    gold: bool
    ambiguous: bool
    tokens: int
    text: str


def passage_sentences(title: str, text: str) -> PassageSentences:
    """A passage split into sentences exactly as the compressor splits it (pySBD)."""
    return PassageSentences(
        title=title, sentences=tuple(text[s:e] for s, e in sentence_spans(text))
    )


class BM25Negatives:
    """BM25 (bm25s, Lù 2024) over a set of NQ passages, for hard negatives.

    Args:
        corpus: The questions whose passages form the corpus (passages deduplicated by text).
    """

    def __init__(self, corpus: Sequence[NQExample]) -> None:
        import bm25s

        seen: dict[tuple[str, str], int] = {}
        for ex in corpus:
            seen.setdefault((ex.title, ex.text), len(seen))
        self.docs = list(seen)
        tokens = bm25s.tokenize(
            [f"{t} {x}" for t, x in self.docs], stopwords="en", show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._bm25s = bm25s

    def top(self, questions: Sequence[NQExample], k: int) -> list[list[tuple[str, str]]]:
        """For each question, its ``k`` best passages other than its gold one."""
        k_all = min(len(self.docs), k + 2)
        tokens = self._bm25s.tokenize(
            [q.question for q in questions], stopwords="en", show_progress=False
        )
        ids, _ = self._bm25.retrieve(tokens, k=k_all, show_progress=False, n_threads=1)
        out: list[list[tuple[str, str]]] = []
        for q, row in zip(questions, ids, strict=True):
            docs = [self.docs[int(i)] for i in row if self.docs[int(i)][1] != q.text]
            out.append(docs[:k])
        return out


def build_samples(
    questions: Sequence[NQExample],
    retrieved: Sequence[Sequence[tuple[str, str]]],
    featurizer: Featurizer,
    *,
    rng: random.Random | None,
    retrieved_sentences: int | None,
) -> list[Sample]:
    """Labelled sentences for each question: all of its gold passage plus retrieved negatives.

    Args:
        questions: The questions.
        retrieved: Their non-gold passages ``(title, text)``, best first.
        featurizer: Builds the classifier inputs.
        rng: Sampler of retrieved sentences (``None`` with ``retrieved_sentences=None``).
        retrieved_sentences: Retrieved sentences kept per question; ``None`` keeps all and keeps
            ambiguous ones (flagged) too, as validation needs them.
    """
    tok = featurizer.tokenizer
    samples: list[Sample] = []
    for q, docs in zip(questions, retrieved, strict=True):
        answers = list(q.answers)
        gold = passage_sentences(q.title, q.text)
        labels = [int(answer_in_text(answers, s)) for s in gold.sentences]
        if not any(labels):
            continue
        others = [passage_sentences(t, x) for t, x in docs]
        encoded = featurizer.encode(q.question, [gold, *others])
        lengths = [len(x) for x in tok([*gold.sentences], add_special_tokens=False)["input_ids"]]
        for j, lab in enumerate(labels):
            samples.append(
                Sample(q.index, encoded[j], lab, True, False, lengths[j], gold.sentences[j])
            )
        cand: list[tuple[int, str, bool]] = []
        cursor = len(gold.sentences)
        for p in others:
            for s in p.sentences:
                cand.append((cursor, s, answer_in_text(answers, s)))
                cursor += 1
        if retrieved_sentences is not None:
            clean = [c for c in cand if not c[2]]
            if rng is None:
                msg = "sampling retrieved sentences needs an rng"
                raise ConfigError(msg)
            cand = rng.sample(clean, min(retrieved_sentences, len(clean)))
            cand.sort()
        if not cand:
            continue
        lengths = [
            len(x) for x in tok([s for _, s, _ in cand], add_special_tokens=False)["input_ids"]
        ]
        for (i, text, amb), n in zip(cand, lengths, strict=True):
            samples.append(Sample(q.index, encoded[i], int(amb), False, amb, n, text))
    return samples


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


def adaptive_curve(
    samples: Sequence[Sample],
    probs: np.ndarray,
    answers: dict[int, list[str]],
    texts: Sequence[str],
    thresholds: Sequence[float],
) -> list[dict[str, float]]:
    """Answer-in-context recall and kept share of tokens of adaptive selection per threshold.

    Each question's candidates are its validation sentences (gold passage plus retrieved ones);
    as in the compressor, at least the most probable sentence is kept.
    """
    by_q: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_q.setdefault(s.question, []).append(i)
    rows = []
    for t in thresholds:
        hits, kept_share, kept_n = [], [], []
        for q, idx in by_q.items():
            keep = [i for i in idx if probs[i] >= t] or [max(idx, key=lambda i: probs[i])]
            hits.append(answer_in_text(answers[q], " ".join(texts[i] for i in keep)))
            kept_share.append(
                sum(samples[i].tokens for i in keep) / sum(samples[i].tokens for i in idx)
            )
            kept_n.append(len(keep))
        rows.append(
            {
                "threshold": float(t),
                "answer_in_context_recall": float(np.mean(hits)),
                "kept_token_share": float(np.mean(kept_share)),
                "kept_sentences": float(np.mean(kept_n)),
            }
        )
    return rows


def evaluate(samples: Sequence[Sample], probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Sentence-level validation figures at ``threshold`` (ambiguous sentences left out)."""
    clean = [i for i, s in enumerate(samples) if not s.ambiguous]
    y = np.array([samples[i].label for i in clean])
    p = probs[clean]
    pred = p >= threshold
    gold = [i for i in clean if samples[i].gold]
    by_q: dict[int, list[int]] = {}
    for i in clean:
        by_q.setdefault(samples[i].question, []).append(i)
    top1 = [samples[max(idx, key=lambda i: probs[i])].label for idx in by_q.values()]
    return {
        "sentences": len(clean),
        "positives": int(y.sum()),
        "questions": len(by_q),
        "auc": auc(y, p),
        "auc_within_gold_passage": within_question_auc([samples[i] for i in gold], probs[gold]),
        "accuracy": float((pred == y.astype(bool)).mean()),
        "answer_sentence_recall": float(pred[y == 1].mean()),
        "precision": float(y[pred].mean()) if pred.any() else math.nan,
        "top1_is_answer_sentence": float(np.mean(top1)),
    }


def choose_threshold(curve: Sequence[dict[str, float]], full_recall: float, share: float) -> float:
    """The highest threshold whose recall is at least ``share`` of the whole context's."""
    ok = [r["threshold"] for r in curve if r["answer_in_context_recall"] >= share * full_recall]
    return max(ok) if ok else min(r["threshold"] for r in curve)


def run(cfg: TrainConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, validate and save; returns the ``training.json`` record."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
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
    bm25_train = BM25Negatives(train_docs)
    train_samples = build_samples(
        train_q,
        bm25_train.top(train_q, cfg.retrieved_passages),
        featurizer,
        rng=rng,
        retrieved_sentences=cfg.retrieved_sentences,
    )
    bm25_val = BM25Negatives([*train_docs, *nq_split("val", examples=examples)])
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
        "time": {
            "hardware": f"{os.cpu_count()} CPU cores shared with other jobs, no GPU",
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
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


def _parse(argv: Sequence[str]) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m ragzip.training.sentence",
        description="Train the EXIT-style sentence classifier on the NQ-open train split.",
    )
    defaults = TrainConfig()
    ints = (
        "seed",
        "n_frozen",
        "head_hidden",
        "epochs",
        "batch_size",
        "retrieved_passages",
        "retrieved_sentences",
        "val_passages",
        "threads",
    )
    floats = ("lr", "head_lr", "weight_decay", "warmup", "threshold_recall")
    for f in ("data_dir", "out"):
        parser.add_argument(f"--{f.replace('_', '-')}", default=getattr(defaults, f))
    for f in ints:
        parser.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(defaults, f))
    for f in floats:
        parser.add_argument(f"--{f.replace('_', '-')}", type=float, default=getattr(defaults, f))
    for f in ("train_limit", "val_limit"):
        parser.add_argument(f"--{f.replace('_', '-')}", type=int, default=None)
    for f, value in asdict(defaults.limits).items():
        parser.add_argument(f"--max-{f}-tokens", type=int, default=value, dest=f"limit_{f}")
    args = vars(parser.parse_args(list(argv)))
    limits = InputLimits(**{k[6:]: args.pop(k) for k in list(args) if k.startswith("limit_")})
    return TrainConfig(**args, limits=limits)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record = run(_parse(args), args)
    logger.info("validation: %s", json.dumps(record["validation"]["at_threshold"]))
    logger.info("time: %s", json.dumps(record["time"]))


if __name__ == "__main__":
    main()
