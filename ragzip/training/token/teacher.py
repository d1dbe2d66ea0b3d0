"""The teacher: SmolLM2's per-word loss reductions, cached on disk."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip.core.types import Span

logger = logging.getLogger(__name__)

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
    from ragzip.weights import load_smollm2

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
