"""Sharing the vector budget: MIG over groups, water-filled shares, runs merged into vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragzip.encoders.embedding import normalize


def group_mig(query: np.ndarray, groups: np.ndarray, redundancy_weight: float) -> np.ndarray:
    """COMI's marginal information gain of each group: relevance minus redundancy.

    Args:
        query: Pooled question state ``(d,)``.
        groups: Pooled group states ``(n, d)``.
        redundancy_weight: λ.

    Returns:
        ``(n,)`` scores ``cos(q, g) - λ · max cos(g, h)`` over groups ``h`` more relevant
        than ``g`` (ties broken by position; the most relevant group has no redundancy).
    """
    if len(groups) == 0:
        return np.zeros(0, dtype=np.float32)
    q = normalize(query[None, :])[0]
    g = normalize(groups)
    relevance = g @ q
    sims = g @ g.T
    order = np.lexsort((np.arange(len(g)), -relevance))  # most relevant first
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g))
    ahead = rank[None, :] < rank[:, None]  # ahead[i, j]: j is more relevant than i
    redundancy = np.where(ahead, np.clip(sims, 0.0, None), 0.0).max(axis=1)
    return np.asarray(relevance - redundancy_weight * redundancy, dtype=np.float32)


def allocate(sizes: Sequence[int], mig: np.ndarray, budget: int, sharpness: float) -> list[int]:
    """Vectors per group: more for high-MIG groups, never more than a group's tokens.

    Shares are ``size · exp(sharpness · z)`` with ``z`` the standardised MIG, water-filled so
    no group gets more than its size, then rounded by largest remainder (ties to the higher
    MIG) to integers summing to ``min(budget, sum(sizes))``. Low-MIG groups may get 0.

    Args:
        sizes: Tokens per group.
        mig: MIG per group.
        budget: Vectors to hand out.
        sharpness: How strongly MIG moves the shares (0 = in proportion to size).

    Returns:
        Vectors per group.
    """
    n = len(sizes)
    cap = np.asarray(sizes, dtype=np.float64)
    total = int(min(max(budget, 0), int(cap.sum())))
    if n == 0 or total == 0:
        return [0] * n
    m = np.asarray(mig, dtype=np.float64)
    std = float(m.std())
    z = (m - m.mean()) / std if std > 1e-9 else np.zeros(n)
    weight = cap * np.exp(np.clip(sharpness * z, -30.0, 30.0))
    share = np.zeros(n)
    free = cap > 0
    left = float(total)
    while left > 1e-9 and free.any():  # water-filling: capped groups pass their surplus on
        part = np.where(free, weight, 0.0)
        part = part / part.sum() * left
        over = free & (share + part >= cap)
        if not over.any():
            share += part
            break
        left -= float((cap[over] - share[over]).sum())
        share[over] = cap[over]
        free &= ~over
    counts = np.minimum(np.floor(share + 1e-9), cap).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        remainder = np.where(counts < cap, share - counts, -np.inf)
        order = np.lexsort((-m, -remainder))
        for i in order[:rest]:
            counts[i] += 1
    return [int(c) for c in counts]


def run_bounds(n: int, m: int) -> list[tuple[int, int]]:
    """``m`` runs of consecutive positions covering ``0..n``, sizes differing by at most one."""
    if m <= 0:
        return []
    edges = [round(i * n / m) for i in range(m + 1)]
    return [(edges[i], edges[i + 1]) for i in range(m)]


def merge_runs(
    states: np.ndarray,
    centred: np.ndarray,
    query: np.ndarray,
    m: int,
    *,
    redundancy_weight: float,
    token_sharpness: float,
    keep_norm: bool,
) -> np.ndarray:
    """Merge a group's token states into ``m`` vectors by MIG-weighted averaging.

    Args:
        states: The group's token states ``(n, d)`` (input embeddings, merged as they are).
        centred: The same states centred (used only for the weights).
        query: Unit pooled question state ``(d,)`` (centred).
        m: Vectors to produce, ``1 <= m <= n``.
        redundancy_weight: λ of the token-level MIG.
        token_sharpness: Inverse temperature of the weights' softmax.
        keep_norm: Rescale each vector to the weighted mean norm of its tokens.

    Returns:
        ``(m, d)`` merged vectors in order.
    """
    out = np.empty((m, states.shape[1]), dtype=np.float32)
    unit = normalize(centred)
    relevance = unit @ query
    for k, (a, b) in enumerate(run_bounds(len(states), m)):
        if b - a == 1:
            out[k] = states[a]
            continue
        mean = normalize(unit[a:b].mean(axis=0)[None, :])[0]
        gain = relevance[a:b] - redundancy_weight * (unit[a:b] @ mean)
        w = np.exp(token_sharpness * (gain - gain.max()))
        w = w / w.sum()
        vec = w @ states[a:b]
        if keep_norm:
            target = float(w @ np.linalg.norm(states[a:b], axis=1))
            vec = vec * (target / max(float(np.linalg.norm(vec)), 1e-8))
        out[k] = vec
    return out
