"""One folder format for every trained artefact: written, read back, checked and refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragzip.core.artefacts import (
    check_base,
    read_artefact_config,
    read_tensors,
    sha256_file,
    write_artefact,
)
from ragzip.core.errors import ModelError

WEIGHTS = Path(__file__).resolve().parents[2] / "compressors" / "weights"
SHIPPED = {
    "token": "ragzip-token-classifier",
    "sentence": "ragzip-sentence-classifier",
    "xrag": "ragzip-xrag-projector",
    "merge": "ragzip-merge-adapter",
}


def test_write_then_read(tmp_path: Path) -> None:
    tensors = {"w": torch.arange(6, dtype=torch.float16).reshape(2, 3)}
    write_artefact(tmp_path, kind="demo", version=2, tensors=tensors, config={"dim": 3})
    config = read_artefact_config(tmp_path, kind="demo", version=2, what="demo")
    assert config == {"format": "demo", "format_version": 2, "dim": 3}
    assert torch.equal(read_tensors(tmp_path)["w"], tensors["w"])
    with pytest.raises(ModelError, match="not a other config"):
        read_artefact_config(tmp_path, kind="other", version=2, what="other")
    with pytest.raises(ModelError, match="format version 2, expected 3"):
        read_artefact_config(tmp_path, kind="demo", version=3, what="demo")


def test_missing_and_unreadable_folders_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained demo"):
        read_artefact_config(tmp_path, kind="demo", version=1, what="demo")
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot read"):
        read_artefact_config(tmp_path, kind="demo", version=1, what="demo")
    with pytest.raises(ModelError, match="cannot read"):
        read_tensors(tmp_path)


@pytest.mark.parametrize(
    "legacy",
    [
        {"kind": "demo", "format": 1},  # the token classifier's former keys
        {"format": "demo", "version": 1},  # the merge adapter's former keys
    ],
)
def test_folders_written_before_the_format_was_unified_still_load(
    tmp_path: Path, legacy: dict[str, object]
) -> None:
    write_artefact(tmp_path, kind="demo", version=1, tensors={}, config={})
    (tmp_path / "config.json").write_text(json.dumps({**legacy, "dim": 3}))
    assert read_artefact_config(tmp_path, kind="demo", version=1, what="demo")["dim"] == 3


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_artefact_uses_the_one_format(name: str) -> None:
    config = json.loads((WEIGHTS / name / "config.json").read_text())
    assert config["format"] == SHIPPED[name]
    assert config["format_version"] == 1
    read_artefact_config(WEIGHTS / name, kind=SHIPPED[name], version=1, what=name)


def test_base_weights_are_checked_by_digest(tmp_path: Path) -> None:
    base = tmp_path / "base.bin"
    base.write_bytes(b"base weights")
    digest = sha256_file(base)
    assert digest == sha256_file(base, cache=False)
    check_base({"base_sha256": digest}, base, base_name="base", folder=tmp_path)
    check_base({}, base, base_name="base", folder=tmp_path)  # nothing recorded: nothing checked
    with pytest.raises(ModelError, match="another base file"):
        check_base({"base_sha256": "0" * 64}, base, base_name="base", folder=tmp_path)
