"""Training the adapter: gold-answer cross-entropy and self-distillation from full text."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.core.machine import machine_info
from ragzip.core.types import Budget, Passage
from ragzip.experiments.datasets import NQExample, load_nq, nq_split
from ragzip.generators.rendering import PromptRenderer
from ragzip.prompts import build_messages
from ragzip.training.common import Checkpoint, own_random_state
from ragzip.training.merge.config import TrainConfig
from ragzip.training.merge.contexts import retrieve_contexts, soft_messages

if TYPE_CHECKING:
    import torch

    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.merge.compressor import MergeCompressor

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ training


@dataclass
class _Example:
    prompt_ids: list[int]  # prompt with placeholders, generation prompt included
    positions: list[int]  # where the vectors go in it
    answer_ids: list[int]  # answer tokens + end of turn
    vectors: np.ndarray  # un-adapted
    merged: np.ndarray  # which vectors are merged (adapted); the others are kept tokens
    teacher_ids: list[int] | None  # full-text prompt, for self-distillation
    ratio: float


def build_example(
    compressor: MergeCompressor,
    renderer: PromptRenderer,
    question: NQExample,
    context: Sequence[Passage],
    ratio: float,
    *,
    teacher: bool,
) -> _Example:
    """Merge one question's context and tokenise its prompt and answer."""
    request = compressor.request(question.question, context, budget=Budget.compression(ratio))
    rows = compressor.rows(request)
    teacher_ids = (
        list(renderer.ids(build_messages(question.question, [p.text for p in context])).ids)
        if teacher
        else None
    )
    prompt = renderer.ids(soft_messages(question.question, rows.counts))
    return _Example(
        prompt_ids=list(prompt.ids),
        positions=list(prompt.soft_positions),
        answer_ids=renderer.answer_ids(question.answers[0]),
        vectors=rows.vectors,
        merged=rows.merged,
        teacher_ids=teacher_ids,
        ratio=ratio,
    )


