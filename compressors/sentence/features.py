"""What the classifier reads: input limits, sentences of a passage, and their encoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch

from ragzip.core.errors import ConfigError, ModelError


@dataclass(frozen=True)
class InputLimits:
    """Token limits of each input segment, in the classifier's own (WordPiece) tokenizer.

    Only the classifier's *view* is truncated; a long sentence is still kept or dropped whole.

    Attributes:
        query: Tokens of the question.
        sentence: Tokens of the sentence being scored.
        title: Tokens of the passage title at the start of the context segment.
        context: Tokens of the context segment in all (title included): the end of the
            sentences before and the start of the sentences after, shared evenly.
    """

    query: int = 32
    sentence: int = 96
    title: int = 12
    context: int = 48

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"InputLimits.{key} must be an int >= 0, got {value!r}"
                raise ConfigError(msg)
        if self.query < 1 or self.sentence < 1:
            msg = "InputLimits.query and InputLimits.sentence must be >= 1"
            raise ConfigError(msg)

    @property
    def max_length(self) -> int:
        """Longest input: the segments plus ``[CLS]``, two ``[SEP]`` and the last ``[SEP]``."""
        return self.query + self.sentence + self.context + 4


@dataclass(frozen=True)
class PassageSentences:
    """One passage as the classifier sees it: its title and its sentences, in order."""

    title: str
    sentences: tuple[str, ...]


SPECIAL, QUESTION, SENTENCE, CONTEXT = 0, 1, 2, 3
"""Segment ids of :attr:`Encoded.segment_ids`."""


@dataclass(frozen=True)
class Encoded:
    """One classifier input.

    Attributes:
        input_ids: Token ids ``[CLS] q [SEP] s [SEP] context [SEP]``.
        token_type_ids: BERT segment ids: 0 up to the first ``[SEP]``, 1 after it.
        segment_ids: What each token is: :data:`SPECIAL`, :data:`QUESTION`, :data:`SENTENCE` or
            :data:`CONTEXT` (the head pools question and sentence tokens separately).
    """

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]


class Batch(NamedTuple):
    """Padded tensors of a batch of :class:`Encoded` inputs (``(batch, length)`` each)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    segment_ids: torch.Tensor


class Featurizer:
    """Builds classifier inputs ``[CLS] q [SEP] s [SEP] title : before … after [SEP]``.

    The context segment is EXIT's "surrounding context": the passage title, then the tail of the
    sentences before ``s`` and the head of those after it, each side getting half of what the
    title leaves (a side with less text hands the rest to the other). Every text is tokenised
    once per call, in one batch.

    Args:
        tokenizer: The classifier's Hugging Face fast tokenizer (BERT special tokens).
        limits: Segment lengths.
    """

    def __init__(self, tokenizer: Any, limits: InputLimits) -> None:
        self.tokenizer = tokenizer
        self.limits = limits
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            msg = "the classifier's tokenizer needs [CLS] and [SEP] tokens"
            raise ModelError(msg)
        self._cls: int = int(cls_id)
        self._sep: int = int(sep_id)
        colon = tokenizer.convert_tokens_to_ids(":")
        self._colon: list[int] = [int(colon)] if colon is not None else []

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def encode(self, query: str, passages: Sequence[PassageSentences]) -> list[Encoded]:
        """Inputs for every sentence of ``passages`` (passage order, then sentence order)."""
        lim = self.limits
        flat = [s for p in passages for s in p.sentences]
        titles = [p.title.strip() for p in passages]
        ids = self._ids([query, *titles, *flat])
        q_ids = ids[0][: lim.query]
        title_ids = ids[1 : 1 + len(passages)]
        sent_ids = ids[1 + len(passages) :]
        head = [self._cls, *q_ids, self._sep]
        head_segments = (SPECIAL, *(QUESTION,) * len(q_ids), SPECIAL)
        out: list[Encoded] = []
        cursor = 0
        for p, t_ids in zip(passages, title_ids, strict=True):
            own = sent_ids[cursor : cursor + len(p.sentences)]
            cursor += len(p.sentences)
            title = [*t_ids[: lim.title], *self._colon] if t_ids and lim.title else []
            title = title[: lim.context]
            room = lim.context - len(title)
            for j in range(len(own)):
                before = [t for s in own[:j] for t in s]
                after = [t for s in own[j + 1 :] for t in s]
                n_after = min(len(after), max(room // 2, room - len(before)))
                n_before = min(len(before), room - n_after)
                tail = before[len(before) - n_before :] if n_before else []
                context = [*title, *tail, *after[:n_after]]
                sent = own[j][: lim.sentence]
                out.append(
                    Encoded(
                        input_ids=(*head, *sent, self._sep, *context, self._sep),
                        token_type_ids=(0,) * len(head) + (1,) * (len(sent) + len(context) + 2),
                        segment_ids=(
                            *head_segments,
                            *(SENTENCE,) * len(sent),
                            SPECIAL,
                            *(CONTEXT,) * len(context),
                            SPECIAL,
                        ),
                    )
                )
        return out
