"""Static token vectors distilled from MiniLM (Model2Vec): text vectors without a transformer.

Model2Vec (Tulkens and van Dongen, MinishLab, 2024) runs every token of a sentence embedder's
vocabulary through the embedder once, reduces the outputs by PCA and weights them by token
frequency (SIF); a text's vector is then the mean of its tokens' vectors. Here the embedder is
the shipped all-MiniLM-L6-v2, distilled on first use (about 15 s on two cores, once per weights)
into the cache folder; nothing is downloaded.

A static vector reads no word order or context, so it ranks less well than MiniLM itself
(``mig`` on it keeps the answer at 4x in 96.0% of 300 NQ ``val`` contexts against 97.3%), at a
cost of about a microsecond per sentence: the cheap first look at a context that decides what
a costlier model reads (the ``sentence`` compressor's shortlist).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.core.errors import ModelError, needs_extra

logger = logging.getLogger(__name__)

STATIC_NAME = "all-MiniLM-L6-v2-static"
"""The static model's name: its cache folder's and its vectors' namespace in a feature cache."""
PCA_DIMS = 256
"""Dimensions the distilled token vectors keep (Model2Vec's default)."""
DISTILL_FORMAT = 1
"""Bumped when the distillation changes, so models distilled before are made again."""
_DISTILL_LOCK = threading.Lock()


class StaticEmbedder:
    """A Model2Vec ``StaticModel`` with the ``encode`` of an
    :class:`~ragzip.compressors.mig.Embedder`: unit-norm float32 rows, one per text.

    Args:
        model: The static model.
        name: Its name (:data:`STATIC_NAME` for the distilled MiniLM).
    """

    feature_precision = "float32"
    """The precision of its vectors, whatever autocast was asked for."""

    def __init__(self, model: Any, name: str = STATIC_NAME) -> None:
        self.model = model
        self.name = name

    def encode(self, sentences: Sequence[str], **kwargs: Any) -> np.ndarray:
        """Unit-norm vectors ``(len(sentences), d)``; other keyword arguments are accepted and
        ignored (the vectors are always unit-norm numpy rows)."""
        del kwargs
        texts = list(sentences)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = np.asarray(
            self.model.encode(texts, use_multiprocessing=False), dtype=np.float32
        ).reshape(len(texts), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)  # a text of no known token stays all zero

    @property
    def dimensions(self) -> int:
        """Length of a vector."""
        return int(self.model.dim)


def static_folder(weights: Path) -> Path:
    """Where the model distilled from the MiniLM weights in ``weights`` is cached."""
    from ragzip.core.artefacts import sha256_file
    from ragzip.core.paths import paths

    digest = sha256_file(weights / "model.safetensors")[:16]
    return paths().cache / "static" / f"{STATIC_NAME}-{PCA_DIMS}-{digest}-v{DISTILL_FORMAT}"


def _distill(weights: Path, final: Path) -> None:
    """Distill the MiniLM in ``weights`` into ``final``: written beside it and renamed into
    place, so processes racing to distill never read half a model."""
    with needs_extra("models", "distilling MiniLM's static vectors needs model2vec"):
        from model2vec.distill import distill
    logger.info("distilling static token vectors from MiniLM into %s (one time)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}-", dir=final.parent) as tmp:
        # the progress bars of loading and of the vocabulary pass would land in the output of
        # whatever command first needs the vectors; the log line above says what happens
        with contextlib.redirect_stderr(io.StringIO()):
            model = distill(model_name=str(weights), pca_dims=PCA_DIMS, device="cpu")
        staged = Path(tmp) / "model"
        model.save_pretrained(str(staged))
        os.replace(staged, final)


@lru_cache(maxsize=2)
def load_static_embedder(weights: str | None = None) -> StaticEmbedder:
    """The static model of the MiniLM weights in ``weights`` (default: the shipped MiniLM),
    distilled into the cache on first use and loaded once per process.

    Raises:
        ModelError: The weights cannot be read, distilled or loaded.
        MissingDependencyError: model2vec is not installed.
    """
    from ragzip.weights import minilm_dir

    folder = Path(weights) if weights else minilm_dir()
    with needs_extra("models", "the static embedder needs model2vec"):
        from model2vec import StaticModel
    try:
        final = static_folder(folder)
        if not final.is_dir():
            with _DISTILL_LOCK:
                if not final.is_dir():
                    _distill(folder, final)
        model = StaticModel.from_pretrained(str(final))
    except (OSError, RuntimeError, ValueError) as exc:
        msg = f"cannot distill or load MiniLM's static vectors from {folder}: {exc}"
        raise ModelError(msg) from exc
    return StaticEmbedder(model)
