"""The shipped sentence classifier's weights and the errors loading a folder raises
(ragzip.compressors.sentence.model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragzip.compressors.sentence.model import (
    WEIGHTS_DIR,
    read_config,
)
from ragzip.compressors.sentence.scorer import load_scorer
from ragzip.core.errors import ModelError


def test_shipped_weights_are_small_and_complete() -> None:
    config = read_config(WEIGHTS_DIR)
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert size <= 25 * 1024 * 1024
    assert 0.0 < config["threshold"] < 1.0
    record = json.loads((WEIGHTS_DIR / "training.json").read_text())
    val = record["validation"]["at_threshold"]
    assert val["auc"] > 0.8 and val["questions"] > 200


# ---------------------------------------------------------------------------- loading errors


def test_missing_weights_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained sentence classifier"):
        load_scorer(str(tmp_path))


def test_weights_for_another_base_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    config["base_sha256"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="another all-MiniLM-L6-v2"):
        load_scorer(str(folder))


def test_malformed_config_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["limits"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="malformed"):
        read_config(folder)


def test_foreign_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a"):
        read_config(folder)
