"""The Redis tier of the feature cache on a real redis-server: shared between caches, exact,
bounded by TTL, and harmless when Redis is down."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ragzip.cache.feature_cache import FeatureCache
from ragzip.cache.redis_tier import RedisTier
from ragzip.core.errors import ConfigError
from tests.conftest import RedisServer


def rows(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), 0.5, -1.25, float(ord(t[0]))] for t in texts], dtype=np.float32)


def test_a_vector_one_process_computed_is_found_by_another(redis_server: RedisServer) -> None:
    a = FeatureCache(remote=RedisTier(redis_server.url, namespace="t1"))
    b = FeatureCache(remote=RedisTier(redis_server.url, namespace="t1"))
    computed: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        computed.append(texts)
        return rows(texts)

    a.vectors("m", ["alpha", "beta"], compute)
    out, hits = b.vectors("m", ["beta", "gamma", "alpha"], compute)
    assert hits == 2 and computed == [["alpha", "beta"], ["gamma"]]
    np.testing.assert_array_equal(out, rows(["beta", "gamma", "alpha"]))  # exact float32
    assert b.stats().remote_hits == 2
    _, hits = b.vectors("m", ["alpha"], compute)
    assert hits == 1 and b.stats().remote_hits == 2  # now held in b's memory
    other = FeatureCache(remote=RedisTier(redis_server.url, namespace="t1"))
    _, hits = other.vectors("another model", ["alpha"], compute)
    assert hits == 0  # a model's entries are never another's
    elsewhere = FeatureCache(remote=RedisTier(redis_server.url, namespace="t2"))
    _, hits = elsewhere.vectors("m", ["alpha"], compute)
    assert hits == 0  # nor another deployment's


def test_entries_expire(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, namespace="ttl", ttl_s=1)
    tier.put_many([b"k" * 32], rows(["x"]))
    assert tier.get_many([b"k" * 32])[0] is not None
    time.sleep(2.1)
    assert tier.get_many([b"k" * 32]) == [None]


def test_redis_down_means_local_compute_counted_failures_and_a_pause(
    redis_server: RedisServer,
) -> None:
    tier = RedisTier(redis_server.url, namespace="down", timeout_s=0.2, retry_after_s=60)
    cache = FeatureCache(remote=tier)
    cache.vectors("m", ["alpha"], rows)
    redis_server.stop()
    t0 = time.perf_counter()
    out, hits = cache.vectors("m", ["beta", "alpha"], rows)
    np.testing.assert_array_equal(out, rows(["beta", "alpha"]))
    assert hits == 1 and tier.failures == 1  # one failed read; the write is skipped while down
    cache.vectors("m", ["gamma"], rows)
    assert tier.failures == 1  # left alone for retry_after_s: no further timeouts
    assert time.perf_counter() - t0 < 2.0


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        RedisTier("redis://127.0.0.1:1/0", ttl_s=0)
