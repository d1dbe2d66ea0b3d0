"""Conversions between LangChain ``Document`` and ragzip :class:`~ragzip.core.types.Passage`.

Both directions build new objects: the source's metadata is deep-copied, never shared or altered.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from ragzip.core.errors import InputError, needs_extra
from ragzip.core.types import Passage

with needs_extra("langchain", "the LangChain integration needs langchain-core"):
    from langchain_core.documents import Document

SCORE_KEYS: tuple[str, ...] = ("score", "relevance_score")
"""Metadata keys a retrieval score is read from, in order of preference."""


def passage_to_document(passage: Passage) -> Document:
    """A LangChain document holding ``passage``.

    The passage's metadata is copied and ``id``, ``title`` and (when set) ``score`` are added, so
    they survive vector stores that keep metadata only. The document's ``id`` is the passage id.
    """
    metadata: dict[str, Any] = copy.deepcopy(dict(passage.metadata))
    metadata["id"] = passage.id
    metadata["title"] = passage.title
    if passage.score is not None:
        metadata["score"] = passage.score
    return Document(page_content=passage.text, metadata=metadata, id=passage.id)


def _score(metadata: Mapping[str, Any]) -> float | None:
    for key in SCORE_KEYS:
        value = metadata.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            score = float(value)
            if math.isfinite(score):
                return score
    return None


def document_to_passage(document: Document) -> Passage:
    """A ragzip passage holding ``document``.

    The id is the document's ``id``, else a string ``id`` in its metadata, else derived from the
    text; the title is a string ``title`` in the metadata; the score is the first finite number
    under ``score`` or ``relevance_score``. The metadata is copied (and made read-only).

    Raises:
        InputError: ``document`` is not a LangChain ``Document``.
    """
    if not isinstance(document, Document):
        msg = f"expected a langchain_core Document, got {type(document).__name__}"
        raise InputError(msg)
    metadata = copy.deepcopy(document.metadata or {})
    doc_id = document.id or metadata.get("id")
    title = metadata.get("title")
    return Passage(
        text=document.page_content,
        id=doc_id if isinstance(doc_id, str) else "",
        title=title if isinstance(title, str) else "",
        metadata=metadata,
        score=_score(metadata),
    )
