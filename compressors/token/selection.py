"""Budget-exact word selection: the most probable words whose joined text fits the token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ragzip.compressor import join_spans
from ragzip.compressors.token.words import is_separator
from ragzip.core.errors import ConfigError
from ragzip.core.framing import Framing, framing_limit
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span

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
    framing: Framing | None = None,
    sent_limit: int | None = None,
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
        framing: The layout's cost per kept passage (``request.framing``): a passage pays its
            opening once it keeps a word, and what the layout sends is counted exactly at the
            end, against ``sent_limit`` (``request.sent_limit``; default ``budget_tokens``
            plus the whole layout).

    Returns:
        The kept word spans of each passage, in text order.
    """
    n_pass = len(texts)
    sizes = [len(w) for w in words]
    total_words = sum(sizes)
    limit = framing_limit(budget_tokens, framing, sent_limit)
    if total_words == 0 or limit <= 0:
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

    def fits(total: int, m: Sequence[int] | np.ndarray, extra: int = -1) -> bool:
        if framing is None:
            return total <= budget_tokens
        touched = [i for i in range(n_pass) if m[i] or i == extra]
        return framing.estimate(total, touched) <= limit

    def exact(k: int) -> tuple[int, np.ndarray]:
        m = np.bincount(owner[order[:k]], minlength=n_pass)
        need = [(i, int(m[i])) for i in range(n_pass) if (i, int(m[i])) not in data.memo]
        if need:
            counts = counter.count_batch([data.joined(i, members(i, mi)) for i, mi in need])
            data.memo.update(zip(need, counts, strict=True))
        return sum(data.memo[(i, int(m[i]))] for i in range(n_pass)), m

    def fits_prefix(k: int) -> bool:
        """Whether the ``k`` best words fit; near the limit, an estimate that says no is checked
        on what the layout would really send (its per-passage openings are estimates)."""
        total, m = exact(k)
        if fits(total, m):
            return True
        if framing is None:
            return False
        touched = [i for i in range(n_pass) if m[i]]
        if framing.estimate(total, touched) > limit + len(touched):
            return False
        kept_texts = [data.joined(i, members(i, int(m[i]))) if m[i] else "" for i in range(n_pass)]
        return framing.sent(kept_texts) <= limit

    costs = np.concatenate([word_costs(t, w, counter) for t, w in zip(texts, words, strict=True)])
    cum = np.cumsum(costs[order])
    guess = int(np.searchsorted(cum, budget_tokens, side="right"))
    lo, hi = 0, total_words + 1  # invariant: exact(lo) fits, exact(hi) does not (hi may be n+1)
    step = max(1, guess // 16)
    if fits_prefix(guess):
        lo = guess
        while lo < total_words:
            probe = min(total_words, lo + step)
            if fits_prefix(probe):
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
            if fits_prefix(probe):
                lo = probe
                break
            hi = probe
            step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits_prefix(mid):
            lo = mid
        else:
            hi = mid
    total, m = exact(lo)
    kept = [members(i, int(m[i])) for i in range(n_pass)]
    tokens = [data.memo[(i, int(m[i]))] for i in range(n_pass)]

    # fill the slack with the next words in rank order that still fit, each checked exactly
    tries = 0
    for idx in order[lo:]:
        sizes_kept = [len(k) for k in kept]
        if tries >= max_refill or not fits(total + 1, sizes_kept):
            break
        i, w = int(owner[idx]), int(local[idx])
        if not fits(total + int(costs[idx]), sizes_kept, i):
            continue
        trial_members = sorted([*kept[i], w])
        if drop_separators and _after_separator(texts[i], words[i], trial_members, w):
            continue
        tries += 1
        trial = counter.count(data.joined(i, trial_members))
        if fits(total - tokens[i] + trial, sizes_kept, i):
            total += trial - tokens[i]
            tokens[i] = trial
            kept[i] = trial_members
    if framing is not None:  # the estimate of the layout's cost, checked on what it sends
        k = lo
        while framing.sent([data.joined(i, kept[i]) for i in range(n_pass)]) > limit:
            k = max(0, k - 1)
            m = exact(k)[1]
            kept = [members(i, int(m[i])) for i in range(n_pass)]
    return [[words[i][w] for w in kept[i]] for i in range(n_pass)]


def _after_separator(text: str, words: Sequence[Span], members: Sequence[int], w: int) -> bool:
    j = members.index(w)
    if not j:
        return False
    prev = words[members[j - 1]]
    cur = words[w]
    return is_separator(text[cur[0] : cur[1]]) and is_separator(text[prev[0] : prev[1]])
