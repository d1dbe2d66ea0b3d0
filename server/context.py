"""Which part of an OpenAI request is context, and how compressed context goes back in.

The proxy compresses the *context* of a request and nothing else. Context is marked in one of
two ways, which may be combined (all marked passages then share one budget):

(a) The ``ragzip`` extension field of the request body::

        {"model": "...", "messages": [...],
         "ragzip": {"passages": ["text", {"text": "...", "title": "...", "id": "..."}],
                    "budget": "256" | 256 | "4x", "compressor": "mig", "query": "optional"}}

    The passages are compressed and inserted as a context block: in a chat, as a system message
    placed right before the last user message (or, with ``context_placement="user"``, as a prefix
    of the last user message); for ``/v1/completions``, as a prefix of the prompt. The block reads
    ``Context:`` followed by numbered passages (``[1] ...``), blank lines between them. The
    ``ragzip`` field is removed before the request is forwarded.

(b) Tags inside message contents (any role, string contents and ``text`` parts) or the
    completions prompt::

        Answer from the documents.
        <ragzip:context>
        First passage ...

        Second passage ...
        <ragzip:passage title="Doc 3">Third passage, may hold

        blank lines.</ragzip:passage>
        </ragzip:context>
        Question: who wrote it?

    Text between ``<ragzip:context>`` and ``</ragzip:context>`` is context: it is split into
    passages at ``<ragzip:passage>`` tags (optional ``title``/``id`` attributes) and, outside
    them, at blank lines. Each marked region is replaced by its kept passages, joined by blank
    lines; the tags do not reach the upstream model. Everything outside the tags (instructions,
    the question) passes verbatim.

The query the context is compressed for is ``ragzip.query`` when given, otherwise the text of the
last user message (chat) or of the prompt (completions) outside the context tags. System prompts,
other messages and every unknown request field pass through untouched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragzip.core.errors import InputError
from ragzip.core.types import Passage

CONTEXT_OPEN = "<ragzip:context>"
CONTEXT_CLOSE = "</ragzip:context>"
PASSAGE_OPEN = "<ragzip:passage"
PASSAGE_CLOSE = "</ragzip:passage>"
_MARKERS = ("<ragzip:", "</ragzip:")
_PASSAGE_RE = re.compile(
    r"<ragzip:passage(?P<attrs>(?:\s+[A-Za-z_]+\s*=\s*\"[^\"]*\")*)\s*>(?P<body>.*?)</ragzip:passage>",
    re.DOTALL,
)
_ATTR_RE = re.compile(r"([A-Za-z_]+)\s*=\s*\"([^\"]*)\"")
_BLANK_LINES_RE = re.compile(r"\n[ \t\r\f\v]*\n")
_PASSAGE_ATTRS = frozenset({"title", "id"})


@dataclass(frozen=True)
class Slot:
    """Where a run of passages goes back: passages ``first .. first + count - 1`` of a plan."""

    first: int
    count: int

    def kept(self, kept_texts: Sequence[str], passages: Sequence[Passage]) -> list[str]:
        """Rendered kept passages of this slot (dropped ones left out)."""
        out = []
        for i in range(self.first, self.first + self.count):
            text = kept_texts[i]
            if text:
                title = passages[i].title
                out.append(f"{title}\n{text}" if title else text)
        return out


@dataclass(frozen=True)
class MarkedText:
    """A text cut into literal pieces and context regions (slots)."""

    segments: tuple[str | Slot, ...]

    def outside(self) -> str:
        """The text outside the context regions."""
        return "".join(s for s in self.segments if isinstance(s, str))

    def render(self, kept_texts: Sequence[str], passages: Sequence[Passage]) -> str:
        """The text with each region replaced by its kept passages."""
        parts = []
        for seg in self.segments:
            if isinstance(seg, str):
                parts.append(seg)
            else:
                parts.append("\n\n".join(seg.kept(kept_texts, passages)))
        return "".join(parts)


@dataclass
class ContextPlan:
    """Every passage of one request, in one list, and where each group of them goes back.

    Attributes:
        passages: All context passages, in request order (``ragzip`` field first).
        field_slot: The passages of the ``ragzip`` field, if any.
        edits: ``(location, marked text)`` for each tagged text; the location is
            ``(message index, part index or None)`` for chats, ``(prompt index, None)`` for
            completions.
        default_query: The question found in the request (outside the tags).
    """

    passages: list[Passage] = field(default_factory=list)
    field_slot: Slot | None = None
    edits: list[tuple[tuple[int, int | None], MarkedText]] = field(default_factory=list)
    default_query: str = ""

    @property
    def has_work(self) -> bool:
        """Whether the request holds marked context (possibly empty tags to strip)."""
        return self.field_slot is not None or bool(self.edits)

    def add(self, passages: Sequence[Passage]) -> Slot:
        """Append passages; the slot they will come back to."""
        slot = Slot(len(self.passages), len(passages))
        self.passages.extend(passages)
        return slot

    def parse(self, text: str) -> MarkedText | None:
        """Split ``text`` at context tags (``None`` when it holds no ragzip tag)."""
        if not any(m in text for m in _MARKERS):
            return None
        segments: list[str | Slot] = []
        pos = 0
        while True:
            start = text.find(CONTEXT_OPEN, pos)
            literal = text[pos:] if start < 0 else text[pos:start]
            _check_literal(literal)
            segments.append(literal)
            if start < 0:
                break
            inner_start = start + len(CONTEXT_OPEN)
            end = text.find(CONTEXT_CLOSE, inner_start)
            if end < 0:
                msg = f"{CONTEXT_OPEN} at character {start} is never closed"
                raise InputError(msg)
            inner = text[inner_start:end]
            if CONTEXT_OPEN in inner:
                msg = f"{CONTEXT_OPEN} tags cannot be nested"
                raise InputError(msg)
            segments.append(self.add(split_passages(inner)))
            pos = end + len(CONTEXT_CLOSE)
        return MarkedText(tuple(s for s in segments if s != ""))


def _check_literal(text: str) -> None:
    if CONTEXT_CLOSE in text:
        msg = f"{CONTEXT_CLOSE} without a matching {CONTEXT_OPEN}"
        raise InputError(msg)
    if PASSAGE_OPEN in text or PASSAGE_CLOSE in text:
        msg = f"<ragzip:passage> tags belong inside {CONTEXT_OPEN} ... {CONTEXT_CLOSE}"
        raise InputError(msg)


def _split_blank(text: str) -> list[Passage]:
    if PASSAGE_OPEN in text or PASSAGE_CLOSE in text:
        msg = 'malformed <ragzip:passage> tag: use <ragzip:passage title="...">...</ragzip:passage>'
        raise InputError(msg)
    return [Passage(text=p.strip()) for p in _BLANK_LINES_RE.split(text) if p.strip()]


def split_passages(inner: str) -> list[Passage]:
    """Passages of a context region: ``<ragzip:passage>`` elements, other text at blank lines."""
    passages: list[Passage] = []
    pos = 0
    for match in _PASSAGE_RE.finditer(inner):
        passages.extend(_split_blank(inner[pos : match.start()]))
        attrs = dict(_ATTR_RE.findall(match.group("attrs")))
        unknown = sorted(set(attrs) - _PASSAGE_ATTRS)
        if unknown:
            msg = f"unknown <ragzip:passage> attributes {unknown}; allowed: id, title"
            raise InputError(msg)
        body = match.group("body").strip()
        if body:
            title, ident = attrs.get("title", ""), attrs.get("id", "")
            passages.append(Passage(text=body, title=title, id=ident))
        pos = match.end()
    passages.extend(_split_blank(inner[pos:]))
    return passages


def context_block(
    slot: Slot, kept_texts: Sequence[str], passages: Sequence[Passage], header: str
) -> str:
    """The inserted block for ``ragzip.passages``: header, then ``[n] passage`` blocks."""
    kept = slot.kept(kept_texts, passages)
    if not kept:
        return ""
    body = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(kept, start=1))
    return f"{header}\n{body}" if header else body


@dataclass(frozen=True)
class PlanLayout:
    """The context a plan sends, piece by piece, so that the budget counts exactly that.

    One piece for the ``ragzip`` field's block (with the blank line that joins it to the text
    after it when it is a prefix) and one per tagged region.

    Args:
        plan: The request's context.
        header: The block's header line.
        prefix_block: The block is put in front of other text (user placement, completions).
    """

    plan: ContextPlan
    header: str
    prefix_block: bool

    def render(self, passages: Sequence[Passage], texts: Sequence[str]) -> tuple[str, ...]:
        """The context pieces sent for ``texts`` (one kept text per plan passage)."""
        pieces = []
        if self.plan.field_slot is not None:
            block = context_block(self.plan.field_slot, texts, passages, self.header)
            pieces.append(f"{block}\n\n" if block and self.prefix_block else block)
        for _, marked in self.plan.edits:
            pieces.extend(
                "\n\n".join(seg.kept(texts, passages))
                for seg in marked.segments
                if isinstance(seg, Slot)
            )
        return tuple(pieces)


# --- chat -----------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def plan_chat(messages: Sequence[dict[str, Any]], field_passages: Sequence[Passage]) -> ContextPlan:
    """Find the context of a chat request.

    Args:
        messages: The request's messages, as sent (not modified).
        field_passages: Passages of the ``ragzip`` field.
    """
    plan = ContextPlan()
    if field_passages:
        plan.field_slot = plan.add(field_passages)
    last_user: int | None = None
    query_parts: dict[int, list[str]] = {}
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") == "user":
            last_user = i
        if isinstance(content, str):
            marked = plan.parse(content)
            if marked is not None:
                plan.edits.append(((i, None), marked))
            query_parts[i] = [marked.outside() if marked else content]
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text"):
                    continue
                text = part.get("text")
                if not isinstance(text, str):
                    continue
                marked = plan.parse(text)
                if marked is not None:
                    plan.edits.append(((i, j), marked))
                texts.append(marked.outside() if marked else text)
            query_parts[i] = texts
    if last_user is not None:
        plan.default_query = "\n".join(query_parts.get(last_user, [])).strip()
    return plan


def render_chat(
    messages: Sequence[dict[str, Any]],
    plan: ContextPlan,
    kept_texts: Sequence[str],
    *,
    placement: str,
    header: str,
) -> list[dict[str, Any]]:
    """The messages to forward: tagged regions replaced, the context block inserted.

    Messages that are not changed are passed as the same objects; changed ones are copies.
    """
    out: list[dict[str, Any]] = list(messages)
    for (i, j), marked in plan.edits:
        text = marked.render(kept_texts, plan.passages)
        message = dict(out[i]) if out[i] is messages[i] else out[i]
        if j is None:
            message["content"] = text
        else:
            if message.get("content") is messages[i].get("content"):
                message["content"] = copy.copy(message["content"])
            part = dict(message["content"][j])
            part["text"] = text
            message["content"][j] = part
        out[i] = message
    if plan.field_slot is None:
        return out
    block = context_block(plan.field_slot, kept_texts, plan.passages, header)
    if not block:
        return out
    last_user = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
    if placement == "user" and last_user is not None:
        message = dict(out[last_user])
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [{"type": "text", "text": block}, *content]
        else:
            message["content"] = f"{block}\n\n{content or ''}"
        out[last_user] = message
        return out
    out.insert(insert_position(out), {"role": "system", "content": block})
    return out


def insert_position(messages: Sequence[Any]) -> int:
    """Where :func:`render_chat` inserts a context message: before the last user message."""
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else len(messages)


# --- completions ----------------------------------------------------------------------------


def plan_completion(prompt: Any, field_passages: Sequence[Passage]) -> ContextPlan:
    """Find the context of a ``/v1/completions`` prompt (a string or a list of strings).

    Raises:
        InputError: ``ragzip`` passages given with a token-id prompt.
    """
    plan = ContextPlan()
    if field_passages:
        plan.field_slot = plan.add(field_passages)
    prompts = [prompt] if isinstance(prompt, str) else prompt
    texts = [p for p in prompts if isinstance(p, str)]
    if field_passages and len(texts) != len(prompts):
        msg = "ragzip passages need a text prompt, not token ids"
        raise InputError(msg)
    outside = []
    for i, text in enumerate(texts):
        marked = plan.parse(text)
        if marked is not None:
            plan.edits.append(((i, None), marked))
        outside.append(marked.outside() if marked else text)
    plan.default_query = "\n".join(outside).strip()
    return plan


def render_completion(
    prompt: Any, plan: ContextPlan, kept_texts: Sequence[str], *, header: str
) -> Any:
    """The prompt to forward, in the shape it came (string or list)."""
    single = isinstance(prompt, str)
    prompts: list[Any] = [prompt] if single else list(prompt)
    for (i, _), marked in plan.edits:
        prompts[i] = marked.render(kept_texts, plan.passages)
    if plan.field_slot is not None:
        block = context_block(plan.field_slot, kept_texts, plan.passages, header)
        if block:
            prompts = [f"{block}\n\n{p}" for p in prompts]
    return prompts[0] if single else prompts
