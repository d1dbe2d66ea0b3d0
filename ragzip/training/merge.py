"""Train the adapter of :mod:`ragzip.compressors.merge`, and score merge against text baselines.

COMI (Tang et al., 2026, *COMI: Coarse-to-fine Context Compression via Marginal Information
Gain*, arXiv:2602.01719) fine-tunes the reader to read merged tokens. On a CPU the reader,
SmolLM2-135M-Instruct, stays frozen; what is trained is a small residual low-rank
:class:`~ragzip.compressors.merge.Adapter` applied to the merged vectors before they are spliced
into the prompt:

* **Data.** Each *train* question's context is its top-``k`` hybrid (BM25 + MiniLM) passages
  from the NQ index, the gold passage swapped in for the last one when retrieval missed it, so
  the answer is always readable. A compression factor is drawn per example from ``ratios``.
  Contexts are merged by the untrained compressor (numpy, no gradient).
* **Loss.** The frozen model reads the prompt with the adapted vectors spliced in at the
  ``<empty_output>`` placeholders (the format of :func:`ragzip.prompts.soft_context`) and is
  teacher-forced on the first accepted answer followed by ``<|im_end|>``: cross-entropy on those
  tokens, plus, with ``kl_weight > 0``, the KL divergence to the same model's distribution on
  those tokens when it reads the full text (self-distillation). Gradients reach only the
  adapter.
* **Validation** on the first ``val_examples`` *val* questions, every ``val_every`` steps and
  at the end: mean answer loss at each ratio. Step 0 is the untrained (identity) adapter; the
  adapter with the best validation loss is saved. The test split is never read.

Run from the project root, holding one CPU slot::

    python -m ragzip.training.merge train --out compressors/weights/merge --minutes 30

The ``evaluate`` sub-command answers the first test questions with the embedded generator from
the uncompressed context and from each setting's compressed one (``name@ratio``, e.g.
``merge@4``, ``merge:adapter=default@4``, ``mig@4``) and writes EM/F1, context and prompt
tokens, prefill time and prefill FLOPs (``2 · parameters · prompt positions``) per setting::

    python -m ragzip.training.merge evaluate --n 100 --out reports/merge/eval.json \\
        --settings merge@4,merge:adapter=default@4,mig@4,truncate@4
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.errors import ConfigError
from ragzip.evaluation import metrics
from ragzip.evaluation.data import NQExample, load_nq, nq_corpus, nq_split
from ragzip.prompts import build_messages
from ragzip.types import Budget, CompressionResult, Passage

if TYPE_CHECKING:
    import torch

    from ragzip.compressors.merge import Adapter, MergeCompressor
    from ragzip.generators.embedded import EmbeddedGenerator

logger = logging.getLogger(__name__)

PLACEHOLDER = "<empty_output>"
"""The token each soft vector replaces (``ragzip.prompts.SOFT_PLACEHOLDER``)."""
DEFAULT_INDEX_CACHE = Path("~/.cache/ragzip/notebook-indexes")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of an adapter training run.

    Attributes:
        out: Folder the adapter and ``training.json`` are written to.
        minutes: Wall-clock budget of the optimisation loop (validation excluded).
        max_steps: Upper bound on optimiser steps.
        k: Passages per training context.
        ratios: Compression factors drawn per example.
        rank: Adapter rank.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        accumulate: Examples per optimiser step.
        kl_weight: Weight of the self-distillation KL term (0 = answer cross-entropy only).
        val_examples: Val questions scored at each validation.
        val_every: Optimiser steps between validations.
        seed: Seed of the example order, ratios and initialisation.
        threads: Torch CPU threads.
        index_cache: Folder of the cached NQ hybrid index (built there when absent).
        data_dir: Data folder (``None``: ``../shared/data``).
    """

    out: str = "compressors/weights/merge"
    minutes: float = 30.0
    max_steps: int = 10_000
    k: int = 5
    ratios: str = "4,8"
    rank: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    accumulate: int = 4
    kl_weight: float = 0.0
    val_examples: int = 40
    val_every: int = 40
    seed: int = 0
    threads: int = 1
    index_cache: str = str(DEFAULT_INDEX_CACHE)
    data_dir: str | None = None

    def ratio_list(self) -> list[float]:
        """``ratios`` as numbers."""
        try:
            values = [float(r) for r in self.ratios.split(",") if r.strip()]
        except ValueError as exc:
            msg = f"ratios must be comma-separated numbers, got {self.ratios!r}"
            raise ConfigError(msg) from exc
        if not values or any(not math.isfinite(v) or v < 1 for v in values):
            msg = f"ratios must be numbers >= 1, got {self.ratios!r}"
            raise ConfigError(msg)
        return values


