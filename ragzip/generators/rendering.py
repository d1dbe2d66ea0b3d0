"""How chat messages become a local model's prompt tokens, soft-context placeholders included.

One home for it, used by the embedded generator, the prompt-embedding renderer of the proxy,
token counting and the soft compressors' training:

* An instruct model's own chat template renders the messages (generation prompt included).
* A base model (a tokenizer without a chat template, such as Gemma 3 270M's) gets a plain
  completion prompt: the system text, a blank line, the user turns, then ``Answer:``; its
  answer ends at the first line break (:attr:`PromptRenderer.stops_at_newline`).
* :data:`~ragzip.prompts.SOFT_PLACEHOLDER` marks where a soft vector goes. The text is cut at
  each placeholder and the pieces are tokenized apart, so every placeholder is exactly one
  position whatever the tokenizer (SmolLM2 has a special token for it; other vocabularies need
  none): :meth:`PromptRenderer.ids` returns those positions with the ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragzip.core.errors import InputError
from ragzip.core.messages import ChatMessage, validate_messages
from ragzip.prompts import SOFT_PLACEHOLDER

ANSWER_CUE = "Answer:"
"""The last words of a base model's plain prompt: the answer follows them."""


@dataclass(frozen=True)
class RenderedPrompt:
    """Token ids of a prompt and the positions its soft vectors take."""

    ids: tuple[int, ...]
    soft_positions: tuple[int, ...]


class PromptRenderer:
    """Renders messages for one tokenizer (chat template, or the plain prompt of a base model).

    Args:
        tokenizer: A Hugging Face tokenizer.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.placeholder_id = self._placeholder_id()

    @property
    def stops_at_newline(self) -> bool:
        """A plain prompt's answer is one line (a base model would go on with more text)."""
        return not self.chat

    def _placeholder_id(self) -> int:
        """The id written at soft positions: the placeholder's own token when the vocabulary has
        one, else the unknown or padding token (the position is overwritten by a vector)."""
        tok = self.tokenizer
        ids = tok(SOFT_PLACEHOLDER, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
        for fallback in (tok.unk_token_id, tok.pad_token_id, tok.eos_token_id):
            if fallback is not None:
                return int(fallback)
        return 0

    def text(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> str:
        """The prompt text (placeholders still in it)."""
        items = validate_messages(messages)
        if self.chat:
            rendered: str = self.tokenizer.apply_chat_template(
                [m.to_dict() for m in items], add_generation_prompt=True, tokenize=False
            )
            return rendered
        system = "\n\n".join(m.content for m in items if m.role == "system")
        turns = []
        for m in items:
            if m.role == "user":
                turns.append(m.content)
            elif m.role == "assistant":
                turns.append(f"{ANSWER_CUE} {m.content}")
        body = "\n\n".join(turns)
        text = f"{system}\n\n{body}" if system else body
        bos = self.tokenizer.bos_token or ""
        # a turn that ends in the cue already (the RAG prompt's) is not cued twice
        cue = "" if text.endswith(ANSWER_CUE) else f"\n{ANSWER_CUE}"
        return f"{bos}{text}{cue}"

    def ids(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> RenderedPrompt:
        """Token ids of the prompt, each placeholder one position (listed in order)."""
        pieces = self.text(messages).split(SOFT_PLACEHOLDER)
        ids: list[int] = []
        positions: list[int] = []
        for i, piece in enumerate(pieces):
            if i:
                positions.append(len(ids))
                ids.append(self.placeholder_id)
            if piece:
                encoded = self.tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids.extend(int(t) for t in encoded)
        return RenderedPrompt(tuple(ids), tuple(positions))

    def answer_ids(self, answer: str) -> list[int]:
        """A teacher-forced answer: its tokens, then the end of the turn (the end-of-sequence
        token after a chat template, a line break after a plain prompt)."""
        text = answer if self.chat else f" {answer}"
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        if self.chat:
            return [*ids, int(self.tokenizer.eos_token_id)]
        return [*ids, *self._newline_ids()]

    def _newline_ids(self) -> list[int]:
        ids = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        if not ids:
            msg = "the tokenizer cannot encode a line break"
            raise InputError(msg)
        return [int(ids[-1])]