def _student_logits(model: Any, adapter: Adapter, ex: _Example) -> torch.Tensor:
    """Logits over the answer positions with the vectors spliced in, merged ones adapted."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor(ex.prompt_ids + ex.answer_ids, dtype=torch.long, device=device)
    embeds = model.get_input_embeddings()(ids).detach()
    positions = torch.tensor(ex.positions, dtype=torch.long, device=device)
    vectors = torch.from_numpy(ex.vectors).to(device)
    merged = torch.from_numpy(ex.merged).to(device)
    vectors = torch.where(merged[:, None], adapter(vectors), vectors)
    embeds = embeds.index_put((positions,), vectors.to(embeds.dtype))
    logits = model(inputs_embeds=embeds[None]).logits[0]
    start = len(ex.prompt_ids) - 1
    return logits[start : start + len(ex.answer_ids)].float()


def _teacher_logprobs(model: Any, ex: _Example) -> torch.Tensor:
    import torch

    assert ex.teacher_ids is not None
    device = next(model.parameters()).device
    ids = torch.tensor([ex.teacher_ids + ex.answer_ids], dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0]
    start = len(ex.teacher_ids) - 1
    return torch.log_softmax(logits[start : start + len(ex.answer_ids)].float(), dim=-1).clone()


def example_loss(
    model: Any, adapter: Adapter, ex: _Example, kl_weight: float
) -> tuple[torch.Tensor, float]:
    """Training loss of one example and its answer cross-entropy (for logging)."""
    import torch
    import torch.nn.functional as F

    logits = _student_logits(model, adapter, ex)
    target = torch.tensor(ex.answer_ids, dtype=torch.long, device=logits.device)
    ce = F.cross_entropy(logits, target)
    loss = ce
    if kl_weight > 0 and ex.teacher_ids is not None:
        teacher = _teacher_logprobs(model, ex)
        student = torch.log_softmax(logits, dim=-1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
        loss = ce + kl_weight * kl
    return loss, float(ce.detach())


def validate(model: Any, adapter: Adapter, examples: Sequence[_Example]) -> dict[str, float]:
    """Mean answer cross-entropy per ratio (``"4x"``: ...) and over all examples."""
    import torch
    import torch.nn.functional as F

    by_ratio: dict[str, list[float]] = {}
    adapter.eval()
    with torch.no_grad():
        for ex in examples:
            logits = _student_logits(model, adapter, ex)
            target = torch.tensor(ex.answer_ids, dtype=torch.long, device=logits.device)
            ce = F.cross_entropy(logits, target)
            by_ratio.setdefault(f"{ex.ratio:g}x", []).append(float(ce))
    adapter.train()
    out = {key: float(np.mean(v)) for key, v in sorted(by_ratio.items())}
    out["mean"] = float(np.mean([x for v in by_ratio.values() for x in v]))
    return out


@own_random_state
def train(config: TrainConfig, *, command: str, resume: bool = True) -> dict[str, Any]:
    """Train an adapter for ``config.generator`` and write it with ``training.json`` to
    ``config.out``.

    A checkpoint is saved at every validation; with ``resume`` a run with the same settings
    goes on from it (``minutes`` counts the loop time of all runs together).

    Returns:
        The training record written to ``training.json``.
    """
    import torch

    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.merge.compressor import MergeCompressor
    from ragzip.core.tokenization import HFTokenCounter
    from ragzip.generators.local import load_causal_lm
    from ragzip.generators.target import load_target

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    ratios = config.ratio_list()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out = Path(config.out)
    checkpoint = Checkpoint(out, asdict(config))
    saved = checkpoint.load() if resume else None

    target = load_target(config.generator)
    model, tokenizer = load_causal_lm(config.generator, config.device)
    for p in model.parameters():
        p.requires_grad_(False)
    renderer = PromptRenderer(tokenizer)
    compressor = MergeCompressor(
        MergeCompressor.Config(generator=config.generator, text_share=config.text_share),
        counter=HFTokenCounter(tokenizer, name=target.name),
        model=model,
        tokenizer=tokenizer,
    )
    all_nq = load_nq(config.data_dir)
    train_q = nq_split("train", examples=all_nq)[: config.train_n or None]
    val_q = nq_split("val", examples=all_nq)[: config.val_examples]
    train_ctx = retrieve_contexts(
        train_q, all_nq, k=config.k, index_cache=config.index_cache, ensure_gold=True
    )
    val_ctx = retrieve_contexts(
        val_q, all_nq, k=config.k, index_cache=config.index_cache, ensure_gold=True
    )
    teacher = config.kl_weight > 0
    val_set = [
        build_example(compressor, renderer, q, c, r, teacher=False)
        for q, c in zip(val_q, val_ctx, strict=True)
        for r in ratios
    ]
    t_data = time.perf_counter()
    logger.info(
        "data ready in %.1f s: %d train, %d val", t_data - t_start, len(train_q), len(val_set)
    )

    norms = np.linalg.norm(compressor.table, axis=1)
    scale = float(np.median(norms) / math.sqrt(compressor.dim))
    adapter = Adapter(compressor.dim, rank=config.rank, scale=scale).to(model.device)
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    order = list(range(len(train_q)))
    rng.shuffle(order)
    run = _Run(order=order)
    if saved is not None:
        adapter.load_state_dict(saved["adapter"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        run = _Run(**saved["run"])
        run.resumed_at.append(run.step)
        logger.info("resuming %s at step %d (%.0f s trained)", out, run.step, run.loop_seconds)
    else:
        val0 = validate(model, adapter, val_set)
        run.val_curve.append({"step": 0, **val0})
        run.untrained = val0["mean"]
        run.best = (val0["mean"], 0)
        run.best_state = {k: v.detach().cpu().clone() for k, v in adapter.state_dict().items()}
        logger.info("step 0 val %s", val0)
    budget = config.minutes * 60
    window: list[float] = []

    def save_checkpoint() -> None:
        checkpoint.save(
            {
                "adapter": adapter.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "run": asdict(run),
            }
        )

    def validate_now() -> None:
        val = validate(model, adapter, val_set)
        run.val_curve.append({"step": run.step, **val})
        logger.info("step %d val %s", run.step, val)
        if val["mean"] < run.best[0]:
            run.best = (val["mean"], run.step)
            run.best_state = {k: v.detach().cpu().clone() for k, v in adapter.state_dict().items()}
        save_checkpoint()

    while run.step < config.max_steps and run.loop_seconds < budget:
        t_step = time.perf_counter()
        optimizer.zero_grad()
        for _ in range(config.accumulate):
            if run.cursor == len(run.order):
                rng.shuffle(run.order)
                run.cursor = 0
            i = run.order[run.cursor]
            run.cursor += 1
            ex = build_example(
                compressor, renderer, train_q[i], train_ctx[i], rng.choice(ratios), teacher=teacher
            )
            loss, ce = example_loss(model, adapter, ex, config.kl_weight)
            (loss / config.accumulate).backward()
            window.append(ce)
        # cosine decay over the time budget
        progress = min(1.0, run.loop_seconds / budget) if budget > 0 else 1.0
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * progress))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        run.step += 1
        run.loop_seconds += time.perf_counter() - t_step
        if run.step % 10 == 0:
            run.curve.append(
                {
                    "step": run.step,
                    "examples": run.step * config.accumulate,
                    "ce": float(np.mean(window)),
                }
            )
            logger.info(
                "step %d ce %.4f (%.2f s/step, %.0f of %.0f s)",
                run.step, run.curve[-1]["ce"], run.loop_seconds / run.step,
                run.loop_seconds, budget,
            )  # fmt: skip
            window = []
        if run.step % config.val_every == 0:
            validate_now()
    if run.val_curve[-1]["step"] != run.step:
        validate_now()
    adapter.load_state_dict(run.best_state)
    n_params = sum(p.numel() for p in adapter.parameters())
    adapter.cpu().save(
        out,
        target=target,
        extra={
            "parameters": n_params,
            "trained_steps": run.best[1],
            "text_share": config.text_share,
        },
    )
    record = {
        "command": command,
        "config": asdict(config),
        "generator": target.to_dict(),
        "method": f"COMI-style merge adapter: frozen {target.name}, answer cross-entropy"
        + (" + self-distillation KL" if teacher else ""),
        "data": {"train_questions": len(train_q), "val_examples": len(val_set), "k": config.k},
        "adapter_parameters": n_params,
        "steps": run.step,
        "examples_seen": run.step * config.accumulate,
        "seconds_per_step": run.loop_seconds / max(run.step, 1),
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "data_seconds": t_data - t_start,
        "train_curve": run.curve,
        "val_curve": run.val_curve,
        "best_step": run.best[1],
        "best_val_ce": run.best[0],
        "untrained_val_ce": run.untrained,
        "resumed_at": run.resumed_at,
        "machine": machine_info(),
    }
    (out / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    checkpoint.remove()
    return record


@dataclass
class _Run:
    """Where a training run stands (saved in its checkpoint)."""

    order: list[int]
    cursor: int = 0
    step: int = 0
    loop_seconds: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)
    val_curve: list[dict[str, Any]] = field(default_factory=list)
    untrained: float = math.nan
    best: tuple[float, int] = (math.inf, 0)
    best_state: dict[str, Any] = field(default_factory=dict)
    resumed_at: list[int] = field(default_factory=list)
