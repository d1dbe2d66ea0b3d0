"""Train the xRAG projector of :mod:`ragzip.compressors.xrag` on CPU.

Recipe after xRAG (Cheng et al., 2024, *xRAG: Extreme Context Compression for
Retrieval-augmented Generation with One Token*, arXiv:2405.13792), at CPU scale. The retriever's
encoder (all-MiniLM-L6-v2) and the generator (SmolLM2-135M-Instruct) stay frozen; only the
projector from a passage's sentence embedding to one input embedding of the generator learns.

* **Stage 1, paraphrase pretraining.** The prompt is the RAG prompt of
  :func:`ragzip.prompts.build_messages` whose one context passage is the placeholder token, with
  a "repeat the context" instruction; the target is the passage itself (its first
  ``recon_tokens`` tokens, teacher-forced). Loss: cross-entropy on the passage tokens.
* **Stage 2, question answering with self-distillation.** The prompt is exactly the inference
  prompt: the question and the placeholder for its gold passage. The target is the first
  accepted answer and the end-of-turn token. Loss: cross-entropy on the answer plus
  ``kl_weight`` times KL(teacher ‖ student) on the answer positions, where the teacher is the
  same frozen model given the full passage text in place of the placeholder.

Data: the NQ-open **train** split (1,200 questions with gold passages) for training; the first
``val_n`` questions of the **val** split for the curves. The test split is never read here.

Run from the project root (one thread, about half an hour on a laptop core)::

    python -m ragzip.training.xrag --out compressors/weights/xrag

Everything is seeded with generator objects (no global seeding); ``training.json`` beside the
weights records the command, settings, per-step losses, validation curves and timings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ragzip.compressors.xrag import (
    Projector,
    XragCompressor,
    init_projector,
    passage_input,
    save_projector,
)
from ragzip.errors import ConfigError
from ragzip.evaluation.data import NQExample, load_nq, nq_split
from ragzip.prompts import build_messages

logger = logging.getLogger(__name__)

SOFT_PLACEHOLDER = "<empty_output>"
"""The one-token stand-in a soft vector replaces (see the soft-compressor contract)."""
RECON_SYSTEM_PROMPT = "Repeat the context word for word."
RECON_QUERY = "Repeat the context."


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        data_dir: Folder with ``nq_open_dev.jsonl.gz`` (``None``: ``../shared/data``).
        out: Folder for ``config.json``, ``model.safetensors``, ``training.json`` and the
            stage-1 checkpoint (``stage1/``).
        seed: Seed of the projector initialisation and the example order.
        hidden: Projector hidden width.
        stage1_examples: Paraphrase examples (train passages, one pass, shuffled).
        stage2_examples: Question-answering examples (train questions, one pass, shuffled).
        accum: Examples per optimizer step (gradient accumulation).
        lr1: Peak learning rate of stage 1.
        lr2: Peak learning rate of stage 2.
        warmup: Fraction of each stage's steps with linear warm-up (then cosine decay).
        recon_tokens: Passage tokens the paraphrase target keeps.
        kl_weight: Weight of the distillation term in stage 2.
        val_n: Validation questions (first of the val split) for the curves.
        eval_every: Optimizer steps between validation points.
        threads: torch CPU threads.
    """

    data_dir: str | None = None
    out: str = "compressors/weights/xrag"
    seed: int = 0
    hidden: int = 1536
    stage1_examples: int = 640
    stage2_examples: int = 640
    accum: int = 8
    lr1: float = 1e-3
    lr2: float = 3e-4
    warmup: float = 0.05
    recon_tokens: int = 48
    kl_weight: float = 1.0
    val_n: int = 32
    eval_every: int = 20
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("accum", "recon_tokens", "val_n", "eval_every", "threads", "hidden"):
            if getattr(self, name) < 1:
                msg = f"{name} must be >= 1, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.stage1_examples < 0 or self.stage2_examples < 0:
            msg = "stage1_examples and stage2_examples must be >= 0"
            raise ConfigError(msg)


