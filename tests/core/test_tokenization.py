"""Token counts in the generator's tokenizer: remembered counts equal fresh ones, and the
memory is bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragzip.core.tokenization import HFTokenCounter


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(max_size=40), max_size=8))
def test_remembered_counts_equal_fresh_counts(minilm_counter, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    fresh = HFTokenCounter(minilm_counter.tokenizer, cache_entries=0)
    expected = [len(fresh.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert fresh.count_batch(texts) == expected
    assert minilm_counter.count_batch(texts) == expected  # shared, so often from memory
    assert minilm_counter.count_batch(texts) == expected
    assert [minilm_counter.count(t) for t in texts] == expected


def test_the_memory_is_bounded(minilm_counter) -> None:  # type: ignore[no-untyped-def]
    counter = HFTokenCounter(minilm_counter.tokenizer, cache_entries=3)
    fresh = HFTokenCounter(minilm_counter.tokenizer, cache_entries=0)
    texts = [f"word number {i}" for i in range(10)]
    assert counter.count_batch(texts) == fresh.count_batch(texts)
    assert counter.remembered == 3 and fresh.remembered == 0
