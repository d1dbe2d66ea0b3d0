"""The SmolLM2 GGUF → safetensors cache in ragzip.weights."""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from pathlib import Path

import pytest

from ragzip import weights as models
from ragzip.core.errors import ModelError
from ragzip.weights import (
    SMOLLM2_NAME,
    ensure_smollm2_cache,
    smollm2_cache_is_valid,
    smollm2_cache_path,
    smollm2_gguf,
)

REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def _fake_conversion(
    folder: Path, gguf: Path, *, size: int | None = None, converter: str | None = None
) -> Path:
    """A folder with the required files and a manifest describing ``gguf`` (or a wrong size or
    another transformers version)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED:
        (folder / name).write_text("{}", encoding="utf-8")
    stat = gguf.stat()
    manifest = {
        "format": 1,
        "source": gguf.name,
        "source_size": stat.st_size if size is None else size,
        "source_mtime_ns": stat.st_mtime_ns,
        "transformers": importlib.metadata.version("transformers")
        if converter is None
        else converter,
    }
    (folder / "ragzip-manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_cache_path_follows_ragzip_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))
    assert smollm2_cache_path() == tmp_path / SMOLLM2_NAME


def test_manifest_decides_validity(tmp_path) -> None:
    gguf = smollm2_gguf()
    good = _fake_conversion(tmp_path / "good", gguf)
    assert smollm2_cache_is_valid(good, gguf)
    stale = _fake_conversion(tmp_path / "stale", gguf, size=1)  # the source changed since
    assert not smollm2_cache_is_valid(stale, gguf)
    partial = _fake_conversion(tmp_path / "partial", gguf)
    (partial / "model.safetensors").unlink()
    assert not smollm2_cache_is_valid(partial, gguf)
    broken = _fake_conversion(tmp_path / "broken", gguf)
    (broken / "ragzip-manifest.json").write_text("{not json", encoding="utf-8")
    assert not smollm2_cache_is_valid(broken, gguf)
    assert not smollm2_cache_is_valid(tmp_path / "missing", gguf)


def test_another_transformers_invalidates(tmp_path) -> None:
    """A conversion made by another transformers release is redone: GGUF reading and tokenizer
    conversion change between releases (a tokenizer converted by an older one decoded spaces as
    'Ġ')."""
    gguf = smollm2_gguf()
    older = _fake_conversion(tmp_path / "older", gguf, converter="0.0.1")
    assert not smollm2_cache_is_valid(older, gguf)
    unrecorded = _fake_conversion(tmp_path / "unrecorded", gguf)
    manifest = json.loads((unrecorded / "ragzip-manifest.json").read_text(encoding="utf-8"))
    del manifest["transformers"]
    (unrecorded / "ragzip-manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert not smollm2_cache_is_valid(unrecorded, gguf)


def test_touching_the_source_invalidates(tmp_path) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"0" * 16)
    folder = _fake_conversion(tmp_path / "cache", source)
    assert smollm2_cache_is_valid(folder, source)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert not smollm2_cache_is_valid(folder, source)


def _valid(folder: Path) -> bool:
    return (folder / "ok").is_file()


def _made(path: Path, *, ok: bool, tag: str) -> Path:
    path.mkdir()
    (path / "tag").write_text(tag, encoding="utf-8")
    if ok:
        (path / "ok").touch()
    return path


def test_publish_moves_the_folder_into_place(tmp_path) -> None:
    tmp = _made(tmp_path / ".tmp-1", ok=True, tag="new")
    final = tmp_path / "final"
    models._publish_dir(tmp, final, _valid)
    assert (final / "tag").read_text(encoding="utf-8") == "new"
    assert not tmp.exists()


def test_publish_keeps_a_valid_folder_another_process_wrote(tmp_path) -> None:
    final = _made(tmp_path / "final", ok=True, tag="theirs")
    tmp = _made(tmp_path / ".tmp-2", ok=True, tag="mine")
    models._publish_dir(tmp, final, _valid)
    assert (final / "tag").read_text(encoding="utf-8") == "theirs"
    assert not tmp.exists()


def test_publish_replaces_a_stale_folder(tmp_path) -> None:
    final = _made(tmp_path / "final", ok=False, tag="stale")
    tmp = _made(tmp_path / ".tmp-3", ok=True, tag="fresh")
    models._publish_dir(tmp, final, _valid)
    assert (final / "tag").read_text(encoding="utf-8") == "fresh"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no stale leftovers


def test_unwritable_cache_dir_is_a_model_error(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(ModelError, match="RAGZIP_CACHE_DIR"):
        ensure_smollm2_cache()


@pytest.mark.slow
def test_conversion_writes_the_cache_once_and_reuses_it(tmp_path, monkeypatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))
    t0 = time.perf_counter()
    folder = ensure_smollm2_cache()
    t_convert = time.perf_counter() - t0
    assert folder == tmp_path / SMOLLM2_NAME
    for name in (*REQUIRED, "generation_config.json", "ragzip-manifest.json"):
        assert (folder / name).is_file(), name
    assert smollm2_cache_is_valid(folder, smollm2_gguf())
    assert [p.name for p in tmp_path.iterdir()] == [SMOLLM2_NAME]  # no temp folder left
    manifest_stat = (folder / "ragzip-manifest.json").stat()

    t0 = time.perf_counter()
    assert ensure_smollm2_cache() == folder
    t_reuse = time.perf_counter() - t0
    again = (folder / "ragzip-manifest.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (manifest_stat.st_ino, manifest_stat.st_mtime_ns)
    print(f"conversion {t_convert:.1f} s, reuse check {t_reuse * 1000:.1f} ms")

    # The conversion is deterministic: it matches the default cache the other tests load.
    converted = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, local_files_only=True
    )
    monkeypatch.delenv("RAGZIP_CACHE_DIR")
    default, _ = models.load_smollm2("cpu")
    reference = default.state_dict()
    for key, value in converted.state_dict().items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.slow
def test_counter_reads_the_tokenizer_with_or_without_the_cache(tmp_path, monkeypatch) -> None:
    models.smollm2_counter.cache_clear()
    try:
        cached = models.smollm2_counter()  # the default cache, built by load_smollm2
        models.smollm2_counter.cache_clear()
        monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))  # no cache: read the GGUF
        from_gguf = models.smollm2_counter()
        assert not smollm2_cache_path().exists()  # the model was not converted for it
    finally:
        models.smollm2_counter.cache_clear()
    assert cached.name == from_gguf.name == SMOLLM2_NAME
    text = "The capital of Zorbania is Quillton. <|im_end|> naïve café 12345"
    assert cached.count(text) == from_gguf.count(text) > 0
    assert cached.offsets(text) == from_gguf.offsets(text)
