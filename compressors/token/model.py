"""The token classifier: MiniLM with a keep/drop head, its trained artefact, int8 quantisation and
the overlapping windows long passages are read in."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from ragzip.compressors.units import sentence_spans, split_words
from ragzip.core.artefacts import WEIGHTS_FILE, check_base, read_artefact_config, read_tensors
from ragzip.core.errors import ConfigError, MissingDependencyError, ModelError
from ragzip.core.types import Span
from ragzip.encoders.onnx import (
    AUTO_ONNX_CLASSIFIER,
    Backend,
    OnnxModel,
    auto_int8_layers,
    classifier_graph,
    resolve_backend,
    unmasked,
)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "token"
"""The shipped artefact: ``config.json`` and ``model.safetensors``."""

Quantize = Literal["none", "int8"]


# -- the encoder ----------------------------------------------------------------------------------


def _require_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        msg = f"the token compressor needs {exc.name!r}: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name=exc.name) from exc
    return torch


ARTEFACT_KIND = "ragzip-token-classifier"
ARTEFACT_VERSION = 1


def read_token_artefact(folder: Path) -> dict[str, Any]:
    """The checked ``config.json`` of a trained token classifier folder.

    Raises:
        ModelError: Missing or malformed files.
    """
    return read_artefact_config(
        folder, kind=ARTEFACT_KIND, version=ARTEFACT_VERSION, what="token classifier"
    )


def load_base_classifier(num_labels: int = 2) -> tuple[Any, Any]:
    """``BertForTokenClassification`` over the all-MiniLM-L6-v2 weights, and its fast tokenizer.

    The head is freshly initialised (seed it before calling for reproducible heads).
    """
    _require_torch()
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from ragzip.weights import minilm_dir

    folder = minilm_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        config = BertConfig.from_pretrained(
            str(folder), num_labels=num_labels, local_files_only=True
        )
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError) as exc:
        msg = f"cannot load MiniLM from {folder}: {exc}"
        raise ModelError(msg) from exc
    if not getattr(tokenizer, "is_fast", False):
        msg = "the MiniLM tokenizer must be a fast tokenizer (offsets are needed)"
        raise ModelError(msg)
    model = BertForTokenClassification(config)
    base = {
        f"bert.{k}": v
        for k, v in state.items()
        if not k.startswith("pooler.") and not k.endswith("position_ids")
    }
    missing, unexpected = model.load_state_dict(base, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.") and "position_ids" not in k]
    if missing or unexpected:
        msg = f"MiniLM weights do not fit BertForTokenClassification: {missing or unexpected}"
        raise ModelError(msg)
    model.eval()
    return model, tokenizer


def apply_artefact(model: Any, folder: Path) -> dict[str, Any]:
    """Load a trained artefact's tensors (upper layers + head) into ``model``.

    Raises:
        ModelError: Files missing, or tensors that do not belong to the model.
    """
    cfg = read_token_artefact(folder)
    from ragzip.weights import minilm_dir

    check_base(cfg, minilm_dir() / WEIGHTS_FILE, base_name="all-MiniLM-L6-v2", folder=folder)
    state = read_tensors(folder)
    own = model.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        msg = f"{folder}/model.safetensors has tensors the model lacks or shapes differ: {bad[:5]}"
        raise ModelError(msg)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.eval()
    return cfg


@lru_cache(maxsize=8)
def load_token_classifier(
    folder: str | None = None,
    quantize: Quantize = "none",
    device: str | None = None,
    backend: Backend = "auto",
) -> tuple[Any, Any]:
    """The trained token classifier and its tokenizer (cached; treat as read-only).

    Args:
        folder: Artefact folder; ``None`` for the shipped weights.
        quantize: ``"int8"`` applies torch's dynamic int8 quantisation to the linear layers
            (CPU, torch backend).
        device: Torch device; ``None`` picks the best.
        backend: Where it resolves to ONNX Runtime
            (:func:`~ragzip.encoders.onnx.resolve_backend`), the classifier runs as a graph
            exported from the weights on first use (:class:`OnnxTokenClassifier`).
    """
    _require_torch()
    from ragzip.weights import resolve_device

    model, tokenizer = load_base_classifier()
    path = Path(folder) if folder else WEIGHTS_DIR
    cfg = apply_artefact(model, path)
    dev = resolve_device(device)
    fixed = resolve_backend(
        backend if quantize == "none" else "torch", dev, onnx=AUTO_ONNX_CLASSIFIER
    )
    if fixed != "torch":
        from ragzip.core.artefacts import sha256_file
        from ragzip.weights import minilm_dir

        graph = classifier_graph(  # exported once per pair of weights, then reused
            unmasked(model, "logits"),
            name="token-classifier",
            digests=(sha256_file(minilm_dir() / WEIGHTS_FILE), sha256_file(path / WEIGHTS_FILE)),
            backend=fixed,
            inputs=["input_ids", "token_type_ids"],
            int8_layers=auto_int8_layers(backend, fixed, _frozen_layers(cfg)),
        )
        return OnnxTokenClassifier(graph), tokenizer
    if quantize == "int8":
        if dev != "cpu":
            msg = "int8 dynamic quantisation runs on the CPU only"
            raise ConfigError(msg)
        model = _quantize_int8(model)
    return model.to(dev).eval(), tokenizer


def _frozen_layers(cfg: dict[str, Any]) -> int:
    """The MiniLM layers an artefact left as they were: those below its first trained one."""
    try:
        return min(int(i) for i in cfg["trained_layers"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"the token classifier's config.json lacks its trained_layers: {exc!r}"
        raise ModelError(msg) from exc


class OnnxTokenClassifier:
    """The token classifier as an ONNX graph, called like the torch model:
    ``model(input_ids=, attention_mask=, token_type_ids=).logits`` (torch tensors in and out)."""

    def __init__(self, graph: OnnxModel) -> None:
        self.graph = graph

    def __call__(self, **inputs: Any) -> Any:
        """Each row alone, its padding cut off (faster on the CPU than the padded batch, and an
        int8 graph then reads a window the same whatever it is batched with); logits of padding
        positions are 0."""
        import torch

        arrays = {k: v.cpu().numpy() for k, v in inputs.items()}
        mask = arrays["attention_mask"]
        rows: list[np.ndarray] = []
        for r in range(mask.shape[0]):
            n = int(mask[r].sum())
            rows.append(self.graph.run(**{k: a[r : r + 1, :n] for k, a in arrays.items()})[0])
        logits = np.zeros((mask.shape[0], mask.shape[1], rows[0].shape[-1]), dtype=np.float32)
        for r, row in enumerate(rows):
            logits[r, : len(row)] = row
        return SimpleNamespace(logits=torch.from_numpy(logits))


def _quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of every linear layer, weights per output channel.

    Per-channel scales keep the keep-probabilities much closer to float32 than one scale per
    tensor (correlation about 0.97 against 0.93 on NQ passages).
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


@dataclass(frozen=True)
class Window:
    """One encoder input: question plus a slice of one passage's tokens.

    Attributes:
        passage: Passage index.
        start: First passage token (into the passage's token list).
        end: One past the last passage token.
    """

    passage: int
    start: int
    end: int


def cut_windows(
    text: str, offsets: Sequence[Span], capacity: int, passage: int = 0
) -> list[Window]:
    """Cut a passage's tokens into windows of at most ``capacity`` tokens at sentence ends.

    A sentence longer than ``capacity`` is cut at a word start (or, in a single over-long word,
    anywhere).
    """
    n = len(offsets)
    if n <= capacity:
        return [Window(passage, 0, n)] if n else []
    starts = [s for s, _ in offsets]
    sent_cuts = {bisect.bisect_left(starts, s) for s, _ in sentence_spans(text)}
    word_cuts = {bisect.bisect_left(starts, s) for s, _ in split_words(text)}
    windows: list[Window] = []
    begin = 0
    while begin < n:
        limit = begin + capacity
        if limit >= n:
            windows.append(Window(passage, begin, n))
            break
        cut = max((c for c in sent_cuts if begin < c <= limit), default=0)
        if not cut:
            cut = max((c for c in word_cuts if begin < c <= limit), default=0) or limit
        windows.append(Window(passage, begin, cut))
        begin = cut
    return windows
