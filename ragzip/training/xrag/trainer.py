"""The projector's training: SmolLM2 reading a projected vector, two stages, a loss curve."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ragzip.compressors.units import titled
from ragzip.compressors.xrag import Projector, init_projector
from ragzip.core.errors import ConfigError
from ragzip.experiments.datasets import NQExample
from ragzip.generators.rendering import PromptRenderer, RenderedPrompt
from ragzip.prompts import SOFT_PLACEHOLDER, build_messages
from ragzip.training.xrag.config import RECON_QUERY, RECON_SYSTEM_PROMPT, TrainConfig

logger = logging.getLogger(__name__)


class SoftLM:
    """The frozen generator, fed prompts with soft tokens spliced in, with losses on targets.

    Args:
        model: A causal LM (SmolLM2, Gemma 3, ...), frozen here.
        tokenizer: Its tokenizer (chat template, or the plain prompt of a base model).
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.renderer = PromptRenderer(tokenizer)
        self.device = next(model.parameters()).device

    def prompt_ids(
        self, query: str, context: Sequence[str], system: str | None = None
    ) -> RenderedPrompt:
        """The RAG prompt's ids and soft positions, as the generator renders it."""
        if system is None:
            messages = build_messages(query, context)
        else:
            messages = build_messages(query, context, system_prompt=system)
        return self.renderer.ids(messages)

    def target_ids(self, text: str, *, limit: int | None = None, eos: bool = True) -> list[int]:
        """Token ids of a teacher-forced target: an answer ends its turn (``eos``), a
        reconstruction is cut to ``limit`` tokens."""
        if eos:
            return self.renderer.answer_ids(text)
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        return ids[:limit] if limit is not None else ids

    def target_logits(
        self, prompt: RenderedPrompt, target: list[int], soft: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits ``(len(target), vocab)`` predicting each target token after ``prompt``.

        ``soft`` (``(n, hidden)``) takes the prompt's soft positions in order; the gradient
        flows into it, never into the frozen model.
        """
        ids = torch.tensor([[*prompt.ids, *target]], dtype=torch.long, device=self.device)
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            base = embed(ids)
        if soft is not None:
            if len(prompt.soft_positions) != soft.shape[0]:
                msg = f"{len(prompt.soft_positions)} placeholders for {soft.shape[0]} soft tokens"
                raise ConfigError(msg)
            positions = torch.tensor(prompt.soft_positions, dtype=torch.long, device=self.device)
            base = base.index_put((torch.zeros_like(positions), positions), soft.to(base.dtype))
        logits = self.model(inputs_embeds=base, logits_to_keep=len(target) + 1).logits[0]
        out: torch.Tensor = logits[-(len(target) + 1) : -1].float()
        return out


@dataclass
class Curve:
    """Losses over a stage: one entry per optimizer step and per validation point, and the
    seconds of training it took."""

    steps: list[dict[str, float]]
    val: list[dict[str, float]]
    seconds: float = 0.0


def embed_passages(examples: Sequence[NQExample]) -> np.ndarray:
    """MiniLM embeddings of the examples' gold passages (``(n, 384)``, unit norm)."""
    from ragzip.weights import load_embedder

    embedder = load_embedder("cpu")
    out = embedder.encode(
        [titled(ex.title, ex.text) for ex in examples],
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
        self.train_vecs = torch.as_tensor(train_vecs, device=lm.device)
        self.val = list(val)
        self.val_vecs = torch.as_tensor(val_vecs, device=lm.device)
        hidden = int(lm.model.get_input_embeddings().weight.shape[1])
        self.projector = init_projector(config.hidden, seed=config.seed, out_dim=hidden).to(
            lm.device
        )
        self.rng = random.Random(config.seed)
        self._recon_prompt = lm.prompt_ids(RECON_QUERY, [SOFT_PLACEHOLDER], RECON_SYSTEM_PROMPT)

    # -- losses ----------------------------------------------------------------------------

    def recon_loss(self, projector: Projector, ex: NQExample, vec: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of regenerating the passage from its soft token (stage 1)."""
        target = self.lm.target_ids(ex.text, limit=self.config.recon_tokens, eos=False)
        logits = self.lm.target_logits(self._recon_prompt, target, projector(vec[None]))
        return F.cross_entropy(logits, torch.tensor(target, device=logits.device))

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
        ce = F.cross_entropy(student, torch.tensor(target, device=student.device))
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
            t = torch.tensor(target, device=self.lm.device)
            logits = self.lm.target_logits(self.lm.prompt_ids(ex.question, []), target, None)
            none.append(float(F.cross_entropy(logits, t)))
            logits = self.lm.target_logits(self.lm.prompt_ids(ex.question, [ex.text]), target, None)
            full.append(float(F.cross_entropy(logits, t)))
        return {"qa_ce_no_context": float(np.mean(none)), "qa_ce_full_text": float(np.mean(full))}

    # -- stages ----------------------------------------------------------------------------

    def run_stage(
        self,
        stage: int,
        *,
        seconds: float = math.inf,
        saved: dict[str, Any] | None = None,
        save: Callable[[dict[str, Any]], None] | None = None,
    ) -> Curve:
        """One pass of stage 1 (paraphrase) or 2 (QA + distillation) over shuffled examples.

        Args:
            stage: 1 or 2.
            seconds: Training time the stage may take (the learning rate decays over whichever
                of steps and time runs out first); the stage stops when it is spent.
            saved: A checkpoint of this stage (:meth:`stage_state`) to go on from.
            save: Called with the stage's state at every validation point.
        """
        cfg = self.config
        n = cfg.stage1_examples if stage == 1 else cfg.stage2_examples
        total_steps = math.ceil(n / cfg.accum)
        peak = cfg.lr1 if stage == 1 else cfg.lr2
        opt = torch.optim.AdamW(self.projector.parameters(), lr=peak, weight_decay=0.0)
        is_qa = stage == 2
        if saved is not None:
            self.projector.load_state_dict(saved["projector"])
            opt.load_state_dict(saved["optimizer"])
            order, first, spent = saved["order"], saved["step"], saved["seconds"]
            curve = Curve(**saved["curve"])
            logger.info("stage %d resumed at step %d (%.0f s trained)", stage, first, spent)
        else:
            order = list(range(len(self.train)))
            self.rng.shuffle(order)
            order = (order * math.ceil(n / max(1, len(order))))[:n]
            first, spent = 0, 0.0
            curve = Curve(steps=[], val=[])
            curve.val.append({"step": 0, **self.validate(self.projector, qa=is_qa, recon=True)})
            logger.info("stage %d step 0 val %s", stage, curve.val[-1])
        for step in range(first, total_steps):
            if spent >= seconds:
                logger.info("stage %d: time budget spent at step %d/%d", stage, step, total_steps)
                break
            batch = order[step * cfg.accum : (step + 1) * cfg.accum]
            by_time = spent / seconds if math.isfinite(seconds) and seconds > 0 else 0.0
            at = max(step, round(by_time * total_steps))
            for group in opt.param_groups:
                group["lr"] = _lr_at(at, total_steps, peak, cfg.warmup)
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
            spent += time.perf_counter() - t0
            row = {k: v / len(batch) for k, v in sums.items() if is_qa or k != "kl"}
            row.update(
                step=step + 1,
                lr=opt.param_groups[0]["lr"],
                grad_norm=grad_norm,
                seconds=time.perf_counter() - t0,
            )
            curve.steps.append(row)
            last = step + 1 == total_steps or spent >= seconds
            if (step + 1) % cfg.eval_every == 0 or last:
                val = self.validate(self.projector, qa=is_qa, recon=True)
                curve.val.append({"step": step + 1, **val})
                logger.info(
                    "stage %d step %d/%d train %.3f val %s (%.0f s)",
                    stage, step + 1, total_steps, row["loss"], val, spent,
                )  # fmt: skip
                if save is not None:
                    save(
                        {
                            "projector": self.projector.state_dict(),
                            "optimizer": opt.state_dict(),
                            "order": order,
                            "step": step + 1,
                            "seconds": spent,
                            "curve": asdict(curve),
                        }
                    )
        curve.seconds = spent
        return curve
