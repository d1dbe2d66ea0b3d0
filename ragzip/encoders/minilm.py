"""all-MiniLM-L6-v2 as a sentence embedder on ONNX Runtime: what ``SentenceTransformer`` does
for this model (WordPiece, 256 tokens at most, mean pooling, unit length), with the encoder
exported from the shipped weights (:mod:`ragzip.encoders.onnx`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.core.cancellation import checkpoint
from ragzip.core.errors import ModelError
from ragzip.encoders.onnx import (
    FixedBackend,
    OnnxModel,
    OnnxPrecision,
    cached_graph,
    export_key,
    exported,
    onnx_precision,
    unmasked,
)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The name MiniLM's vectors go by in index manifests and feature caches, whatever runs it."""


class OnnxEmbedder:
    """MiniLM sentence vectors from an ONNX Runtime session; ``encode`` takes the arguments
    ragzip passes a ``SentenceTransformer``.

    Float32 graphs give the vectors torch gives (cosine > 0.99999), so they share its name and
    feature namespace; int8 ones (:attr:`precision`) get their own namespace.

    Args:
        model: The session over the encoder graph (last hidden states out).
        tokenizer: MiniLM's fast tokenizer.
        precision: ``"float32"`` or ``"int8"``: what the graph computes in.
        max_length: Tokens read per text (longer ones are cut, as sentence-transformers does).
    """

    name = MINILM_NAME
    device = "cpu"

    def __init__(
        self, model: OnnxModel, tokenizer: Any, *, precision: OnnxPrecision, max_length: int
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision
        self.feature_precision = precision  # the namespace of its vectors in a feature cache
        self.max_length = max_length

    def get_embedding_dimension(self) -> int:
        """384, the width of MiniLM's vectors."""
        return 384

    get_sentence_embedding_dimension = get_embedding_dimension  # sentence-transformers' old name

    def encode(
        self,
        sentences: Sequence[str] | str,
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        **_: Any,
    ) -> np.ndarray:
        """Vectors ``(len(sentences), 384)``, in input order (one row for a single string),
        mean-pooled over each text's tokens.

        Each text runs alone, unpadded (``batch_size`` is accepted and ignored): on the CPU this
        is faster than padded batches of sentences of varied length, and an int8 graph, which
        scales activations per call, then gives a text the same vector whatever it is embedded
        with (batched, it moved scores by up to 0.02).
        """
        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        out = np.zeros((len(texts), self.get_sentence_embedding_dimension()), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        for row, ids in enumerate(enc["input_ids"]):
            if row % 64 == 0:
                checkpoint()  # a cancelled request stops here
            tokens = np.asarray(ids, dtype=np.int64)[None, :]
            hidden = self.model.run(input_ids=tokens, token_type_ids=np.zeros_like(tokens))
            out[row] = hidden[0].mean(axis=0)
        if normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out[0] if single else out


@lru_cache(maxsize=4)
def load_onnx_embedder(backend: FixedBackend, folder: str) -> OnnxEmbedder:
    """MiniLM from the weights in ``folder`` on ONNX Runtime (``backend`` ``"onnx"`` or
    ``"onnx-int8"``), exported on first use (a few seconds, once per weights and precision) and
    cached per backend.

    Raises:
        ModelError: The weights cannot be read or exported.
    """
    import torch
    from transformers import AutoTokenizer

    from ragzip.core.artefacts import sha256_file

    precision = onnx_precision(backend)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        config = json.loads(
            (Path(folder) / "sentence_bert_config.json").read_text(encoding="utf-8")
        )
        max_length = int(config.get("max_seq_length", 256))
    except (OSError, ValueError) as exc:
        msg = f"cannot load MiniLM's tokenizer from {folder}: {exc}"
        raise ModelError(msg) from exc
    key = export_key(sha256_file(Path(folder) / "model.safetensors"))
    path = cached_graph("minilm", key, precision)
    if path is None:
        ids = torch.ones((1, 8), dtype=torch.long)
        path = exported(
            unmasked(load_bert(Path(folder)), "last_hidden_state"),
            {"input_ids": ids, "token_type_ids": torch.zeros_like(ids)},
            outputs=["last_hidden_state"],
            name="minilm",
            key=key,
            precision=precision,
        )
    return OnnxEmbedder(OnnxModel(path), tokenizer, precision=precision, max_length=max_length)


def load_bert(folder: Path) -> Any:
    """MiniLM's encoder (a ``transformers`` ``BertModel`` without pooler, float32, eval mode)
    from the weights in ``folder``.

    Raises:
        ModelError: The weights cannot be read or do not fit.
    """
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    try:
        encoder = BertModel(
            BertConfig.from_json_file(str(folder / "config.json")), add_pooling_layer=False
        )
        state = {
            k: v
            for k, v in load_file(str(folder / "model.safetensors")).items()
            if not k.startswith("pooler.") and not k.endswith("position_ids")
        }
        missing, unexpected = encoder.load_state_dict(state, strict=False)
    except (OSError, ValueError, RuntimeError) as exc:
        msg = f"cannot load MiniLM from {folder}: {exc}"
        raise ModelError(msg) from exc
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        msg = f"MiniLM weights in {folder} do not fit: missing {missing}, unexpected {unexpected}"
        raise ModelError(msg)
    return encoder.eval()
