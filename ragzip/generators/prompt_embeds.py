"""Soft context over HTTP: prompts as input embeddings in vLLM's ``prompt_embeds`` wire format.

A :class:`PromptEmbedder` renders the templated chat prompt as the served model's input
embeddings with vectors spliced in at placeholders; :func:`encode_prompt_embeds` packs them as
vLLM's ``--enable-prompt-embeds`` expects.

Soft context (vectors from a soft compressor) cannot travel as chat text. With
``prompt_embeds=True`` the generator renders the chat template locally, embeds it with the
served model's input-embedding table (an injected :class:`PromptEmbedder`, e.g. a
:class:`TableEmbedder` that reads only that table; SmolLM2's by default),
splices the vectors in at the placeholder tokens and sends the whole prompt as ``prompt_embeds``
to ``POST /v1/completions``. The wire format follows vLLM (``vllm serve --enable-prompt-embeds``;
docs/features/prompt_embeds.md and ``safe_load_prompt_embeds`` in vLLM's source): the
base64 of ``torch.save`` of one ``(num_tokens, hidden_size)`` tensor, loaded server-side with
``torch.load(weights_only=True)``; float32, bfloat16 and float16 are accepted (recent versions
cast to the model's dtype) and ``hidden_size`` must equal the model's. The Completions API applies
no chat template to ``prompt_embeds``, so the embeddings cover the fully templated prompt.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ragzip.core.errors import InputError, needs_extra
from ragzip.core.messages import ChatMessage

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ragzip.generators.target import EmbeddingTable


class PromptEmbedder(Protocol):
    """Renders chat messages as the served model's input embeddings, vectors spliced in.

    :class:`~ragzip.generators.embedded.EmbeddedGenerator` is one: build it over the served
    model's weights (or at least its tokenizer and input-embedding table).
    """

    @property
    def hidden_size(self) -> int:
        """Width of the input embeddings."""
        ...

    def embed_messages(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        placeholder: str | int | None = None,
        replacements: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """``(1, seq, hidden)`` embeddings of the templated prompt, each ``placeholder``
        occurrence replaced by a row of ``replacements``."""
        ...


def encode_prompt_embeds(prompt_embeds: torch.Tensor | np.ndarray) -> tuple[str, int]:
    """Base64 of ``torch.save`` of a ``(seq, hidden)`` tensor, as vLLM's ``prompt_embeds`` wants.

    The tensor is copied to compact CPU memory first (``torch.save`` of a view would ship the
    whole underlying storage). float64 input is sent as float32.

    Returns:
        The encoded string and the number of prompt vectors.

    Raises:
        InputError: Not a float tensor of shape ``(seq, hidden)`` / ``(1, seq, hidden)``, empty,
            or holding non-finite values.
    """
    with needs_extra("models", "torch is needed to send prompt embeddings"):
        import torch
    try:
        tensor = torch.as_tensor(prompt_embeds)
    except (TypeError, ValueError, RuntimeError) as exc:
        msg = f"prompt_embeds must be a tensor or array: {exc}"
        raise InputError(msg) from exc
    if tensor.ndim == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        shape = tuple(tensor.shape)
        msg = f"prompt_embeds must have shape (seq, hidden) or (1, seq, hidden), got {shape}"
        raise InputError(msg)
    if not tensor.is_floating_point():
        msg = f"prompt_embeds must be floating point, got {tensor.dtype}"
        raise InputError(msg)
    if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        msg = "prompt_embeds holds NaN or infinite values"
        raise InputError(msg)
    buffer = io.BytesIO()
    torch.save(tensor.detach().to("cpu").contiguous().clone(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), int(tensor.shape[0])


class TableEmbedder:
    """A :class:`PromptEmbedder` from a generator's tokenizer and input-embedding table alone.

    What a proxy in front of vLLM needs to send soft context: it never runs the model, so it
    loads only the table (:func:`ragzip.generators.target.load_table`), not the weights.

    Args:
        tokenizer: The served model's tokenizer.
        table: Its input-embedding table.
    """

    def __init__(self, tokenizer: Any, table: EmbeddingTable) -> None:
        from ragzip.generators.rendering import PromptRenderer

        self.renderer = PromptRenderer(tokenizer)
        self.table = table

    @property
    def hidden_size(self) -> int:
        """Width of the input embeddings."""
        return self.table.target.hidden_size

    def embed_messages(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        placeholder: str | int | None = None,
        replacements: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """``(1, seq, hidden)`` float32 embeddings of the rendered prompt, each soft position
        (:data:`~ragzip.prompts.SOFT_PLACEHOLDER`) taking a row of ``replacements``.

        Raises:
            InputError: Another placeholder, or positions and rows differing in number or
                width.
        """
        import numpy as np
        import torch

        from ragzip.prompts import SOFT_PLACEHOLDER

        if placeholder not in (None, SOFT_PLACEHOLDER):
            msg = f"the table embedder splices at {SOFT_PLACEHOLDER!r} only"
            raise InputError(msg)
        rendered = self.renderer.ids(messages)
        embeds = np.array(self.table.weight[np.asarray(rendered.ids, dtype=np.int64)])
        rows = np.zeros((0, self.hidden_size), np.float32)
        if replacements is not None:
            rows = np.asarray(torch.as_tensor(replacements).detach().float().cpu().numpy())
        if placeholder is not None:
            if rows.ndim != 2 or rows.shape[1] != self.hidden_size:
                msg = f"replacements must have shape (n, {self.hidden_size}), got {rows.shape}"
                raise InputError(msg)
            if rows.shape[0] != len(rendered.soft_positions):
                msg = (
                    f"the prompt holds {len(rendered.soft_positions)} placeholder token(s) "
                    f"{SOFT_PLACEHOLDER!r} but {rows.shape[0]} replacement vector(s) were given"
                )
                raise InputError(msg)
            embeds[list(rendered.soft_positions)] = rows
        return torch.from_numpy(embeds)[None]


def placeholder_id(tokenizer: Any, placeholder: str | int) -> int:
    """The id of the one-token ``placeholder`` (its text or its id) in ``tokenizer``.

    Raises:
        InputError: Not a string or id, an id outside the vocabulary, or text of several tokens.
    """
    if isinstance(placeholder, bool) or not isinstance(placeholder, str | int):
        msg = f"placeholder must be a token string or id, got {type(placeholder).__name__}"
        raise InputError(msg)
    if isinstance(placeholder, int):
        if not 0 <= placeholder < len(tokenizer):
            msg = f"placeholder id {placeholder} is outside the vocabulary"
            raise InputError(msg)
        return placeholder
    ids = tokenizer(placeholder, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        msg = f"placeholder {placeholder!r} is {len(ids)} tokens, it must be exactly one"
        raise InputError(msg)
    return int(ids[0])


def as_embeds(
    value: torch.Tensor | np.ndarray, hidden: int, *, what: str, allow_empty: bool
) -> torch.Tensor:
    """``value`` as a detached ``(1, n, hidden)`` tensor of finite floats.

    Raises:
        InputError: Not a tensor or array, another shape or width, no rows (unless
            ``allow_empty``), or values that are not finite floats.
    """
    import torch

    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        msg = f"{what} must be a tensor or array: {exc}"
        raise InputError(msg) from exc
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] != 1 or tensor.shape[2] != hidden:
        msg = f"{what} must have shape (n, {hidden}) or (1, n, {hidden}), got {tuple(tensor.shape)}"
        raise InputError(msg)
    if not allow_empty and tensor.shape[1] == 0:
        msg = f"{what} holds no vectors"
        raise InputError(msg)
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        msg = f"{what} must hold finite floating-point values"
        raise InputError(msg)
    return tensor.detach()
