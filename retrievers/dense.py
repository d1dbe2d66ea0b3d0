"""Dense retrieval: sentence embeddings in a faiss inner-product index.

Texts are embedded with a sentence-transformers bi-encoder — by default all-MiniLM-L6-v2
(Wang et al., "MiniLM", 2020; trained as in Reimers & Gurevych, "Sentence-BERT", 2019) from
:func:`ragzip.weights.load_embedder` — L2-normalised, so inner product is cosine similarity.
Small corpora use exact search (``IndexFlatIP``); large ones a graph index (``IndexHNSWFlat``,
Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using Hierarchical
Navigable Small World graphs", 2018). ``kind="auto"`` switches at ``hnsw_threshold`` vectors;
``benchmarks/retrieval.py`` measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ragzip.cache.feature_cache import FeatureCache
from ragzip.core.errors import ConfigError, ModelError, needs_extra
from ragzip.encoders.embedding import (
    Precision,
    autocast,
    device_of,
    feature_namespace,
    normalize,
    resolve_precision,
)
from ragzip.encoders.minilm import MINILM_NAME

DenseKind = Literal["auto", "flat", "hnsw"]


@runtime_checkable
class Embedder(Protocol):
    """What the dense index needs of an embedding model (a ``SentenceTransformer`` fits)."""

    def encode(self, sentences: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Embed a list of texts into an array ``(n, dim)``."""
        ...


