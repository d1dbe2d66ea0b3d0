"""Training the adapter: gold-answer cross-entropy and self-distillation from full text."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.datasets import NQExample, load_nq, nq_split
from ragzip.machine import machine_info
from ragzip.prompts import SOFT_PLACEHOLDER, build_messages
from ragzip.training.common import own_random_state
from ragzip.training.merge.config import TrainConfig
from ragzip.training.merge.contexts import retrieve_contexts, soft_messages
from ragzip.types import Budget, Passage

if TYPE_CHECKING:
    import torch

    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.merge.compressor import MergeCompressor

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ training


@dataclass
class _Example:
    prompt_ids: list[int]  # chat prompt with placeholders, generation prompt included
    answer_ids: list[int]  # answer tokens + end of turn
    vectors: np.ndarray  # merged, un-adapted
    teacher_ids: list[int] | None  # full-text prompt, for self-distillation
    ratio: float


def _prompt_ids(tokenizer: Any, messages: Sequence[Any]) -> list[int]:
    text = tokenizer.apply_chat_template(
        [m.to_dict() for m in messages], add_generation_prompt=True, tokenize=False
    )
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def _answer_ids(tokenizer: Any, answer: str) -> list[int]:
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [int(i) for i in tokenizer(answer, add_special_tokens=False)["input_ids"]] + [int(end)]


def build_example(
    compressor: MergeCompressor,
    question: NQExample,
    context: Sequence[Passage],
    ratio: float,
    *,
    teacher: bool,
) -> _Example:
    """Merge one question's context and tokenise its prompt and answer."""
    result = compressor.compress(question.question, list(context), budget=Budget.compression(ratio))
    tok = compressor.tokenizer
    assert result.embeddings is not None
    teacher_ids = (
        _prompt_ids(tok, build_messages(question.question, [p.text for p in context]))
        if teacher
        else None
    )
    return _Example(
        prompt_ids=_prompt_ids(tok, soft_messages(result)),
        answer_ids=_answer_ids(tok, question.answers[0]),
        vectors=result.embeddings,
        teacher_ids=teacher_ids,
        ratio=ratio,
    )


def _student_logits(model: Any, adapter: Adapter, ex: _Example, placeholder: int) -> torch.Tensor:
    """Logits over the answer positions with the adapted vectors spliced in."""
    import torch

    ids = torch.tensor(ex.prompt_ids + ex.answer_ids, dtype=torch.long)
    embeds = model.get_input_embeddings()(ids).detach()
    positions = (ids == placeholder).nonzero().flatten()
    vectors = adapter(torch.from_numpy(ex.vectors))
    embeds = embeds.index_put((positions,), vectors)
    logits = model(inputs_embeds=embeds[None]).logits[0]
    start = len(ex.prompt_ids) - 1
    return logits[start : start + len(ex.answer_ids)]


def _teacher_logprobs(model: Any, ex: _Example) -> torch.Tensor:
    import torch

    assert ex.teacher_ids is not None
    ids = torch.tensor([ex.teacher_ids + ex.answer_ids], dtype=torch.long)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0]
    start = len(ex.teacher_ids) - 1
    return torch.log_softmax(logits[start : start + len(ex.answer_ids)].float(), dim=-1).clone()


