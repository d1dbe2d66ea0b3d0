"""The content-addressed feature cache: exact keys, byte bound, LRU order, counters, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ragzip.cache.feature_cache import FeatureCache, FeatureTable
from ragzip.core.errors import ConfigError, IndexCorruptedError


def rows(texts: list[str]) -> np.ndarray:
    """A deterministic 4-float row per text (its length and first characters)."""
    return np.array(
        [[len(t), *(float(ord(c)) for c in (t + "   ")[:3])] for t in texts], dtype=np.float32
    )


def test_only_missing_rows_are_computed_and_order_is_kept() -> None:
    cache = FeatureCache()
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return rows(texts)

    out, hits = cache.vectors("m", ["a", "bb"], compute)
    assert hits == 0 and calls == [["a", "bb"]]
    out2, hits2 = cache.vectors("m", ["ccc", "bb", "a"], compute)
    assert hits2 == 2 and calls[-1] == ["ccc"]
    np.testing.assert_array_equal(out2, rows(["ccc", "bb", "a"]))
    np.testing.assert_array_equal(out, rows(["a", "bb"]))
    _, hits3 = cache.vectors("other model", ["a"], compute)
    assert hits3 == 0 and calls[-1] == ["a"]  # another model never shares an entry
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 4, 4)


def test_the_byte_bound_evicts_the_least_recently_used() -> None:
    row_bytes = rows(["x"]).nbytes
    cache = FeatureCache(max_bytes=2 * row_bytes)
    cache.vectors("m", ["a", "b"], rows)
    cache.vectors("m", ["a"], rows)  # a is now the most recent
    cache.vectors("m", ["c"], rows)  # evicts b
    _, hits = cache.vectors("m", ["a", "b"], rows)
    assert hits == 1
    stats = cache.stats()
    assert stats.bytes <= 2 * row_bytes and stats.evictions >= 1


def test_cached_rows_cannot_be_changed_through_a_result() -> None:
    cache = FeatureCache()
    out, _ = cache.vectors("m", ["a"], rows)
    out[0, 0] = -1.0  # the caller's copy
    again, hits = cache.vectors("m", ["a"], rows)
    assert hits == 1 and again[0, 0] == 1.0


def test_zero_bytes_caches_nothing_and_bad_sizes_are_refused() -> None:
    cache = FeatureCache(max_bytes=0)
    cache.vectors("m", ["a"], rows)
    _, hits = cache.vectors("m", ["a"], rows)
    assert hits == 0 and cache.stats().entries == 0
    with pytest.raises(ConfigError):
        FeatureCache(max_bytes=-1)


def test_a_compute_of_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        FeatureCache().vectors("m", ["a", "b"], lambda texts: rows(texts[:1]))


def test_threads_share_one_cache_consistently() -> None:
    cache = FeatureCache()
    texts = [f"text {i}" for i in range(50)]

    def job(i: int) -> np.ndarray:
        out, _ = cache.vectors("m", texts[i % 7 :: 3], rows)
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(40)))
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, rows(texts[i % 7 :: 3]))
    stats = cache.stats()
    assert stats.entries == len(set().union(*(texts[i % 7 :: 3] for i in range(40))))


def test_a_text_repeated_in_one_call_is_computed_once() -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return rows(texts) + np.arange(len(texts), dtype=np.float32)[:, None]  # order shows

    out, _ = FeatureCache().vectors("m", ["a", "b", "a"], compute)
    assert calls == [["a", "b"]]
    np.testing.assert_array_equal(out[0], out[2])
    out, _ = FeatureCache(max_bytes=0).vectors("m", ["a", "a"], compute)
    np.testing.assert_array_equal(out[0], out[1])


def test_an_attached_table_answers_memory_misses_and_only_its_own_model() -> None:
    table = FeatureTable.from_texts("m", ["a", "bb", "a"], rows(["a", "bb", "a"]))
    assert len(table) == 2 and table.vectors.dtype == np.float16
    cache = FeatureCache()
    cache.attach(table)
    cache.attach(table)  # attaching twice is one table
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return rows(texts)

    out, hits = cache.vectors("m", ["bb", "ccc", "a"], compute)
    assert hits == 2 and calls == [["ccc"]]
    np.testing.assert_array_equal(out, rows(["bb", "ccc", "a"]))  # float16 holds these exactly
    assert out.dtype == np.float32
    _, hits = cache.vectors("other", ["a"], compute)
    assert hits == 0 and calls[-1] == ["a"]
    stats = cache.stats()
    assert stats.table_hits == 2 and stats.entries == 2  # table rows are not copied into memory


def test_a_table_survives_saving_and_refuses_bad_arrays(tmp_path: Path) -> None:
    table = FeatureTable.from_texts("m", ["a", "bb"], rows(["a", "bb"]))
    table.save(tmp_path)
    back = FeatureTable.load(tmp_path, "m")
    np.testing.assert_array_equal(back.keys, table.keys)
    np.testing.assert_array_equal(back.vectors, table.vectors)
    assert back.get(FeatureCache.key("m", "bb")) is not None
    assert back.get(FeatureCache.key("m", "zz")) is None
    with pytest.raises(ConfigError, match="uint8"):
        FeatureTable("m", np.zeros((2, 16), np.uint8), np.zeros((2, 4), np.float16))
    with pytest.raises(ConfigError, match="do not match"):
        FeatureTable("m", np.zeros((2, 32), np.uint8), np.zeros((3, 4), np.float16))
    (tmp_path / "vectors.npy").write_bytes(b"not an array")
    with pytest.raises(IndexCorruptedError, match="precomputed features"):
        FeatureTable.load(tmp_path, "m")