@dataclass(frozen=True)
class DenseConfig:
    """Which faiss index to build, and how.

    Attributes:
        kind: ``"flat"`` (exact), ``"hnsw"`` (approximate, faster on large corpora) or
            ``"auto"``: flat below ``hnsw_threshold`` vectors, HNSW from there on.
        hnsw_threshold: Corpus size from which ``"auto"`` picks HNSW.
        hnsw_m: Neighbours per HNSW node.
        ef_construction: HNSW build-time search depth. 200 (with ``ef_search`` 128) keeps
            99.5% of the exact top-10 at 100k chunks with a 0.46 ms p50 search on one thread;
            80 reached only 98.8% at the same ``ef_search`` (``benchmarks/results/hnsw.md``).
        ef_search: HNSW query-time search depth (recall/speed trade-off).
        batch_size: Texts per embedding batch.
        precision: ``"float32"``, ``"bfloat16"`` to run the embedder under torch autocast —
            about 2x faster on CPUs with AVX512-BF16/AMX with the same retrieval recall on NQ
            (``benchmarks/results/fusion.md``), slower on CPUs without them — or ``"auto"``
            (the default): bfloat16 where the hardware has it (:func:`resolve_precision`).
            An index records the precision it was built with; queries use the same.
    """

    kind: DenseKind = "auto"
    hnsw_threshold: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    batch_size: int = 32
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "flat", "hnsw"):
            msg = f"dense index kind must be 'auto', 'flat' or 'hnsw', got {self.kind!r}"
            raise ConfigError(msg)
        if self.precision not in ("auto", "float32", "bfloat16"):
            msg = f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}"
            raise ConfigError(msg)
        for name in ("hnsw_threshold", "hnsw_m", "ef_construction", "ef_search", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"DenseConfig.{name} must be a positive int, got {value!r}"
                raise ConfigError(msg)

    def resolved(self, embedder: Any) -> DenseConfig:
        """This config with ``"auto"`` precision resolved for ``embedder``'s device."""
        device = str(getattr(getattr(embedder, "device", None), "type", "cpu"))
        return replace(self, precision=resolve_precision(self.precision, device))

    def resolve_kind(self, n_vectors: int) -> Literal["flat", "hnsw"]:
        """The concrete index kind for a corpus of ``n_vectors``."""
        if self.kind == "auto":
            return "hnsw" if n_vectors >= self.hnsw_threshold else "flat"
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return asdict(self)


def _faiss() -> Any:
    with needs_extra("retrieval", "dense retrieval needs faiss"):
        import faiss
    return faiss


def embedder_name(embedder: Any) -> str:
    """A name for the embedder, stored in index manifests."""
    explicit = getattr(embedder, "name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    path = getattr(getattr(embedder, "tokenizer", None), "name_or_path", None)
    if isinstance(path, str) and path:
        from ragzip.weights import minilm_dir

        try:
            if Path(path).resolve() == minilm_dir().resolve():
                return MINILM_NAME
        except (ImportError, ModelError):
            pass
        return path
    return type(embedder).__name__


def default_embedder() -> Any:
    """The embedded all-MiniLM-L6-v2 (:func:`ragzip.weights.load_embedder`)."""
    from ragzip.weights import load_embedder

    return load_embedder()


def check_dim(embedder: Any, dim: int) -> None:
    """Refuse an embedder whose vectors are not ``dim``-dimensional.

    Raises:
        ConfigError: It says it makes vectors of another size.
    """
    got = embedding_dim(embedder)
    if got is not None and got != dim:
        msg = f"the index holds {dim}-dimensional vectors but the embedder makes {got}"
        raise ConfigError(msg)


def embedding_dim(embedder: Any) -> int | None:
    """The embedder's output size, when it says."""
    for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(embedder, attr, None)
        if callable(method):
            dim = method()
            if isinstance(dim, int):
                return dim
    return None


def embed_texts(
    embedder: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    progress: bool = False,
    precision: Precision = "float32",
) -> np.ndarray:
    """Embed ``texts`` into an L2-normalised ``float32`` array ``(len(texts), dim)``.

    The embedder batches (sentence-transformers sorts by length and pads per batch); the
    rows come back in the order of ``texts``. ``precision="bfloat16"`` runs it under
    ``torch.autocast`` (a thread-local setting, undone on return).
    """
    if not texts:
        msg = "nothing to embed"
        raise ConfigError(msg)
    with autocast(device_of(embedder), precision):
        vectors = embedder.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2 or array.shape[0] != len(texts):
        msg = f"the embedder returned shape {array.shape} for {len(texts)} texts"
        raise ModelError(msg)
    return normalize(array)


def feature_model(embedder: Any, precision: Precision) -> str:
    """The namespace of ``embedder``'s unit vectors at ``precision`` (resolved for its device)
    in a :class:`~ragzip.cache.feature_cache.FeatureCache`: shared by every component that embeds
    the same way (index queries, ``mig``, vectors precomputed at index time). An embedder whose
    vectors have a precision of their own says so in ``feature_precision`` (an ONNX graph's
    ``"float32"`` or ``"int8"``, whatever autocast was asked for)."""
    own = getattr(embedder, "feature_precision", None)  # an embedder that computes in its own
    fixed = own if isinstance(own, str) else resolve_precision(precision, device_of(embedder))
    return feature_namespace(embedder_name(embedder), fixed)


def embed_cached(
    embedder: Any,
    texts: Sequence[str],
    cache: FeatureCache | None,
    *,
    precision: Precision,
    batch_size: int = 64,
) -> np.ndarray:
    """:func:`embed_texts`, looked up in and added to ``cache`` under :func:`feature_model`
    (computed only where missing); plain :func:`embed_texts` without a cache."""

    def embed(batch: Sequence[str]) -> np.ndarray:
        return embed_texts(embedder, batch, batch_size=batch_size, precision=precision)

    if cache is None:
        return embed(texts)
    vectors, _ = cache.vectors(feature_model(embedder, precision), texts, embed)
    return np.asarray(vectors, dtype=np.float32)


class DenseIndex:
    """A faiss inner-product index over unit vectors; results are row positions."""

    def __init__(self, index: Any, config: DenseConfig) -> None:
        self._index = index
        self.config = config
        if self.kind == "hnsw":
            index.hnsw.efSearch = config.ef_search

    @property
    def kind(self) -> Literal["flat", "hnsw"]:
        """``"flat"`` or ``"hnsw"``."""
        return "hnsw" if hasattr(self._index, "hnsw") else "flat"

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self._index.d)

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index."""
        return self._index

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def vectors(self) -> np.ndarray:
        """All stored vectors, ``(len(self), dim)``, in index order."""
        return np.asarray(self._index.reconstruct_n(0, len(self)), dtype=np.float32)

    @classmethod
    def build(
        cls, vectors: np.ndarray, config: DenseConfig | None = None, *, progress: bool = False
    ) -> DenseIndex:
        """Index ``vectors`` (``(n, dim)``, unit rows) with the kind ``config`` resolves to."""
        faiss = _faiss()
        config = config or DenseConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            msg = f"need a non-empty 2-d array of vectors, got shape {vectors.shape}"
            raise ConfigError(msg)
        n, dim = vectors.shape
        if config.resolve_kind(n) == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
        else:
            index = faiss.IndexFlatIP(dim)
        step = 8192
        starts = range(0, n, step)
        if progress and n > step:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="faiss", unit="batch")
        for start in starts:
            index.add(vectors[start : start + step])
        return cls(index, config)

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top ``k`` rows for each query vector: per query ``(positions, inner products)``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self))
        if k < 1:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in queries]
        scores, ids = self._index.search(queries, k)
        out = []
        for row_ids, row_scores in zip(ids, scores, strict=True):
            keep = row_ids >= 0
            out.append((row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return out

    def save(self, path: Path) -> None:
        """Write the faiss index to ``path``."""
        _faiss().write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, config: DenseConfig) -> DenseIndex:
        """Read an index written by :meth:`save`."""
        return cls(_faiss().read_index(str(path)), config)