# ------------------------------------------------------------------------------------ contexts


def retrieve_contexts(
    questions: Sequence[NQExample],
    all_nq: Sequence[NQExample],
    *,
    k: int,
    index_cache: str | Path | None,
    ensure_gold: bool,
) -> list[list[Passage]]:
    """Top-``k`` hybrid passages per question (as ``ragzip eval`` retrieves them).

    Args:
        questions: The questions.
        all_nq: All 2,000 NQ examples (the corpus).
        k: Passages per question.
        index_cache: Where the index is cached (see
            :func:`ragzip.evaluation.indexing.load_or_build_index`).
        ensure_gold: Put the gold passage in place of the last one when retrieval missed it.
    """
    from ragzip.evaluation.data import gold_doc_ids
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.evaluation.metrics import source_id

    cache = Path(index_cache).expanduser() if index_cache is not None else None
    index, _, _ = load_or_build_index(nq_corpus(all_nq), cache=cache, chunk=False, progress=False)
    found = index.search_batch([q.question for q in questions], k, mode="hybrid")
    contexts = [list(r) for r in found]
    if ensure_gold:
        gold = gold_doc_ids(all_nq)
        for q, ctx in zip(questions, contexts, strict=True):
            if not any(source_id(p) in gold[q.index] for p in ctx):
                ctx[-1] = q.passage()
    return contexts


def soft_messages(result: CompressionResult) -> list[Any]:
    """Chat messages of a soft result: one placeholder per vector, passages with none left out."""
    context = [PLACEHOLDER * p.tokens for p in result.passages if p.tokens > 0]
    return build_messages(result.query, context)


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


