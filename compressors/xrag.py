"""One soft token per passage: a projected sentence embedding stands in for the whole text.

After xRAG (Cheng et al., 2024, *xRAG: Extreme Context Compression for Retrieval-augmented
Generation with One Token*, NeurIPS 2024, arXiv:2405.13792). A passage's retrieval embedding
(all-MiniLM-L6-v2, 384-d, unit norm) is mapped by a small trained MLP, the *projector*, to one
vector in the generator's input-embedding space (576-d for the embedded SmolLM2-135M-Instruct,
640-d for Gemma 3 270M, any width for a generator a projector is trained for). In the prompt the
vector takes the place of one placeholder, so a passage of a hundred-odd tokens costs the
generator one position. Retriever and generator stay frozen; only the projector is trained
(``ragzip train xrag --generator ...``, :mod:`ragzip.training.xrag`: paraphrase pretraining,
then question answering with self-distillation from the same model reading the full text).
A projector belongs to the generator it was trained for (:class:`~ragzip.generators.target.
SoftTarget`) and is refused for any other.

Which passages get a vector: the first ``top_k`` non-empty passages in the order given, i.e.
retrieval order. The retriever's ranking (hybrid BM25 + dense in ragzip) is already a relevance
order, and ranking again by MiniLM similarity to the question would only repeat its dense half.
The budget caps the count: at most ``budget_tokens`` vectors, so a budget of 0 keeps none.

With ``sentences=n`` a kept passage is not embedded whole: its ``n`` sentences most similar to
the question (title prefixed, as the passage is) get one vector each, in passage order, so a
vector stands for the sentence that answers rather than for the passage's topic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.mig import Embedder, encode_unit_norm
from ragzip.compressors.units import sentence_spans, titled
from ragzip.core.artefacts import read_artefact_config, read_tensors, shipped_for, write_artefact
from ragzip.core.errors import CompressionError, ConfigError, ModelError
from ragzip.core.fields import Checked, Ge
from ragzip.core.tokenization import TokenCounter
from ragzip.generators.target import SoftTarget, load_target

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "xrag"
"""Folder of the shipped projector (``config.json``, ``model.safetensors``, ``training.json``)."""
FORMAT = "ragzip-xrag-projector"
FORMAT_VERSION = 1

EMBED_DIM = 384
"""Width of all-MiniLM-L6-v2 sentence embeddings."""


class Projector(nn.Module):
    """Two-layer MLP from a sentence embedding to one input embedding of the generator.

    The unit-norm input is scaled by ``sqrt(in_dim)`` so its entries have unit variance, as the
    default initialisation of :class:`torch.nn.Linear` expects.

    Args:
        in_dim: Sentence-embedding width.
        hidden: Width of the hidden layer.
        out_dim: Generator input-embedding width.
    """

    def __init__(self, in_dim: int = EMBED_DIM, hidden: int = 1536, out_dim: int = 576) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.hidden = hidden
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(n, in_dim)`` sentence embeddings to ``(n, out_dim)`` soft tokens."""
        out: torch.Tensor = self.net(x * math.sqrt(self.in_dim))
        return out


def init_projector(hidden: int = 1536, *, seed: int = 0, out_dim: int = 576) -> Projector:
    """A freshly initialised projector to ``out_dim`` (the generator's width); the same
    ``seed`` gives the same weights."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return Projector(hidden=hidden, out_dim=out_dim)
    finally:
        torch.random.set_rng_state(gen_state)


def save_projector(
    projector: Projector,
    folder: Path,
    *,
    target: SoftTarget,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``projector`` in half precision to ``folder`` with its ``config.json``, which
    names the generator it was trained for."""
    if projector.out_dim != target.hidden_size:
        msg = (
            f"the projector maps to {projector.out_dim}-d, {target.name} reads {target.hidden_size}"
        )
        raise ConfigError(msg)
    state = {k: v.to(torch.float16) for k, v in projector.state_dict().items()}
    config = {
        "embedder": "all-MiniLM-L6-v2",
        "generator": target.name,
        "target": target.to_dict(),
        "in_dim": projector.in_dim,
        "hidden": projector.hidden,
        "out_dim": projector.out_dim,
        "dtype": "float16",
        **(extra or {}),
    }
    write_artefact(folder, kind=FORMAT, version=FORMAT_VERSION, tensors=state, config=config)


def load_projector(folder: str | Path | None = None, target: SoftTarget | None = None) -> Projector:
    """The projector saved in ``folder`` (default: the one shipped for ``target``, the embedded
    SmolLM2 when ``None``), in float32, cached.

    Treat the returned module as read-only: it is shared between callers.

    Raises:
        ModelError: Missing files, another format, weights that do not fit, or a projector
            trained for another generator than ``target``.
    """
    if target is None:
        target = load_target(None)
    if folder is None:
        folder = shipped_for(WEIGHTS_DIR, target.name, target.identity, what="xrag projector")
    return _load_projector(str(Path(folder).resolve()), target)


@lru_cache(maxsize=4)
def _load_projector(folder: str, target: SoftTarget) -> Projector:
    path = Path(folder)
    config = read_artefact_config(path, kind=FORMAT, version=FORMAT_VERSION, what="xrag projector")
    target.check(config, what="xrag projector", folder=path)
    state = read_tensors(path)
    try:
        projector = Projector(int(config["in_dim"]), int(config["hidden"]), int(config["out_dim"]))
        projector.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        msg = f"cannot load the xrag projector from {path}: {exc}"
        raise ModelError(msg) from exc
    return projector.eval()


