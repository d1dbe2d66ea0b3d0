"""The classifiers of ``sentence`` and ``token`` on ONNX Runtime against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragzip.compressors.sentence.features import PassageSentences
from ragzip.compressors.sentence.scorer import load_scorer
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.compressors.token.model import OnnxTokenClassifier, load_token_classifier
from ragzip.core.tokenization import TokenCounter

QUESTION = "when was the eiffel tower completed"
PASSAGES = [
    PassageSentences(
        "Eiffel Tower",
        (
            "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
            "It was completed in 1889 as the entrance arch of the World's Fair.",
            "Locals criticised its design at first.",
        ),
    ),
    PassageSentences(
        "Photosynthesis",
        ("Plants turn light into chemical energy.", "Chlorophyll absorbs red and blue light."),
    ),
]


FROZEN_INT8_TOLERANCE = 0.2
"""int8 weights in the four frozen layers: ``sentence`` probabilities moved up to 0.15 (p99
0.09) from float32 on 1,470 NQ val sentences (an EPYC with AVX512-VNNI)."""


def _flat(probs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(probs)


def test_sentence_scores_on_onnx_match_torch() -> None:
    want = _flat(load_scorer(None, "cpu", "torch").score(QUESTION, PASSAGES))
    fp32 = load_scorer(None, "cpu", "onnx")
    assert fp32.graph is not None
    np.testing.assert_allclose(_flat(fp32.score(QUESTION, PASSAGES)), want, atol=1e-4)
    int8 = _flat(load_scorer(None, "cpu", "onnx-int8").score(QUESTION, PASSAGES))
    assert np.abs(int8 - want).max() < 0.15  # measured up to 0.12 on NQ passages
    assert int(np.argmax(int8)) == int(np.argmax(want)) == 1  # the answer sentence


def _without_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    """``backend="auto"`` resolved as on a CPU without AMX, nothing pinned."""
    from ragzip.core import machine
    from ragzip.encoders.embedding import PRECISION_ENV
    from ragzip.encoders.onnx import BACKEND_ENV

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.setattr(machine, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))


def _assert_int8_in_layers(path: Path, n_frozen: int) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    quantized = [n.name for n in graph.node if n.op_type == "MatMulInteger"]
    # query, key, value, attention output, intermediate, output: six per frozen layer
    assert len(quantized) == 6 * n_frozen
    assert all(any(f"layer.{i}/" in n for i in range(n_frozen)) for n in quantized)


def test_sentence_auto_graph_has_int8_weights_in_the_frozen_layers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_amx(monkeypatch)
    scorer = load_scorer.__wrapped__(None, "cpu", "auto")
    assert scorer.graph is not None
    _assert_int8_in_layers(scorer.graph.path, scorer.model.n_frozen)
    want = _flat(load_scorer(None, "cpu", "torch").score(QUESTION, PASSAGES))
    got = _flat(scorer.score(QUESTION, PASSAGES))
    assert np.abs(got - want).max() < FROZEN_INT8_TOLERANCE
    assert int(np.argmax(got)) == int(np.argmax(want)) == 1  # the answer sentence


def test_sentence_scores_do_not_depend_on_the_batch() -> None:
    scorer = load_scorer(None, "cpu", "onnx-int8")
    together = _flat(scorer.score(QUESTION, PASSAGES))
    alone = _flat([scorer.score(QUESTION, [p])[0] for p in PASSAGES])
    np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_token_probabilities_on_onnx_follow_torch(
    backend: str, minilm_counter: TokenCounter
) -> None:
    texts = [" ".join(p.sentences) for p in PASSAGES]
    torch_comp = TokenCompressor(TokenCompressor.Config(backend="torch"), counter=minilm_counter)
    comp = TokenCompressor(TokenCompressor.Config(backend=backend), counter=minilm_counter)  # type: ignore[arg-type]
    assert isinstance(comp.model, OnnxTokenClassifier)
    want, _ = torch_comp.token_probabilities(QUESTION, texts)
    got, _ = comp.token_probabilities(QUESTION, texts)
    tolerance = 1e-4 if backend == "onnx" else 0.2
    for g, w in zip(got, want, strict=True):
        assert np.abs(g - w).max() < tolerance


def test_token_auto_graph_has_int8_weights_in_the_frozen_layers_only(
    monkeypatch: pytest.MonkeyPatch, minilm_counter: TokenCounter
) -> None:
    texts = [" ".join(p.sentences) for p in PASSAGES]
    want, _ = TokenCompressor(
        TokenCompressor.Config(backend="torch"), counter=minilm_counter
    ).token_probabilities(QUESTION, texts)
    _without_amx(monkeypatch)
    load_token_classifier.cache_clear()  # resolve "auto" anew, as on that CPU
    try:
        comp = TokenCompressor(TokenCompressor.Config(backend="auto"), counter=minilm_counter)
        got, _ = comp.token_probabilities(QUESTION, texts)
    finally:
        load_token_classifier.cache_clear()  # later tests resolve "auto" on this CPU
    assert isinstance(comp.model, OnnxTokenClassifier)
    _assert_int8_in_layers(comp.model.graph.path, 4)  # the shipped weights train layers 4, 5
    for g, w in zip(got, want, strict=True):
        assert np.abs(g - w).max() < FROZEN_INT8_TOLERANCE


def test_torch_int8_quantisation_keeps_torch() -> None:
    model, _ = load_token_classifier(None, "int8", "cpu", "onnx-int8")
    assert not isinstance(model, OnnxTokenClassifier)
