"""The generator soft vectors are made for: its identity, widths and input-embedding table.

Soft compressors (``xrag``, ``merge``) write vectors into one generator's input-embedding space,
so what they produce, and the artefacts they are trained into, belong to that generator.
:func:`load_target` reads only what that takes from a local model (see
:mod:`ragzip.generators.local`): the input-embedding table (from a GGUF file or the safetensors
of a Hugging Face folder, without building the model) and the sizes of its config.
:class:`SoftTarget` names the generator by a fingerprint of that table, so an artefact trained
for one model is refused, by :meth:`SoftTarget.check`, for any other (another size, another
quantization, another fine-tune).

Gemma models scale token embeddings by ``sqrt(hidden_size)`` before the first layer; the table
returned here is the scaled one, i.e. exactly the vectors the model reads (and vLLM's
``prompt_embeds`` take).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.core.errors import ModelError
from ragzip.generators.local import LocalModel, resolve_generator
from ragzip.weights import cache_dir, converted_is_valid

_EMBED_KEYS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
_SCALED_FAMILIES = ("gemma",)


@dataclass(frozen=True)
class SoftTarget:
    """Which generator soft vectors are for.

    Attributes:
        name: The generator's name (``smollm2-135m-instruct``, ``gemma-3-270m``, ...).
        identity: Fingerprint of its architecture, sizes and input-embedding table.
        hidden_size: Width of its input embeddings.
        vocab_size: Rows of its input-embedding table.
    """

    name: str
    identity: str
    hidden_size: int
    vocab_size: int

    def to_dict(self) -> dict[str, Any]:
        """The fields, for an artefact's ``config.json``."""
        return asdict(self)

    def check(self, config: Mapping[str, Any], *, what: str, folder: str | Path) -> None:
        """Refuse an artefact made for another generator.

        Raises:
            ModelError: ``config["target"]`` names another generator (or none).
        """
        found = config.get("target")
        if not isinstance(found, Mapping) or found.get("identity") != self.identity:
            other = found.get("name", "?") if isinstance(found, Mapping) else "an unknown model"
            msg = (
                f"the {what} in {folder} was trained for {other}, not for {self.name} "
                f"(identity {self.identity}); train one for it with `ragzip train` "
                f"(--generator) and pass its folder"
            )
            raise ModelError(msg)


@dataclass(frozen=True)
class EmbeddingTable:
    """A generator's input-embedding table (scaled as the model reads it) and its identity."""

    target: SoftTarget
    weight: np.ndarray


def _fingerprint(weight: np.ndarray) -> str:
    h = hashlib.sha256(f"{weight.shape[0]}|{weight.shape[1]}|".encode())
    h.update(np.ascontiguousarray(weight, dtype=np.float16).tobytes())
    return h.hexdigest()[:16]


def _scale(arch: str, hidden: int) -> float:
    return math.sqrt(hidden) if arch.startswith(_SCALED_FAMILIES) else 1.0


def _from_gguf(path: Path) -> tuple[str, np.ndarray]:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(str(path))
        arch = str(reader.fields["general.architecture"].contents())
        tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
        weight = dequantize(tensor.data, tensor.tensor_type)
    except (OSError, KeyError, StopIteration, ValueError) as exc:
        msg = f"cannot read the input-embedding table of {path}: {exc}"
        raise ModelError(msg) from exc
    return arch, np.asarray(weight, dtype=np.float32).reshape(-1, weight.shape[-1])


def _from_folder(folder: Path) -> tuple[str, np.ndarray]:
    from safetensors import safe_open

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        arch = str(config.get("model_type", ""))
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as f:
                key = next((k for k in f.keys() if k.endswith(_EMBED_KEYS)), None)  # noqa: SIM118
                if key is not None:
                    return arch, f.get_tensor(key).float().numpy()
    except (OSError, ValueError) as exc:
        msg = f"cannot read the input-embedding table in {folder}: {exc}"
        raise ModelError(msg) from exc
    msg = f"no input-embedding table ({' / '.join(_EMBED_KEYS)}) in the safetensors of {folder}"
    raise ModelError(msg)


def table_target(name: str, weight: np.ndarray) -> SoftTarget:
    """The :class:`SoftTarget` of a model whose (scaled) input-embedding table is ``weight``."""
    return SoftTarget(
        name=name,
        identity=_fingerprint(weight),
        hidden_size=int(weight.shape[1]),
        vocab_size=int(weight.shape[0]),
    )


@lru_cache(maxsize=4)
def _load(local: LocalModel, stamp: tuple[int, int]) -> EmbeddingTable:
    folder = local.folder
    if local.gguf is not None:
        converted = cache_dir() / local.name  # the same values, and quicker to read
        folder = converted if converted_is_valid(converted, local.gguf) else None
    if folder is not None:
        arch, weight = _from_folder(folder)
    else:
        assert local.gguf is not None
        arch, weight = _from_gguf(local.gguf)
    weight = np.ascontiguousarray(weight * _scale(arch, weight.shape[1]), dtype=np.float32)
    target = table_target(local.name, weight)
    weight.setflags(write=False)
    return EmbeddingTable(target, weight)


def load_table(spec: str | Path | None = None) -> EmbeddingTable:
    """The input-embedding table of the generator a spec names (cached; read-only).

    Raises:
        ConfigError, MissingDependencyError: See :func:`~ragzip.generators.local.resolve_generator`.
        ModelError: No table can be read.
    """
    local = resolve_generator(spec)
    source = local.gguf if local.gguf is not None else local.folder
    assert source is not None
    stat = source.stat()
    return _load(local, (stat.st_size, stat.st_mtime_ns))


def load_target(spec: str | Path | None = None) -> SoftTarget:
    """The :class:`SoftTarget` of the generator a spec names."""
    return load_table(spec).target
