"""MiniLM on ONNX Runtime against the SentenceTransformer it stands in for."""

from __future__ import annotations

import numpy as np
import pytest

from ragzip.encoders.minilm import MINILM_NAME, OnnxEmbedder
from ragzip.retrievers.dense import embedder_name, feature_model
from ragzip.weights import load_embedder

TEXTS = [
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Paris is the capital of France.",
    "Photosynthesis turns light into chemical energy in plants.",
    "ragzip compresses retrieved context before it reaches the model, so prompts get shorter "
    "and answers stay right. " * 20,  # longer than 256 tokens: cut as sentence-transformers cuts
    "",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    torch_embedder = load_embedder("cpu", "torch")
    return np.asarray(torch_embedder.encode(TEXTS, normalize_embeddings=True, batch_size=8))


def test_float32_graph_gives_torchs_vectors(reference: np.ndarray) -> None:
    embedder = load_embedder("cpu", "onnx")
    assert isinstance(embedder, OnnxEmbedder) and embedder.precision == "float32"
    vectors = embedder.encode(TEXTS, normalize_embeddings=True)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    cosine = (vectors * reference).sum(1)
    assert cosine.min() > 0.99999, cosine


def test_int8_graph_stays_close_and_ranks_alike(reference: np.ndarray) -> None:
    embedder = load_embedder("cpu", "onnx-int8")
    vectors = embedder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference).sum(1).min() > 0.97  # per-channel weights, measured 0.99 mean
    query = embedder.encode(["When was the Eiffel Tower built?"])
    assert int(np.argmax(vectors @ query[0])) == 0


def test_a_text_gets_the_same_vector_alone_or_in_company() -> None:
    embedder = load_embedder("cpu", "onnx-int8")
    together = embedder.encode(TEXTS, batch_size=32)
    alone = np.stack([embedder.encode([t])[0] for t in TEXTS])
    np.testing.assert_array_equal(together, alone)
    assert embedder.encode(TEXTS[0]).shape == (384,)  # one string, one row
    assert embedder.encode([]).shape == (0, 384)


def test_names_and_feature_namespaces() -> None:
    fp32, int8 = load_embedder("cpu", "onnx"), load_embedder("cpu", "onnx-int8")
    assert embedder_name(fp32) == embedder_name(int8) == MINILM_NAME
    # float32 vectors are torch's: one namespace; int8 ones are cached apart
    assert feature_model(fp32, "bfloat16").endswith("|float32")
    assert feature_model(int8, "auto").endswith("|int8")
    assert feature_model(load_embedder("cpu", "torch"), "float32") == feature_model(fp32, "auto")