def example_loss(
    model: Any, adapter: Adapter, ex: _Example, placeholder: int, kl_weight: float
) -> tuple[torch.Tensor, float]:
    """Training loss of one example and its answer cross-entropy (for logging)."""
    import torch
    import torch.nn.functional as F

    logits = _student_logits(model, adapter, ex, placeholder)
    target = torch.tensor(ex.answer_ids, dtype=torch.long)
    ce = F.cross_entropy(logits, target)
    loss = ce
    if kl_weight > 0 and ex.teacher_ids is not None:
        teacher = _teacher_logprobs(model, ex)
        student = torch.log_softmax(logits, dim=-1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
        loss = ce + kl_weight * kl
    return loss, float(ce.detach())


def validate(
    model: Any, adapter: Adapter, examples: Sequence[_Example], placeholder: int
) -> dict[str, float]:
    """Mean answer cross-entropy per ratio (``"4x"``: ...) and over all examples."""
    import torch
    import torch.nn.functional as F

    by_ratio: dict[str, list[float]] = {}
    adapter.eval()
    with torch.no_grad():
        for ex in examples:
            logits = _student_logits(model, adapter, ex, placeholder)
            ce = F.cross_entropy(logits, torch.tensor(ex.answer_ids, dtype=torch.long))
            by_ratio.setdefault(f"{ex.ratio:g}x", []).append(float(ce))
    adapter.train()
    out = {key: float(np.mean(v)) for key, v in sorted(by_ratio.items())}
    out["mean"] = float(np.mean([x for v in by_ratio.values() for x in v]))
    return out


@own_random_state
def train(config: TrainConfig, *, command: str) -> dict[str, Any]:
    """Train an adapter and write it with ``training.json`` to ``config.out``.

    Returns:
        The training record written to ``training.json``.
    """
    import torch

    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.merge.compressor import MergeCompressor
    from ragzip.models import load_smollm2, smollm2_counter

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    ratios = config.ratio_list()
    t_start = time.perf_counter()
    cpu_start = time.process_time()

    model, tokenizer = load_smollm2("cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    compressor = MergeCompressor(counter=smollm2_counter(), model=model, tokenizer=tokenizer)
    placeholder = int(tokenizer.convert_tokens_to_ids(SOFT_PLACEHOLDER))
    all_nq = load_nq(config.data_dir)
    train_q = nq_split("train", examples=all_nq)
    val_q = nq_split("val", examples=all_nq)[: config.val_examples]
    train_ctx = retrieve_contexts(
        train_q, all_nq, k=config.k, index_cache=config.index_cache, ensure_gold=True
    )
    val_ctx = retrieve_contexts(
        val_q, all_nq, k=config.k, index_cache=config.index_cache, ensure_gold=True
    )
    teacher = config.kl_weight > 0
    val_set = [
        build_example(compressor, q, c, r, teacher=False)
        for q, c in zip(val_q, val_ctx, strict=True)
        for r in ratios
    ]
    t_data = time.perf_counter()
    logger.info(
        "data ready in %.1f s: %d train, %d val", t_data - t_start, len(train_q), len(val_set)
    )

    norms = np.linalg.norm(compressor.table, axis=1)
    scale = float(np.median(norms) / math.sqrt(compressor.dim))
    adapter = Adapter(compressor.dim, rank=config.rank, scale=scale)
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    curve: list[dict[str, Any]] = []
    val0 = validate(model, adapter, val_set, placeholder)
    val_curve: list[dict[str, Any]] = [{"step": 0, **val0}]
    logger.info("step 0 val %s", val0)
    best = (val0["mean"], 0, {k: v.clone() for k, v in adapter.state_dict().items()})
    order = list(range(len(train_q)))
    rng.shuffle(order)
    cursor = 0
    step = 0
    deadline = time.perf_counter() + config.minutes * 60
    loop_seconds = 0.0
    window: list[float] = []
    while step < config.max_steps and time.perf_counter() < deadline:
        t_step = time.perf_counter()
        optimizer.zero_grad()
        for _ in range(config.accumulate):
            if cursor == len(order):
                rng.shuffle(order)
                cursor = 0
            i = order[cursor]
            cursor += 1
            ex = build_example(
                compressor, train_q[i], train_ctx[i], rng.choice(ratios), teacher=teacher
            )
            loss, ce = example_loss(model, adapter, ex, placeholder, config.kl_weight)
            (loss / config.accumulate).backward()
            window.append(ce)
        # cosine decay over the expected number of steps, from the pace so far
        elapsed = time.perf_counter() - (deadline - config.minutes * 60)
        progress = min(1.0, elapsed / (config.minutes * 60))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * progress))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        loop_seconds += time.perf_counter() - t_step
        if step % 10 == 0:
            curve.append(
                {"step": step, "examples": step * config.accumulate, "ce": float(np.mean(window))}
            )
            logger.info("step %d ce %.4f (%.2f s/step)", step, curve[-1]["ce"], loop_seconds / step)
            window = []
        if step % config.val_every == 0:
            val = validate(model, adapter, val_set, placeholder)
            val_curve.append({"step": step, **val})
            logger.info("step %d val %s", step, val)
            if val["mean"] < best[0]:
                best = (val["mean"], step, {k: v.clone() for k, v in adapter.state_dict().items()})
    if not val_curve or val_curve[-1]["step"] != step:
        val = validate(model, adapter, val_set, placeholder)
        val_curve.append({"step": step, **val})
        logger.info("step %d val %s", step, val)
        if val["mean"] < best[0]:
            best = (val["mean"], step, {k: v.clone() for k, v in adapter.state_dict().items()})
    adapter.load_state_dict(best[2])
    out = Path(config.out)
    n_params = sum(p.numel() for p in adapter.parameters())
    adapter.save(out, extra={"parameters": n_params, "trained_steps": best[1]})
    record = {
        "command": command,
        "config": asdict(config),
        "method": "COMI-style merge adapter: frozen SmolLM2-135M-Instruct, answer cross-entropy"
        + (" + self-distillation KL" if teacher else ""),
        "data": {"train_questions": len(train_q), "val_examples": len(val_set), "k": config.k},
        "adapter_parameters": n_params,
        "steps": step,
        "examples_seen": step * config.accumulate,
        "seconds_per_step": loop_seconds / max(step, 1),
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "data_seconds": t_data - t_start,
        "train_curve": curve,
        "val_curve": val_curve,
        "best_step": best[1],
        "best_val_ce": best[0],
        "untrained_val_ce": val0["mean"],
        "machine": machine_info(),
    }
    (out / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record
