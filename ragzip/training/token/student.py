"""The student: MiniLM's lower layers frozen (outputs cached), upper layers and head trained."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ragzip.training.token.labels import Example

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
