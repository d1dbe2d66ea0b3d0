"""Sentence vectors precomputed at index time: stored with the index, equal to fresh ones, and
found by ``mig`` through a pipeline together with the question's retrieval vector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressors.mig import MIGCompressor
from ragzip.compressors.units import split_units
from ragzip.core.errors import IndexCorruptedError
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget
from ragzip.pipeline import Pipeline
from ragzip.retrievers import HybridIndex

from .conftest import QUESTIONS, CountingEmbedder, corpus_passages


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    from ragzip.weights import smollm2_counter

    return smollm2_counter()


@pytest.fixture(scope="module")
def saved(embedder: Any, counter: TokenCounter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = HybridIndex.build(corpus_passages(), embedder=embedder, progress=False)
    index.features = MIGCompressor(counter=counter, embedder=embedder).precompute(index.chunks)
    return index.save(tmp_path_factory.mktemp("features") / "index")


def test_features_round_trip_with_the_index(saved: Path, embedder: Any) -> None:
    loaded = HybridIndex.load(saved, embedder=embedder)
    table = loaded.features
    assert table is not None and len(table) > len(loaded)  # several sentences per chunk
    assert table.vectors.dtype == np.float16 and table.vectors.shape[1] == 384
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["features"] == {
        "model": table.model,
        "n": len(table),
        "dim": 384,
        "dtype": "float16",
    }
    assert {"features/keys.npy", "features/vectors.npy"} <= set(manifest["files"])


def test_features_from_the_index_equal_features_computed_fresh(
    saved: Path, embedder: Any, counter: TokenCounter
) -> None:
    loaded = HybridIndex.load(saved, embedder=embedder)
    assert loaded.features is not None
    fresh = MIGCompressor(counter=counter, embedder=embedder, features=FeatureCache(0))
    for chunk in loaded.chunks:
        units = split_units([chunk.text], counter)
        texts = [f"{chunk.title}. {u.text}" for u in units.items]
        computed, _ = fresh.features.vectors(fresh.feature_model, texts, fresh._encode)
        keys = [FeatureCache.key(fresh.feature_model, t) for t in texts]
        stored = [loaded.features.get(k) for k in keys]
        assert all(row is not None for row in stored)
        np.testing.assert_allclose(np.stack(stored), computed, atol=2e-3)  # float16 storage


def test_mig_over_an_indexed_pipeline_embeds_only_the_question_once(
    saved: Path, embedder: Any, counter: TokenCounter
) -> None:
    counting = CountingEmbedder(embedder)
    loaded = HybridIndex.load(saved, embedder=counting)
    mig = MIGCompressor(counter=counter, embedder=counting)
    pipe = Pipeline(mig, Budget(ratio=4.0), retriever=loaded, k=4)
    fresh = MIGCompressor(counter=counter, embedder=embedder, features=FeatureCache(0))
    fresh_pipe = Pipeline(fresh, Budget(ratio=4.0), k=4)
    for question in QUESTIONS.values():
        counting.calls.clear()
        run = pipe.run(question)
        result = run.compression
        assert result.timings["cache_misses"] == 0  # question and every sentence were found
        assert counting.texts == [question]  # embedded once, for retrieval
        # the same selection as a compressor that computes every vector itself
        again = fresh_pipe.run(question, list(run.retrieved)).compression
        assert [p.text for p in result.passages] == [p.text for p in again.passages]


def test_a_damaged_feature_file_is_detected(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for file in saved.rglob("*"):
        if file.is_file():
            target = copy / file.relative_to(saved)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    vectors = copy / "features" / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x01
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        HybridIndex.load(copy)
