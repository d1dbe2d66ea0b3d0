"""The classifier's windows, per-word probabilities and the shipped artefact
(ragzip.compressors.token.model)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ragzip import Budget
from ragzip.compressors.token.compressor import TokenCompressor, aggregate_words
from ragzip.compressors.token.model import WEIGHTS_DIR, cut_windows
from ragzip.core.tokenization import TokenCounter


def test_windows_cut_at_sentence_ends() -> None:
    sentences = [
        f"Sentence number {i} talks about topic {i} at some length here." for i in range(30)
    ]
    text = " ".join(sentences)
    offsets = [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
    windows = cut_windows(text, offsets, capacity=40)
    assert windows[0].start == 0 and windows[-1].end == len(offsets)
    for a, b in itertools.pairwise(windows):
        assert a.end == b.start
    sentence_starts = {text.index(s) for s in sentences}
    for w in windows:
        assert 0 < w.end - w.start <= 40
        assert offsets[w.start][0] in sentence_starts  # every window starts a sentence


def test_windows_split_an_overlong_sentence_at_words() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    offsets = [m.span() for m in re.finditer(r"\S+", text)]
    windows = cut_windows(text, offsets, capacity=30)
    assert [w.end - w.start for w in windows] == [30, 30, 30, 10]


def test_subword_probabilities_average_per_word() -> None:
    words = [(0, 5), (6, 9), (10, 12)]
    offsets = np.array([[0, 2], [2, 5], [6, 9]])
    probs = np.array([0.2, 0.6, 0.9])
    assert np.allclose(aggregate_words(words, offsets, probs), [0.4, 0.9, 0.0])


def test_shipped_artefact_is_small_and_described() -> None:
    files = sorted(p.name for p in WEIGHTS_DIR.iterdir())
    assert {"config.json", "model.safetensors", "training.json"} <= set(files)
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert size <= 25 * 1024 * 1024
    config = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert config["format"] == "ragzip-token-classifier" and config["format_version"] == 1
    curve = json.loads((WEIGHTS_DIR / "training.json").read_text())["validation_curve"]
    assert curve[0]["epoch"] == 0 and len(curve) >= 2


def test_bad_artefact_folder_raises(smollm2_counter: TokenCounter, tmp_path: Path) -> None:
    from ragzip.core.errors import ModelError

    with pytest.raises(ModelError, match="no trained token classifier"):
        TokenCompressor(TokenCompressor.Config(weights=str(tmp_path)), counter=smollm2_counter)
    # an artefact trained on other base weights is refused, not silently misused
    config = json.loads((WEIGHTS_DIR / "config.json").read_text())
    config["base_sha256"] = "0" * 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(WEIGHTS_DIR / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match="another all-MiniLM-L6-v2"):
        TokenCompressor(TokenCompressor.Config(weights=str(tmp_path)), counter=smollm2_counter)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        TokenCompressor(TokenCompressor.Config(weights=str(tmp_path)), counter=smollm2_counter)


def test_int8_quantisation_runs_within_budget(smollm2_counter: TokenCounter) -> None:
    compressor = TokenCompressor(TokenCompressor.Config(quantize="int8"), counter=smollm2_counter)
    text = "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911."
    result = compressor.compress("when did curie win chemistry?", [text], budget=Budget(ratio=2))
    assert 0 < result.compressed_tokens <= result.budget_tokens
    again = compressor.compress("when did curie win chemistry?", [text], budget=Budget(ratio=2))
    assert again.passages[0].spans == result.passages[0].spans


def test_shipped_model_gives_identical_output_on_repeat_runs(
    shipped: TokenCompressor, smollm2_counter: TokenCounter
) -> None:
    """Repeat calls, and a second instance, keep the same spans (batching order included)."""
    passages = [
        "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911. " * 3,
        "東京は日本の首都です。 😀 Call get_value() or see https://example.org/x.",
        "The Seine flows through Paris. " * 40,
    ]
    question = "when did curie win the chemistry prize?"
    first = shipped.compress(question, passages, budget=Budget(ratio=3))
    second = shipped.compress(question, passages, budget=Budget(ratio=3))
    fresh = TokenCompressor(counter=smollm2_counter).compress(
        question, passages, budget=Budget(ratio=3)
    )
    spans = [p.spans for p in first.passages]
    assert spans == [p.spans for p in second.passages] == [p.spans for p in fresh.passages]
    assert "get_value()" in first.passages[1].text
    assert "https://example.org/x." in first.passages[1].text
