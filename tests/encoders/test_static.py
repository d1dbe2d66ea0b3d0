"""Static token vectors distilled from the shipped MiniLM: made once into the cache, unit-norm
rows, and a ranking that follows meaning."""

from __future__ import annotations

import numpy as np
import pytest

from ragzip.encoders.static import (
    STATIC_NAME,
    StaticEmbedder,
    load_static_embedder,
    static_folder,
)
from ragzip.weights import minilm_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return load_static_embedder()


def test_distilled_once_into_the_cache(static: StaticEmbedder) -> None:
    folder = static_folder(minilm_dir())
    assert folder.is_dir() and STATIC_NAME in folder.name
    assert load_static_embedder() is static  # loaded once per process
    assert static.name == STATIC_NAME and static.feature_precision == "float32"
    assert static.dimensions == 256


def test_vectors_are_unit_norm_rows(static: StaticEmbedder) -> None:
    texts = ["Paris is the capital of France.", "bm25s scores words.", "ocean " * 2000]
    vectors = static.encode(texts, batch_size=8, normalize_embeddings=True)
    assert vectors.shape == (3, static.dimensions) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert static.encode([]).shape == (0, static.dimensions)
    blank = static.encode([""])  # no token: a zero row, not NaN
    assert np.isfinite(blank).all() and not blank.any()


def test_similar_texts_are_closer(static: StaticEmbedder) -> None:
    query, near, far = static.encode(
        [
            "who wrote the novel pride and prejudice",
            "Pride and Prejudice is an 1813 novel by the English author Jane Austen.",
            "The Pacific Ocean is the largest and deepest of Earth's oceanic divisions.",
        ]
    )
    assert float(near @ query) > float(far @ query) + 0.1
