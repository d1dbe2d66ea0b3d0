"""Prepared documents as bytes and the staging folder of a folder index built in parts, with the
real MiniLM and ``mig``'s featurizer (no Ray needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragzip.core.errors import IndexCorruptedError
from ragzip.core.types import Passage
from ragzip.indexing import shards
from ragzip.indexing.ray_engine import plan
from ragzip.retrievers.backends import mig_featurizer
from ragzip.retrievers.building import Prepared, prepare_documents
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import DenseConfig
from ragzip.weights import load_embedder

DOCS = [
    Passage(
        id=f"doc{i}",
        title=f"Topic {i}",
        text=f"Sentence one about topic {i}. The second sentence adds a fact {i * 7}. "
        "A third sentence repeats what every document says.",
    )
    for i in range(5)
]


@pytest.fixture(scope="module")
def embedder() -> Any:
    return load_embedder()


def _prepare(docs: list[Passage], embedder: Any) -> Prepared:
    config = DenseConfig(precision="float32")
    featurizer = mig_featurizer(embedder)
    return prepare_documents(
        docs, ChunkConfig(max_words=12, overlap_words=2), embedder, config, featurizer=featurizer
    )


def test_prepared_documents_survive_the_trip_through_bytes(embedder: Any) -> None:
    prepared = _prepare(DOCS, embedder)
    back = shards.loads(shards.dumps(prepared))
    assert back.chunks == prepared.chunks
    assert [dict(c.metadata) for c in back.chunks] == [dict(c.metadata) for c in prepared.chunks]
    np.testing.assert_array_equal(back.vectors, prepared.vectors)
    assert back.unit_keys == prepared.unit_keys and len(back.unit_keys) == len(back.chunks)
    assert back.feature_rows() == prepared.feature_rows() and back.feature_rows()
    with pytest.raises(IndexCorruptedError, match="not a prepared shard"):
        shards.loads(b"not an npz file")


def test_merged_parts_keep_order_and_each_shared_sentence_once(embedder: Any) -> None:
    parts = [_prepare(DOCS[:2], embedder), _prepare(DOCS[2:], embedder)]
    merged = shards.merge(parts)
    whole = _prepare(DOCS, embedder)
    assert merged.chunks == whole.chunks
    np.testing.assert_allclose(merged.vectors, whole.vectors, atol=1e-4)
    assert merged.features is not None and whole.features is not None
    # "A third sentence repeats ..." is in every document: stored once
    assert len(merged.features) == len(whole.features)
    assert sorted(map(bytes, merged.features.keys)) == sorted(map(bytes, whole.features.keys))


def test_shards_are_saved_whole_and_found_by_key(tmp_path: Path, embedder: Any) -> None:
    folder = shards.staging_folder(tmp_path / "index")
    assert folder.parent == tmp_path and folder.name.startswith(".")
    assert shards.saved(folder) == set()
    data = shards.dumps(_prepare(DOCS[:1], embedder))
    shards.save(folder, "k1", data)
    (folder / ".k2.123.tmp").write_bytes(data[:10])  # a write cut short: not a shard
    assert shards.saved(folder) == {"k1"}
    assert shards.load(folder, ["k1"])[0].chunks[0].id.startswith("doc0")
    shards.discard(folder)
    assert not folder.exists()


def test_work_items_are_keyed_by_content_and_settings() -> None:
    prints = [f"{d.id}-v1" for d in DOCS]
    first = plan(DOCS, prints, 2, "settings")
    assert [len(i.documents) for i in first] == [2, 2, 1]
    assert [i.key for i in plan(DOCS, prints, 2, "settings")] == [i.key for i in first]
    changed = plan(DOCS, [*prints[:4], "doc4-v2"], 2, "settings")
    assert [i.key for i in changed][:2] == [i.key for i in first][:2]
    assert changed[2].key != first[2].key
    assert {i.key for i in plan(DOCS, prints, 2, "other")}.isdisjoint(i.key for i in first)
