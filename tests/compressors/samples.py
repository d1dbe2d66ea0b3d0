"""Passages every compressor must handle: prose with a known answer, blank passages, CJK text
with an emoji, and (last) code. Not a test module."""

from __future__ import annotations

PROSE = [
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
