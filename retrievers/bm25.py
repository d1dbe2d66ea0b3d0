"""Sparse lexical retrieval: Okapi BM25 over bm25s.

Scores follow Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond"
(2009), in the Lucene variant that bm25s implements (Lù, "BM25S: Orders of magnitude faster
lexical search via eager sparse scoring", 2024). Text is tokenized by bm25s' own tokenizer
(lower case, ``\\b\\w\\w+\\b``, English stopwords); words are stemmed with PyStemmer's English
Snowball stemmer only when PyStemmer is installed (it is optional), and the choice is stored with
the index so queries are always tokenized the way the corpus was.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.core.errors import ConfigError, MissingDependencyError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BM25Config:
    """BM25 parameters and tokenization.

    Attributes:
        k1: Term-frequency saturation.
        b: Length normalisation.
        stem: Stem with PyStemmer (English); ``None`` stems exactly when PyStemmer is installed.
    """

    k1: float = 1.5
    b: float = 0.75
    stem: bool | None = None

    def __post_init__(self) -> None:
        if not self.k1 >= 0:
            msg = f"BM25Config.k1 must be >= 0, got {self.k1}"
            raise ConfigError(msg)
        if not 0 <= self.b <= 1:
            msg = f"BM25Config.b must be in [0, 1], got {self.b}"
            raise ConfigError(msg)

    def resolved(self) -> BM25Config:
        """A copy with ``stem`` decided (``None`` becomes whether PyStemmer is installed)."""
        if self.stem is not None:
            return self
        return BM25Config(k1=self.k1, b=self.b, stem=stemmer_available())

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return asdict(self)


def stemmer_available() -> bool:
    """Whether the optional PyStemmer package is installed."""
    return importlib.util.find_spec("Stemmer") is not None


def stemmer_for(stem: bool) -> Callable[..., Any] | None:
    """PyStemmer's English stemmer when ``stem``, else ``None`` (no stemming).

    Raises:
        MissingDependencyError: ``stem`` without PyStemmer installed.
    """
    if not stem:
        return None
    try:
        import Stemmer
    except ModuleNotFoundError as exc:
        msg = "BM25 with stemming needs PyStemmer: pip install PyStemmer"
        raise MissingDependencyError(msg, name="Stemmer") from exc
    stemmer: Callable[..., Any] = Stemmer.Stemmer("english").stemWords
    return stemmer


def terms(texts: Sequence[str], stemmer: Callable[..., Any] | None) -> list[list[str]]:
    """Each text's terms as the index tokenizes them: bm25s' tokenizer (lower case,
    ``\\b\\w\\w+\\b``, English stopwords), then ``stemmer``."""
    import bm25s

    if not texts:
        return []
    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    return tokens


class BM25Index:
    """A BM25 index over a list of texts; results are positions in that list.

    Build with :meth:`build`, or :meth:`load` a saved one.
    """

    def __init__(self, retriever: Any, config: BM25Config) -> None:
        self._retriever = retriever
        self.config = config
        self._stem = stemmer_for(bool(config.stem))

    @classmethod
    def build(
        cls, texts: Sequence[str], config: BM25Config | None = None, *, progress: bool = True
    ) -> BM25Index:
        """Tokenize and index ``texts``."""
        import bm25s

        config = (config or BM25Config()).resolved()
        if not texts:
            msg = "cannot build a BM25 index over no texts"
            raise ConfigError(msg)
        tokens = bm25s.tokenize(
            list(texts),
            stopwords="en",
            stemmer=stemmer_for(bool(config.stem)),
            show_progress=progress,
        )
        retriever = bm25s.BM25(k1=config.k1, b=config.b)
        retriever.index(tokens, show_progress=progress)
        return cls(retriever, config)

    def __len__(self) -> int:
        return int(self._retriever.scores["num_docs"])

    def tokenize(self, queries: Sequence[str]) -> list[list[str]]:
        """Query tokens, made the same way as the corpus'."""
        return terms(queries, self._stem)

    def search(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top ``k`` documents of each query.

        Returns:
            Per query, ``(positions, scores)`` sorted by descending score (ties by position);
            documents that share no term with the query (score 0) are left out, so a list may
            be shorter than ``k``.
        """
        k = min(k, len(self))
        vocab = self._retriever.vocab_dict
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for tokens in self.tokenize(queries):
            known = [t for t in tokens if t in vocab]
            if not known or k < 1:
                out.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
                continue
            scores = np.asarray(self._retriever.get_scores(known), dtype=np.float32)
            # Select among the matching documents only: cheaper than a partition of the
            # whole score array, and it drops the zero scores at the same time.
            hits = np.flatnonzero(scores > 0)
            hit_scores = scores[hits]
            if len(hits) > k:
                keep = np.argpartition(-hit_scores, k - 1)[:k]
                hits, hit_scores = hits[keep], hit_scores[keep]
            order = np.lexsort((hits, -hit_scores))
            out.append((hits[order].astype(np.int64), hit_scores[order]))
        return out

    def save(self, folder: Path) -> None:
        """Write the bm25s index files into ``folder`` (which must exist)."""
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, config: BM25Config) -> BM25Index:
        """Read an index written by :meth:`save`; ``config`` is the one it was built with."""
        import bm25s

        retriever = bm25s.BM25.load(str(folder), load_corpus=False, show_progress=False)
        return cls(retriever, config)
