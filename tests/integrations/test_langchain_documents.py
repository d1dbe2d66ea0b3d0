"""Document <-> Passage conversions: copies both ways, ids, titles and scores carried over."""

from __future__ import annotations

import copy
import math

import pytest
from langchain_core.documents import Document

from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.integrations import document_to_passage, passage_to_document


def test_passage_to_document_carries_id_title_score_and_copies_metadata() -> None:
    passage = Passage(
        text="Paris is the capital of France.",
        id="p1",
        title="France",
        metadata={"source": "wiki", "chunk_index": 3},
        score=0.25,
    )
    doc = passage_to_document(passage)
    assert doc.page_content == passage.text
    assert doc.id == "p1"
    assert doc.metadata == {
        "source": "wiki",
        "chunk_index": 3,
        "id": "p1",
        "title": "France",
        "score": 0.25,
    }
    doc.metadata["source"] = "changed"
    assert passage.metadata["source"] == "wiki"


def test_passage_without_score_has_no_score_key() -> None:
    doc = passage_to_document(Passage(text="x", id="a"))
    assert "score" not in doc.metadata


def test_document_to_passage_reads_id_title_score() -> None:
    doc = Document(
        page_content="Berlin is the capital of Germany.",
        metadata={"title": "Germany", "relevance_score": 0.75, "tags": ["geo"]},
        id="d7",
    )
    before = copy.deepcopy(doc)
    passage = document_to_passage(doc)
    assert passage.text == doc.page_content
    assert passage.id == "d7"
    assert passage.title == "Germany"
    assert passage.score == 0.75
    assert passage.metadata["tags"] == ["geo"]
    with pytest.raises(TypeError):
        passage.metadata["new"] = 1  # type: ignore[index]
    assert doc == before


@pytest.mark.parametrize(
    ("metadata", "expected_id", "expected_score"),
    [
        ({"id": "meta-id", "score": 2}, "meta-id", 2.0),
        ({"id": 17, "score": float("nan"), "relevance_score": 0.5}, None, 0.5),
        ({"score": True}, None, None),
        ({"score": "0.3"}, None, None),
    ],
)
def test_document_to_passage_fallbacks(
    metadata: dict[str, object], expected_id: str | None, expected_score: float | None
) -> None:
    passage = document_to_passage(Document(page_content="some text", metadata=metadata))
    if expected_id is None:
        assert len(passage.id) == 16  # derived from the text
    else:
        assert passage.id == expected_id
    if expected_score is None:
        assert passage.score is None
    else:
        assert passage.score is not None and math.isclose(passage.score, expected_score)


def test_round_trip_keeps_text_id_title_and_score() -> None:
    passage = Passage(text="text", id="x1", title="T", metadata={"k": "v"}, score=1.5)
    back = document_to_passage(passage_to_document(passage))
    assert back == passage
    assert back.score == 1.5
    assert back.metadata["k"] == "v"


def test_not_a_document_is_an_input_error() -> None:
    with pytest.raises(InputError, match="Document"):
        document_to_passage({"page_content": "x"})  # type: ignore[arg-type]