class XragCompressor(Compressor):
    """Replace each kept passage by one projected embedding (xRAG).

    Args:
        config: How many passages to keep, embedding batch size, device, weights folder.
        counter: Token counter of the generator's tokenizer (budgets count vectors as tokens).
        embedder: A sentence embedder; defaults to the packaged all-MiniLM-L6-v2
            (:func:`ragzip.weights.load_embedder`). The projector was trained on its embeddings.
        projector: A projector; defaults to the one in ``config.weights`` (or the one shipped
            for ``config.generator``), checked to be trained for that generator.
    """

    name: ClassVar[str] = "xrag"
    soft: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`XragCompressor`.

        Attributes:
            top_k: Passages turned into a vector, the first ones in retrieval order.
            sentences: 0 embeds each kept passage whole (one vector); ``n > 0`` gives it
                one vector for each of its ``n`` sentences most similar to the question.
            batch_size: Embedding batch size.
            device: Device of the default embedder and the projector (``None`` picks one).
            weights: Folder of a trained projector; ``None`` uses the one shipped for the
                generator.
            generator: The generator the vectors are for (``smollm2``, ``gemma3-270m``, a
                model folder or ``.gguf``; see :mod:`ragzip.generators.local`); ``None`` is
                the embedded SmolLM2.
        """

        top_k: Annotated[int, Ge(1)] = 1
        sentences: Annotated[int, Ge(0)] = 0
        batch_size: Annotated[int, Ge(1)] = 32
        device: str | None = None
        weights: str | None = None
        generator: str | None = None

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        embedder: Embedder | None = None,
        projector: Projector | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or XragCompressor.Config()
        target = load_target(self.config.generator)
        if projector is None:
            projector = load_projector(self.config.weights, target)
        if projector.out_dim != target.hidden_size:
            msg = (
                f"the projector maps to {projector.out_dim}-d vectors; {target.name} reads "
                f"{target.hidden_size}-d"
            )
            raise ConfigError(msg)
        if projector.in_dim != EMBED_DIM:
            msg = f"the projector reads {projector.in_dim}-d vectors, MiniLM makes {EMBED_DIM}-d"
            raise ConfigError(msg)
        self.projector = projector
        self.target = target
        if embedder is None:
            from ragzip.weights import load_embedder

            embedder = load_embedder(self.config.device)
        self.embedder = embedder

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        counts = [0] * len(request.passages)
        limit = max(request.budget_tokens, 0)
        kept = [i for i, p in enumerate(request.passages) if p.text.strip()]
        kept = kept[: min(self.config.top_k, limit)]
        if not kept:
            return CompressionOutput(
                embeddings=np.zeros((0, self.dim), dtype=np.float32), vectors_per_passage=counts
            )
        vectors, owners = self._embed(request, kept)
        vectors, owners = vectors[:limit], owners[:limit]
        t_embed = time.perf_counter()
        soft = self.project(vectors)
        t_project = time.perf_counter()
        for i in owners:
            counts[i] += 1
        return CompressionOutput(
            embeddings=soft,
            vectors_per_passage=counts,
            timings={"embed": t_embed - t0, "project": t_project - t_embed},
        )

    def _embed(
        self, request: CompressionRequest, kept: Sequence[int]
    ) -> tuple[np.ndarray, list[int]]:
        """Sentence embeddings of the kept passages, in order, and the passage of each row:
        the passages whole, or their ``sentences`` closest to the question."""
        passages = [request.passages[i] for i in kept]
        if not self.config.sentences:
            return self.encode([titled(p.title, p.text) for p in passages]), list(kept)
        texts: list[str] = []
        owners: list[int] = []
        for i, p in zip(kept, passages, strict=True):
            pieces = [p.text[a:b] for a, b in sentence_spans(p.text) if p.text[a:b].strip()]
            texts += [titled(p.title, t) for t in pieces or [p.text]]
            owners += [i] * max(len(pieces), 1)
        vectors = self.encode([request.query, *texts])
        query, vectors = vectors[0], vectors[1:]
        chosen: list[int] = []
        for i in kept:
            rows = [r for r, owner in enumerate(owners) if owner == i]
            best = sorted(rows, key=lambda r: -float(vectors[r] @ query))[: self.config.sentences]
            chosen += sorted(best)
        return vectors[chosen], [owners[r] for r in chosen]

    @property
    def dim(self) -> int:
        """Width of the vectors produced (the generator's input-embedding width)."""
        return self.projector.out_dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm MiniLM embeddings ``(n, 384)`` of ``texts``.

        Raises:
            CompressionError: The embedder failed or returned the wrong shape.
        """
        vectors = encode_unit_norm(self.embedder, texts, batch_size=self.config.batch_size)
        if vectors.shape != (len(texts), EMBED_DIM):
            msg = f"the embedder returned shape {vectors.shape} for {len(texts)} texts"
            raise CompressionError(msg)
        return vectors

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Soft tokens ``(n, dim)``, float32, for sentence embeddings ``(n, 384)``."""
        with torch.inference_mode():
            x = torch.as_tensor(vectors, dtype=torch.float32)
            param = next(self.projector.parameters())
            out = self.projector(x.to(param.device, param.dtype))
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)
