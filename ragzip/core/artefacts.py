"""Trained weights on disk: one folder format for every artefact ragzip trains and ships.

A folder holds ``config.json`` (``format`` names the kind of artefact, ``format_version`` its
layout, the rest is the artefact's own settings) and ``model.safetensors`` (the trained tensors).
Artefacts trained on top of a base model record the base weights' SHA-256, so one trained on
other base weights is refused instead of silently giving wrong scores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import ModelError
from ragzip.core.jsonl import json_object_or_none, read_json_object

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def sha256_file(path: str | Path, *, cache: bool = True) -> str:
    """SHA-256 of a file's bytes, read in blocks.

    With ``cache`` the digest is remembered while the file's size and mtime stay (for base
    model weights read on every load); integrity checks pass ``cache=False``.
    """
    path = Path(path).resolve()
    if not cache:
        return _digest(str(path))
    stat = path.stat()
    return _cached_digest(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    return _digest(path)


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_artefact(
    folder: str | Path,
    *,
    kind: str,
    version: int,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
) -> Path:
    """Write ``tensors`` (as given: cast them first) and ``config`` as an artefact of ``kind``.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    state = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(state, str(weights), metadata={"format": kind})
    weights.chmod(0o644)  # safetensors writes owner-only files; artefacts ship
    doc = {"format": kind, "format_version": version, **config}
    (folder / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return folder


def read_artefact_config(
    folder: str | Path, *, kind: str, version: int, what: str
) -> dict[str, Any]:
    """The checked ``config.json`` of an artefact of ``kind`` at layout ``version``.

    ``what`` names the artefact in errors (``"sentence classifier"``).

    Folders written before the format was unified are read too (``kind`` under ``"kind"``,
    the version under ``"version"`` or as an integer ``"format"``).

    Raises:
        ModelError: Missing files, unreadable JSON, another kind or another version.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        msg = f"no trained {what} in {folder}: expected {CONFIG_FILE} and {WEIGHTS_FILE}"
        raise ModelError(msg)
    config = read_json_object(path, f"the {what} config", ModelError)
    found_kind = config.get("format") if isinstance(config.get("format"), str) else None
    found_kind = found_kind or config.get("kind")
    if found_kind != kind:
        msg = f"{path} is not a {kind} config"
        raise ModelError(msg)
    found_version = config.get("format_version", config.get("version"))
    if found_version is None and isinstance(config.get("format"), int):
        found_version = config["format"]
    if found_version != version:
        msg = f"{path} has format version {found_version}, expected {version}"
        raise ModelError(msg)
    return config


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an artefact folder.

    Raises:
        ModelError: The weights file cannot be read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    try:
        return dict(load_file(str(path)))
    except (OSError, ValueError, SafetensorError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ModelError(msg) from exc


def check_base(
    config: Mapping[str, Any], base_weights: str | Path, *, base_name: str, folder: str | Path
) -> None:
    """Refuse an artefact trained on other base weights than the installed ``base_weights``.

    Raises:
        ModelError: ``config["base_sha256"]`` differs from the installed file's.
    """
    expected = config.get("base_sha256")
    if not expected:
        return
    installed = sha256_file(base_weights)
    if installed != expected:
        msg = (
            f"the artefact in {folder} was trained on another {base_name} file "
            f"(sha256 {str(expected)[:12]}…) than the installed one ({installed[:12]}…); "
            "reinstall the base model's package or retrain"
        )
        raise ModelError(msg)


def shipped_for(base: Path, target_name: str, identity: str, *, what: str) -> Path:
    """The shipped artefact folder for a generator: ``base`` (the embedded SmolLM2's) or
    ``base-<generator name>`` beside it, whichever records that generator's ``identity``.

    Raises:
        ModelError: None ships for it (the message says how to train one).
    """
    for folder in (base, base.with_name(f"{base.name}-{Path(target_name).name}")):
        config = json_object_or_none(folder / CONFIG_FILE)
        found = config.get("target") if config is not None else None
        if isinstance(found, dict) and found.get("identity") == identity:
            return folder
    kind = base.name
    msg = (
        f"no {what} ships for {target_name}: train one with `ragzip train {kind} --generator "
        f"... --out DIR` and use {kind}:{'weights' if kind == 'xrag' else 'adapter'}=DIR"
    )
    raise ModelError(msg)