class SoftLM:
    """The frozen generator, fed prompts with soft tokens spliced in, with losses on targets.

    Args:
        model: SmolLM2 (``LlamaForCausalLM``), frozen here.
        tokenizer: Its tokenizer with the chat template.
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        from ragzip.generators.embedded import EmbeddedGenerator

        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.generator = EmbeddedGenerator(model, tokenizer)
        self.placeholder_id = int(tokenizer.convert_tokens_to_ids(SOFT_PLACEHOLDER))
        self.eos_id = int(tokenizer.eos_token_id)

    def prompt_ids(
        self, query: str, context: Sequence[str], system: str | None = None
    ) -> list[int]:
        """Chat-template ids of the RAG prompt, as the generator renders it."""
        if system is None:
            messages = build_messages(query, context)
        else:
            messages = build_messages(query, context, system_prompt=system)
        return self.generator.prompt_ids(messages)

    def target_ids(self, text: str, *, limit: int | None = None, eos: bool = True) -> list[int]:
        """Token ids of a teacher-forced target (optionally cut, then end-of-turn)."""
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        if limit is not None:
            ids = ids[:limit]
        return [*ids, self.eos_id] if eos else ids

    def target_logits(
        self, prompt: list[int], target: list[int], soft: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits ``(len(target), vocab)`` predicting each target token after ``prompt``.

        ``soft`` (``(n, hidden)``) replaces the placeholder tokens of ``prompt`` in order; the
        gradient flows into it, never into the frozen model.
        """
        ids = torch.tensor([prompt + target], dtype=torch.long)
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            base = embed(ids)
        if soft is not None:
            mask = (ids == self.placeholder_id)[0]
            positions = mask.nonzero().flatten()
            if positions.numel() != soft.shape[0]:
                msg = f"{positions.numel()} placeholders for {soft.shape[0]} soft tokens"
                raise ConfigError(msg)
            index = torch.zeros(ids.shape[1], dtype=torch.long)
            index[positions] = torch.arange(positions.numel())
            spliced = soft[index].unsqueeze(0)
            base = torch.where(mask[None, :, None], spliced, base)
        hidden = self.model.model(inputs_embeds=base).last_hidden_state
        start = len(prompt) - 1
        out: torch.Tensor = self.model.lm_head(hidden[0, start : start + len(target)])
        return out


@dataclass
class Curve:
    """Losses over a stage: one entry per optimizer step and per validation point."""

    steps: list[dict[str, float]]
    val: list[dict[str, float]]


