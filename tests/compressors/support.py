"""What several compressor test modules use: passages every compressor must handle, tiny
random encoders. Not a test module."""

from __future__ import annotations

from typing import Any

PROSE = [  # prose with a known answer, blank passages, CJK text with an emoji, and (last) code
    "Yesterday is a song by the Beatles. It was written by Paul McCartney in 1965. "
    "The song was recorded at Abbey Road Studios.",
    "Paris is the capital of France. It has about two million inhabitants.\n\nThe Seine "
    "flows through the city.",
    "",
    "   \n  ",
    "東京は日本の首都です。人口は約千四百万人です。😀 Emoji close the passage.",
    "def area(r):\n    return 3.14159 * r ** 2\n# computes the area of a circle",
]
PROSE_QUERY = "who wrote the song yesterday?"


def tiny_bert_config(vocab_size: int, *, layers: int, **extra: Any) -> Any:
    """A BERT 32 wide with ``layers`` layers over ``vocab_size`` tokens: the real code path of
    the MiniLM classifiers at a fraction of their cost (weights random)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        **extra,
    )