def train(config: TrainConfig, *, command: str) -> dict[str, Any]:
    """Train an adapter and write it with ``training.json`` to ``config.out``.

    Returns:
        The training record written to ``training.json``.
    """
    import torch

    from ragzip.compressors.merge import Adapter, MergeCompressor
    from ragzip.models import load_smollm2, smollm2_counter

    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    ratios = config.ratio_list()
    t_start = time.perf_counter()
    cpu_start = time.process_time()

    model, tokenizer = load_smollm2("cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    compressor = MergeCompressor(counter=smollm2_counter(), model=model, tokenizer=tokenizer)
    placeholder = int(tokenizer.convert_tokens_to_ids(PLACEHOLDER))
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
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    (out / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


# ---------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Setting:
    """One evaluated setting: a compressor spec at a compression factor."""

    spec: str
    ratio: float

    @property
    def label(self) -> str:
        """``spec@ratio``."""
        return f"{self.spec}@{self.ratio:g}"

    @classmethod
    def parse(cls, text: str) -> Setting:
        """Read ``spec@ratio`` (e.g. ``merge:adapter=default@4``)."""
        spec, sep, ratio = text.strip().rpartition("@")
        if not sep or not spec:
            msg = f"a setting looks like name@ratio, got {text!r}"
            raise ConfigError(msg)
        try:
            value = float(ratio)
        except ValueError as exc:
            msg = f"bad ratio in setting {text!r}"
            raise ConfigError(msg) from exc
        if not math.isfinite(value) or value < 1:
            msg = f"ratio must be >= 1 in setting {text!r}"
            raise ConfigError(msg)
        return cls(spec, value)


def _make_compressor(spec: str, generator: EmbeddedGenerator) -> Any:
    """A registered compressor from its spec; merge shares the generator's model."""
    from ragzip.registry import create_compressor, parse_spec

    components: dict[str, Any] = {}
    if parse_spec(spec).name == "merge":
        components = {"model": generator.model, "tokenizer": generator.tokenizer}
    return create_compressor(spec, counter=generator.counter, **components)


def answer(generator: EmbeddedGenerator, result: CompressionResult, max_new_tokens: int) -> Any:
    """Generate from a text or soft result with the embedded generator."""
    if result.embeddings is None:
        return generator.generate(
            build_messages(result.query, result.texts), max_new_tokens=max_new_tokens
        )
    embeds = generator.embed_messages(
        soft_messages(result), placeholder=PLACEHOLDER, replacements=result.embeddings
    )
    return generator.generate_from_embeds(embeds, max_new_tokens=max_new_tokens)


def evaluate(
    settings: Sequence[Setting],
    *,
    n: int = 100,
    k: int = 10,
    max_new_tokens: int = 32,
    index_cache: str | Path | None = DEFAULT_INDEX_CACHE,
    data_dir: str | Path | None = None,
    uncompressed: bool = True,
    checkpoint: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """EM/F1 and prefill cost of each setting on the first ``n`` test questions.

    Every question's top-``k`` hybrid context (as ``ragzip eval`` builds it, gold not forced in)
    is answered uncompressed and under each setting, question by question, so all rows see the
    machine in the same state. ``uncompressed=False`` leaves the uncompressed row out (the
    savings columns are then relative to the first row). ``checkpoint`` receives the report
    so far after every ten questions.
    """
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.registry import create_compressor

    generator = EmbeddedGenerator(device="cpu")
    all_nq = load_nq(data_dir)
    questions = nq_split("test", examples=all_nq)[:n]
    contexts = retrieve_contexts(questions, all_nq, k=k, index_cache=index_cache, ensure_gold=False)
    rows: list[tuple[str, Any, Budget]] = []
    if uncompressed:
        identity = create_compressor("identity", counter=generator.counter)
        rows.append(("uncompressed", identity, Budget.compression(1)))
    rows += [
        (s.label, _make_compressor(s.spec, generator), Budget.compression(s.ratio))
        for s in settings
    ]
    stats: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in rows}
    examples: list[dict[str, Any]] = []
    for qi, (q, ctx) in enumerate(zip(questions, contexts, strict=True)):
        for label, comp, budget in rows:
            t0 = time.perf_counter()
            result = comp.compress(q.question, ctx, budget=budget)
            compress_s = time.perf_counter() - t0
            gen = answer(generator, result, max_new_tokens)
            values = {
                "em": metrics.exact_match(gen.text, q.answers),
                "f1": metrics.f1_score(gen.text, q.answers),
                "accuracy": metrics.answer_accuracy(gen.text, q.answers),
                "context_tokens": float(result.compressed_tokens),
                "prompt_tokens": float(gen.prompt_tokens),
                "ttft_ms": gen.ttft_s * 1000,
                "compress_ms": compress_s * 1000,
            }
            for key, v in values.items():
                stats[label].setdefault(key, []).append(v)
            if qi < 5:
                examples.append(
                    {
                        "setting": label,
                        "question": q.question,
                        "answers": list(q.answers),
                        "prediction": gen.text,
                    }
                )
        logger.info("question %d/%d done", qi + 1, len(questions))
        if checkpoint is not None and (qi + 1) % 10 == 0 and qi + 1 < len(questions):
            checkpoint(
                _report(stats, rows, questions[: qi + 1], k, max_new_tokens, generator, examples)
            )
    return _report(stats, rows, questions, k, max_new_tokens, generator, examples)


def _report(
    stats: dict[str, dict[str, list[float]]],
    rows: Sequence[tuple[str, Any, Budget]],
    questions: Sequence[NQExample],
    k: int,
    max_new_tokens: int,
    generator: EmbeddedGenerator,
    examples: list[dict[str, Any]],
) -> dict[str, Any]:
    import torch

    params = sum(p.numel() for p in generator.model.parameters())
    table = []
    base = stats[rows[0][0]]
    base_prompt = float(np.mean(base["prompt_tokens"]))
    base_ttft = float(np.mean(base["ttft_ms"]))
    for label, _, _ in rows:
        s = stats[label]
        prompt = float(np.mean(s["prompt_tokens"]))
        ttft = float(np.mean(s["ttft_ms"]))
        table.append(
            {
                "setting": label,
                "n": len(s["em"]),
                **{key: float(np.mean(v)) for key, v in s.items()},
                "ttft_ms_p50": float(np.median(s["ttft_ms"])),
                "prefill_gflops": 2 * params * prompt / 1e9,
                "prefill_flops_saved": 1 - prompt / base_prompt,
                "ttft_saved": 1 - ttft / base_ttft,
            }
        )
    return {
        "split": "test",
        "questions": len(questions),
        "question_indices": [q.index for q in questions],
        "k": k,
        "max_new_tokens": max_new_tokens,
        "generator": generator.name,
        "generator_parameters": params,
        "flops_formula": "2 * generator parameters * prompt positions "
        "(template and question included)",
        "threads": torch.get_num_threads(),
        "rows": table,
        "examples": examples,
    }


def markdown(report: dict[str, Any]) -> str:
    """A Markdown table of an :func:`evaluate` report."""
    lines = [
        f"NQ-open test, first {report['questions']} questions, top-{report['k']} hybrid context, "
        f"{report['generator']} (greedy, {report['max_new_tokens']} new tokens, "
        f"{report['threads']} torch threads).",
        "",
        "| setting | EM | F1 | accuracy | context tokens | prompt positions | prefill GFLOPs | "
        "FLOPs saved | TTFT ms (mean / p50) | TTFT saved | compress ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['setting']} | {r['em']:.3f} | {r['f1']:.3f} | {r['accuracy']:.3f} | "
            f"{r['context_tokens']:.0f} | {r['prompt_tokens']:.0f} | {r['prefill_gflops']:.1f} | "
            f"{r['prefill_flops_saved']:.0%} | {r['ttft_ms']:.0f} / {r['ttft_ms_p50']:.0f} | "
            f"{r['ttft_saved']:.0%} | {r['compress_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ragzip.training.merge train|evaluate ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train the adapter")
    for name, value in asdict(TrainConfig()).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        p_train.add_argument(flag, type=kind, default=value)
    p_eval = sub.add_parser("evaluate", help="EM/F1 and prefill cost on test questions")
    p_eval.add_argument("--settings", required=True, help="comma-separated spec@ratio")
    p_eval.add_argument("--n", type=int, default=100)
    p_eval.add_argument("--k", type=int, default=10)
    p_eval.add_argument("--max-new-tokens", type=int, default=32)
    p_eval.add_argument("--threads", type=int, default=1)
    p_eval.add_argument("--index-cache", default=str(DEFAULT_INDEX_CACHE))
    p_eval.add_argument("--out", required=True)
    p_eval.add_argument("--no-uncompressed", action="store_true", help="skip the full-text row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = " ".join(["python -m ragzip.training.merge", *(argv or sys.argv[1:])])
    if args.command == "train":
        values = {k: v for k, v in vars(args).items() if k != "command"}
        train(TrainConfig(**values), command=command)
        return
    import torch

    torch.set_num_threads(args.threads)
    settings = [Setting.parse(s) for s in args.settings.split(",") if s.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(report: dict[str, Any]) -> None:
        report["command"] = command
        out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")

    report = evaluate(
        settings,
        n=args.n,
        k=args.k,
        max_new_tokens=args.max_new_tokens,
        index_cache=args.index_cache,
        uncompressed=not args.no_uncompressed,
        checkpoint=write,
    )
    write(report)


if __name__ == "__main__":
    main()
