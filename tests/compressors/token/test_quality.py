"""The shipped token classifier on real NQ questions of the ``val`` split: query awareness, the
trained model against an untrained head, numbers and records kept with their labels."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ragzip import Budget
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.compressors.token.model import load_base_classifier
from ragzip.core.tokenization import TokenCounter
from ragzip.experiments.answers import answer_in_text


def _val_contexts(
    data_dir: Path, n: int, others: int = 3
) -> list[tuple[str, list[str], list[str]]]:
    """``n`` val questions, each with its gold passage among ``others`` random val passages."""
    from ragzip.experiments.datasets import nq_split

    val = nq_split("val", data_dir)
    rng = random.Random(0)
    out = []
    for ex in val:
        if len(out) == n:
            break
        if not answer_in_text(list(ex.answers), ex.text):
            continue
        pool = [o.text for o in rng.sample(val, others + 1) if o.text != ex.text][:others]
        passages = [ex.text, *pool]
        rng.shuffle(passages)
        out.append((ex.question, list(ex.answers), passages))
    return out


def _recall(compressor: TokenCompressor, contexts: Sequence[Any], ratio: float) -> float:
    hits = 0
    for question, answers, passages in contexts:
        result = compressor.compress(question, passages, budget=Budget(ratio=ratio))
        hits += answer_in_text(answers, result.context)
    return hits / len(contexts)


@pytest.mark.slow
def test_query_awareness_on_nq(shipped: TokenCompressor, data_dir: Path) -> None:
    """The same passages keep different words for different questions.

    Alone, a passage keeps a different word set for another question. Beside a second gold
    passage at 4x, a passage's answer survives when the context is compressed for its own
    question far more often than when it is compressed for the other passage's question.
    """
    from ragzip.experiments.datasets import nq_split

    val = [ex for ex in nq_split("val", data_dir) if answer_in_text(list(ex.answers), ex.text)]
    val = val[:40]
    differ = own_hits = cross_hits = 0
    for k, ex in enumerate(val):
        other = val[(k + 7) % len(val)]
        own = shipped.compress(ex.question, [ex.text], budget=Budget(ratio=4))
        alt = shipped.compress(other.question, [ex.text], budget=Budget(ratio=4))
        differ += own.passages[0].spans != alt.passages[0].spans
        pair = [ex.text, other.text]
        for_own = shipped.compress(ex.question, pair, budget=Budget(ratio=4))
        for_other = shipped.compress(other.question, pair, budget=Budget(ratio=4))
        own_hits += answer_in_text(list(ex.answers), for_own.context)
        cross_hits += answer_in_text(list(ex.answers), for_other.context)
    assert differ >= 0.9 * len(val)
    assert own_hits >= cross_hits + 0.4 * len(val), (own_hits, cross_hits)


@pytest.mark.slow
def test_trained_model_beats_an_untrained_head(
    shipped: TokenCompressor, smollm2_counter: TokenCounter, data_dir: Path
) -> None:
    import torch

    contexts = _val_contexts(data_dir, 80)
    torch.manual_seed(0)
    model, tokenizer = load_base_classifier()
    untrained = TokenCompressor(counter=smollm2_counter, model=model, tokenizer=tokenizer)
    trained_recall = _recall(shipped, contexts, 4.0)
    untrained_recall = _recall(untrained, contexts, 4.0)
    assert trained_recall >= untrained_recall + 0.15, (trained_recall, untrained_recall)


def test_numbers_and_records_survive_with_their_labels(
    smollm2_counter: TokenCounter,
) -> None:
    """The shipped classifier keeps a value with its label, and the record a question names."""
    comp = TokenCompressor(counter=smollm2_counter)
    rng = random.Random(0)
    serials = {i: f"SN-{rng.randint(10000, 99999)}-{rng.choice('ABCDEFGH')}" for i in range(1, 41)}
    listing = "\n".join(f"Unit {i}: {s}" for i, s in serials.items())
    depot = "Maintenance log of the northern depot. All units were inspected in March."
    for i in (3, 17, 38):
        result = comp.compress(
            f"What is the serial number of unit {i}?", [depot, listing], budget=Budget(ratio=4)
        )
        assert f"Unit {i}: {serials[i]}" in result.context
    facts = (
        "Inspection hotline: +49 89 1234567. The station sits at latitude 48.1374 and the tower "
        "is 41.7 m tall. It was built long ago by many people who worked hard every day."
    )
    record = '{"station": "Munich Nord", "lat": 48.1374, "lon": 11.5755, "height_m": 41.7}'
    for ratio in (2.0, 4.0):
        result = comp.compress(
            "What is the inspection hotline number?", [facts, record], budget=Budget(ratio=ratio)
        )
        text = result.context
        if ratio == 2.0:
            assert "hotline: +49 89 1234567" in text
        for value in ("48.1374", "41.7", "11.5755", "1234567"):  # never half a number
            for token in re.findall(r"[\d.]+", text):
                assert not (token != value and value.startswith(token) and len(token) > 2)
        for key in ('"lat":', '"lon":', '"height_m":'):  # a kept key keeps its value
            if key in text:
                assert re.search(re.escape(key) + r" [\d.]+", text), text
