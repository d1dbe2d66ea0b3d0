"""Split documents into overlapping, sentence-aligned chunks for indexing.

Chunks are windows of whole sentences (pySBD via :func:`ragzip.core.text.split_sentences`) of at
most ``max_words`` words; consecutive chunks share about ``overlap_words`` words of trailing
sentences, so a fact that straddles a boundary is whole in at least one chunk. A sentence longer
than ``max_words`` is cut into word windows with the same overlap. Chunk text is always a verbatim
slice of the source text, and every non-space character of the source lands in some chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ragzip.core.errors import ConfigError
from ragzip.core.text import split_sentences
from ragzip.core.types import Passage, Span

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ChunkConfig:
    """How documents are cut into chunks.

    Attributes:
        max_words: Most whitespace-separated words in a chunk.
        overlap_words: About how many words consecutive chunks share (0 for none).
    """

    max_words: int = 120
    overlap_words: int = 24

    def __post_init__(self) -> None:
        for name in ("max_words", "overlap_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"ChunkConfig.{name} must be an int, got {value!r}"
                raise ConfigError(msg)
        if self.max_words < 1:
            msg = f"ChunkConfig.max_words must be >= 1, got {self.max_words}"
            raise ConfigError(msg)
        if not 0 <= self.overlap_words < self.max_words:
            msg = (
                f"ChunkConfig.overlap_words must be in [0, max_words={self.max_words}), "
                f"got {self.overlap_words}"
            )
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, int]:
        """The config as plain JSON-able values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ChunkConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {"max_words", "overlap_words"}
        if unknown:
            msg = f"unknown ChunkConfig keys: {sorted(unknown)}"
            raise ConfigError(msg)
        return cls(**data)


def chunk_passages(passages: Iterable[Passage], config: ChunkConfig | None = None) -> list[Passage]:
    """Cut each passage into sentence-aligned chunks.

    Args:
        passages: The documents.
        config: Window and overlap sizes; the defaults of :class:`ChunkConfig` when ``None``.

    Returns:
        The chunks, document by document. Each has id ``"{doc id}#{index}"``, the document's
        title, and metadata with the document's metadata plus ``doc_id``, ``chunk_index``,
        ``char_start`` and ``char_end`` (``text == doc.text[char_start:char_end]``).
        Whitespace-only documents give no chunks.
    """
    config = config or ChunkConfig()
    chunks: list[Passage] = []
    for doc in passages:
        for index, (start, end) in enumerate(chunk_spans(doc.text, config)):
            metadata = dict(doc.metadata)
            metadata.update(doc_id=doc.id, chunk_index=index, char_start=start, char_end=end)
            chunks.append(
                Passage(
                    text=doc.text[start:end],
                    id=f"{doc.id}#{index}",
                    title=doc.title,
                    metadata=metadata,
                )
            )
    return chunks


def chunk_spans(text: str, config: ChunkConfig | None = None) -> list[Span]:
    """Character spans of the chunks of ``text`` (see :func:`chunk_passages`)."""
    config = config or ChunkConfig()
    sentences = split_sentences(text)
    words = [len(_WORD.findall(text, s, e)) for s, e in sentences]
    limit, target = config.max_words, config.overlap_words
    spans: list[Span] = []
    i, n = 0, len(sentences)
    while i < n:
        if words[i] > limit:  # one over-long sentence: word windows with the same overlap
            spans.extend(_word_windows(text, sentences[i], limit, target))
            i += 1
            continue
        j, total = i, 0
        while j < n and words[j] <= limit and total + words[j] <= limit:
            total += words[j]
            j += 1
        spans.append((sentences[i][0], sentences[j - 1][1]))
        if j >= n:
            break
        if words[j] > limit:  # the next chunk is word windows: no sentence overlap
            i = j
            continue
        # Step back over trailing sentences while that brings the overlap nearer the target,
        # never back to i (progress) and never so far that sentence j no longer fits.
        start, overlap = j, 0
        while start - 1 > i:
            w = words[start - 1]
            if abs(overlap + w - target) >= abs(overlap - target):
                break
            if overlap + w + words[j] > limit:
                break
            overlap += w
            start -= 1
        i = start
    return spans


def _word_windows(text: str, span: Span, limit: int, overlap: int) -> list[Span]:
    """Windows of ``limit`` words over one sentence, consecutive ones sharing ``overlap``."""
    bounds = [(m.start(), m.end()) for m in _WORD.finditer(text, span[0], span[1])]
    step = limit - overlap
    windows: list[Span] = []
    first = 0
    while True:
        last = min(first + limit, len(bounds))
        windows.append((bounds[first][0], bounds[last - 1][1]))
        if last == len(bounds):
            return windows
        first += step