def embed_passages(examples: Sequence[NQExample]) -> np.ndarray:
    """MiniLM embeddings of the examples' gold passages (``(n, 384)``, unit norm)."""
    from ragzip.models import load_embedder

    embedder = load_embedder("cpu")
    out = embedder.encode(
        [passage_input(ex.title, ex.text) for ex in examples],
        batch_size=32,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(out, dtype=np.float32)


def _lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    warm = max(1, round(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Runs both stages over precomputed passage embeddings.

    Args:
        config: Settings.
        lm: The frozen generator wrapper.
        train: Training questions; ``train_vecs`` their passage embeddings.
        val: Validation questions; ``val_vecs`` their passage embeddings.
    """

    def __init__(
        self,
        config: TrainConfig,
        lm: SoftLM,
        train: Sequence[NQExample],
        train_vecs: np.ndarray,
        val: Sequence[NQExample],
        val_vecs: np.ndarray,
    ) -> None:
        self.config = config
        self.lm = lm
        self.train = list(train)
        self.train_vecs = torch.as_tensor(train_vecs)
        self.val = list(val)
        self.val_vecs = torch.as_tensor(val_vecs)
        self.projector = init_projector(config.hidden, seed=config.seed)
        self.rng = random.Random(config.seed)
        self._recon_prompt = lm.prompt_ids(RECON_QUERY, [SOFT_PLACEHOLDER], RECON_SYSTEM_PROMPT)

    # -- losses ----------------------------------------------------------------------------

    def recon_loss(self, projector: Projector, ex: NQExample, vec: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of regenerating the passage from its soft token (stage 1)."""
        target = self.lm.target_ids(ex.text, limit=self.config.recon_tokens, eos=False)
        logits = self.lm.target_logits(self._recon_prompt, target, projector(vec[None]))
        return F.cross_entropy(logits, torch.tensor(target))

    def qa_loss(
        self, projector: Projector, ex: NQExample, vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy on the gold answer and KL towards the full-text teacher (stage 2)."""
        target = self.lm.target_ids(ex.answers[0])
        student = self.lm.target_logits(
            self.lm.prompt_ids(ex.question, [SOFT_PLACEHOLDER]), target, projector(vec[None])
        )
        with torch.no_grad():
            teacher = self.lm.target_logits(
                self.lm.prompt_ids(ex.question, [ex.text]), target, None
            )
        ce = F.cross_entropy(student, torch.tensor(target))
        kl = F.kl_div(
            F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True,
            reduction="batchmean",
        )  # fmt: skip
        return ce, kl

    # -- validation ------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self, projector: Projector, *, qa: bool, recon: bool) -> dict[str, float]:
        """Mean validation reconstruction CE and/or answer CE and KL of ``projector``."""
        out: dict[str, float] = {}
        if recon:
            losses = [
                float(self.recon_loss(projector, ex, v))
                for ex, v in zip(self.val, self.val_vecs, strict=True)
            ]
            out["recon_ce"] = float(np.mean(losses))
        if qa:
            ces, kls = [], []
            for ex, v in zip(self.val, self.val_vecs, strict=True):
                ce, kl = self.qa_loss(projector, ex, v)
                ces.append(float(ce))
                kls.append(float(kl))
            out["qa_ce"] = float(np.mean(ces))
            out["qa_kl"] = float(np.mean(kls))
        return out

    @torch.no_grad()
    def reference_losses(self) -> dict[str, float]:
        """Answer CE on the val questions without context and with the full gold passage."""
        none, full = [], []
        for ex in self.val:
            target = self.lm.target_ids(ex.answers[0])
            t = torch.tensor(target)
            logits = self.lm.target_logits(self.lm.prompt_ids(ex.question, []), target, None)
            none.append(float(F.cross_entropy(logits, t)))
            logits = self.lm.target_logits(self.lm.prompt_ids(ex.question, [ex.text]), target, None)
            full.append(float(F.cross_entropy(logits, t)))
        return {"qa_ce_no_context": float(np.mean(none)), "qa_ce_full_text": float(np.mean(full))}

    # -- stages ----------------------------------------------------------------------------

    def run_stage(self, stage: int) -> Curve:
        """One pass of stage 1 (paraphrase) or 2 (QA + distillation) over shuffled examples."""
        cfg = self.config
        n = cfg.stage1_examples if stage == 1 else cfg.stage2_examples
        order = list(range(len(self.train)))
        self.rng.shuffle(order)
        order = (order * math.ceil(n / max(1, len(order))))[:n]
        total_steps = math.ceil(n / cfg.accum)
        peak = cfg.lr1 if stage == 1 else cfg.lr2
        opt = torch.optim.AdamW(self.projector.parameters(), lr=peak, weight_decay=0.0)
        curve = Curve(steps=[], val=[])
        is_qa = stage == 2
        t_stage = time.perf_counter()
        curve.val.append({"step": 0, **self.validate(self.projector, qa=is_qa, recon=True)})
        logger.info("stage %d step 0 val %s", stage, curve.val[-1])
        for step in range(total_steps):
            batch = order[step * cfg.accum : (step + 1) * cfg.accum]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total_steps, peak, cfg.warmup)
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            sums = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
            for i in batch:
                ex, vec = self.train[i], self.train_vecs[i]
                if is_qa:
                    ce, kl = self.qa_loss(self.projector, ex, vec)
                    loss = ce + cfg.kl_weight * kl
                    sums["kl"] += float(kl.detach())
                else:
                    ce = self.recon_loss(self.projector, ex, vec)
                    loss = ce
                (loss / len(batch)).backward()
                sums["loss"] += float(loss.detach())
                sums["ce"] += float(ce.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.projector.parameters(), 1.0))
            opt.step()
            row = {k: v / len(batch) for k, v in sums.items() if is_qa or k != "kl"}
            row.update(
                step=step + 1,
                lr=opt.param_groups[0]["lr"],
                grad_norm=grad_norm,
                seconds=time.perf_counter() - t0,
            )
            curve.steps.append(row)
            if (step + 1) % cfg.eval_every == 0 or step + 1 == total_steps:
                val = self.validate(self.projector, qa=is_qa, recon=True)
                curve.val.append({"step": step + 1, **val})
                logger.info(
                    "stage %d step %d/%d train %.3f val %s (%.0f s)",
                    stage, step + 1, total_steps, row["loss"], val,
                    time.perf_counter() - t_stage,
                )  # fmt: skip
        return curve


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

    torch.set_num_threads(config.threads)
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
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "threads": config.threads,
        },
    }
    save_projector(trainer.projector, out, extra={"stage": 2, "compressor": XragCompressor.name})
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_curves(record, out / "curves.png")
    return record


@dataclass(frozen=True)
class Setting:
    """One row of the answer evaluation: a compressor at a budget."""

    label: str
    compressor: Any
    budget: Any
    with_context: bool = True
    """``False``: the question alone (the no-context baseline)."""


def prefill_gflops(model: Any, prompt_tokens: float) -> float:
    """Prefill cost estimate ``2 · params · tokens`` in GFLOP (input-embedding table excluded).

    The embedding lookup costs no multiply-adds; SmolLM2 ties it to the output head, which the
    estimate keeps once (it runs on the last position at least).
    """
    n = sum(p.numel() for p in model.parameters())
    return 2.0 * n * prompt_tokens / 1e9


def evaluate_answers(
    generator: Any,
    settings: Sequence[Setting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Any]],
    *,
    max_new_tokens: int = 32,
) -> list[dict[str, Any]]:
    """SQuAD EM/F1 and prompt cost of each setting through :class:`~ragzip.pipeline.Pipeline`.

    Mirrors the generation stage of ``ragzip eval`` (same prompt, contexts and metrics) but
    takes a budget per setting, so text and soft compressors can be compared at the same number
    of context tokens.
    """
    from ragzip.evaluation import metrics
    from ragzip.pipeline import Pipeline

    rows: list[dict[str, Any]] = []
    for setting in settings:
        pipe = Pipeline(
            setting.compressor, setting.budget, generator=generator, max_new_tokens=max_new_tokens
        )
        em, f1, acc, ctx, prompt, ttft, comp_ms, preds = ([] for _ in range(8))
        t0 = time.perf_counter()
        for q, passages in zip(questions, contexts, strict=True):
            result = pipe.run(q.question, passages if setting.with_context else [])
            gen = result.generation
            assert gen is not None
            em.append(metrics.exact_match(gen.text, q.answers))
            f1.append(metrics.f1_score(gen.text, q.answers))
            acc.append(metrics.answer_accuracy(gen.text, q.answers))
            ctx.append(result.compression.compressed_tokens)
            prompt.append(gen.prompt_tokens)
            ttft.append(gen.ttft_s * 1000)
            comp_ms.append(result.compression.timings.get("total", 0.0) * 1000)
            preds.append(gen.text)
        mean_prompt = float(np.mean(prompt))
        rows.append(
            {
                "setting": setting.label,
                "budget": str(setting.budget),
                "n": len(questions),
                "em": float(np.mean(em)),
                "f1": float(np.mean(f1)),
                "accuracy": float(np.mean(acc)),
                "context_tokens": float(np.mean(ctx)),
                "prompt_tokens": mean_prompt,
                "prefill_gflops": prefill_gflops(generator.model, mean_prompt),
                "ttft_ms": float(np.mean(ttft)),
                "compress_ms": float(np.mean(comp_ms)),
                "seconds": time.perf_counter() - t0,
                "predictions": preds[:10],
            }
        )
        logger.info("%s", {k: v for k, v in rows[-1].items() if k != "predictions"})
    return rows


def time_prefill(
    generator: Any,
    settings: Sequence[Setting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Any]],
    *,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Prefill (time to first token) and compression time per setting, side by side.

    Questions are visited in turn and every setting runs on the same question before the next,
    so load on the machine hits all settings alike; each prefill is the best of ``repeats``.
    """
    per: dict[str, dict[str, list[float]]] = {
        s.label: {"ttft": [], "compress": [], "tokens": []} for s in settings
    }
    for q, passages in zip(questions, contexts, strict=True):
        for s in settings:
            best = math.inf
            for _ in range(repeats):
                context = passages if s.with_context else []
                result = s.compressor.compress(q.question, context, budget=s.budget)
                gen = generator.generate_compressed(result, max_new_tokens=1)
                best = min(best, gen.ttft_s)
            per[s.label]["ttft"].append(best * 1000)
            per[s.label]["compress"].append(result.timings.get("total", 0.0) * 1000)
            per[s.label]["tokens"].append(gen.prompt_tokens)
    out = []
    for label, values in per.items():
        tokens = float(np.mean(values["tokens"]))
        out.append(
            {
                "setting": label,
                "n": len(questions),
                "prompt_tokens": tokens,
                "prefill_ms": float(np.mean(values["ttft"])),
                "prefill_ms_p50": float(np.median(values["ttft"])),
                "compress_ms": float(np.mean(values["compress"])),
                "prefill_gflops": prefill_gflops(generator.model, tokens),
            }
        )
    return out


def run_comparison(
    *,
    n: int = 100,
    k: int = 10,
    timing_n: int = 0,
    index_cache: str | None = None,
    data_dir: str | None = None,
    settings_filter: Sequence[str] = (),
) -> dict[str, Any]:
    """EM/F1 on the first ``n`` test questions (hybrid top-``k`` contexts, as ``ragzip eval``).

    Rows: uncompressed; xrag with the trained and an untrained (seed-0) projector; text
    compressors at the same number of context tokens as xrag's vectors; merge when registered.
    With ``timing_n`` > 0, only prefill timings of the settings on that many questions instead.
    """
    from ragzip.compressors.xrag import init_projector
    from ragzip.evaluation.data import gold_doc_ids, nq_corpus
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.evaluation.metrics import source_id
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.registry import available, create_compressor
    from ragzip.types import Budget

    examples = load_nq(data_dir)
    questions = nq_split("test", examples=examples)[:n]
    index, _, _ = load_or_build_index(
        nq_corpus(examples),
        cache=Path(index_cache) if index_cache else None,
        chunk=False,
        progress=False,
    )
    contexts = [
        list(r) for r in index.search_batch([q.question for q in questions], k, mode="hybrid")
    ]
    gold = gold_doc_ids(examples)
    generator = EmbeddedGenerator()
    counter = generator.counter

    def make(name: str, **kw: Any) -> Any:
        return create_compressor(name, counter=counter, **kw)

    untrained = init_projector(seed=0).eval()
    stage1 = str(
        Path(__file__).resolve().parents[2] / "compressors" / "weights" / "xrag" / "stage1"
    )
    full = Budget.compression(1)
    factories: dict[str, tuple[Any, Any]] = {
        "uncompressed": (lambda: make("identity"), full),
        "no context": (lambda: make("identity"), None),
        "xrag top1": (lambda: make("xrag", config={"top_k": 1}), full),
        "xrag top1 stage1": (lambda: make("xrag", config={"top_k": 1, "weights": stage1}), full),
        "xrag top1 untrained": (
            lambda: make("xrag", config={"top_k": 1}, projector=untrained),
            full,
        ),
        "xrag top3": (lambda: make("xrag", config={"top_k": 3}), full),
        "xrag top3 untrained": (
            lambda: make("xrag", config={"top_k": 3}, projector=untrained),
            full,
        ),
    }
    for tokens in (1, 3):
        for name in ("truncate", "mig"):
            factories[f"{name} {tokens} tok"] = (
                lambda name=name: make(name),
                Budget.tokens(tokens),
            )
    if "merge" in available():
        factories["merge 3 tok"] = (lambda: make("merge"), Budget.tokens(3))
    wanted = [w for w in settings_filter if w] or list(factories)
    unknown = sorted(set(wanted) - set(factories))
    if unknown:
        msg = f"unknown settings {unknown}; choose from {sorted(factories)}"
        raise ConfigError(msg)
    settings = [
        Setting(w, factories[w][0](), factories[w][1] or full, factories[w][1] is not None)
        for w in wanted
    ]
    record: dict[str, Any] = {
        "split": "test",
        "questions": len(questions),
        "k": k,
        "generator": generator.name,
        "gold_at_1": float(
            np.mean(
                [
                    source_id(ctx[0]) in gold[q.index]
                    for q, ctx in zip(questions, contexts, strict=True)
                ]
            )
        ),
    }
    if timing_n:
        record["prefill"] = time_prefill(
            generator, settings, questions[:timing_n], contexts[:timing_n]
        )
        return record
    t0 = time.perf_counter()
    record["rows"] = evaluate_answers(generator, settings, questions, contexts)
    record["answer_seconds"] = time.perf_counter() - t0
    return record


def eval_main(argv: Sequence[str]) -> None:
    """``python -m ragzip.training.xrag eval [--n 100] [--timing-n 20] [--out FILE]``."""
    parser = argparse.ArgumentParser(description="EM/F1 of xrag against text compressors")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timing-n", type=int, default=0)
    parser.add_argument("--index-cache", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--settings", default="", help="comma-separated labels to keep")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="reports/xrag/eval.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    record = run_comparison(
        n=args.n,
        k=args.k,
        timing_n=args.timing_n,
        index_cache=args.index_cache,
        data_dir=args.data_dir,
        settings_filter=[s for s in args.settings.split(",") if s],
    )
    record["command"] = " ".join(["python -m ragzip.training.xrag eval", *argv])
    record["threads"] = args.threads
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m ragzip.training.xrag [--out DIR] [--stage1-examples N] ...``.

    ``python -m ragzip.training.xrag eval ...`` runs :func:`run_comparison` instead.
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["eval"]:
        eval_main(args_in[1:])
        return
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        parser.add_argument(flag, type=kind, default=value)
    args = parser.parse_args(args_in)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = TrainConfig(**vars(args))
    command = " ".join(["python -m ragzip.training.xrag", *args_in])
    train(config, command=command)


if __name__ == "__main__":
    main()
