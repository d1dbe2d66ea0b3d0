from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

import ragzip
from ragzip import registry
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.errors import ConfigError, MissingDependencyError, RegistryError


def test_unknown_name_lists_choices(minilm_counter) -> None:
    with pytest.raises(RegistryError) as info:
        ragzip.create_compressor("nope", counter=minilm_counter)
    for name in ("identity", "truncate", "random", "mig"):
        assert name in str(info.value)


def test_missing_dependency_names_the_extra(minilm_counter, tmp_path, monkeypatch) -> None:
    module = tmp_path / "needs_missing_dep.py"
    module.write_text("import surely_not_installed_pkg_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register("needs-dep", "needs_missing_dep:Thing", extra="models")
    try:
        with pytest.raises(MissingDependencyError) as info:
            ragzip.create_compressor("needs-dep", counter=minilm_counter)
        assert "pip install 'ragzip[models]'" in str(info.value)
        assert "surely_not_installed_pkg_xyz" in str(info.value)
    finally:
        registry._ENTRIES.pop("needs-dep")


class _HeadSentence(Compressor):
    """Keeps the first ``keep`` characters of each passage (a real, tiny compressor)."""

    name: ClassVar[str] = "head-chars"

    @dataclasses.dataclass(frozen=True)
    class Config:
        keep: int = 5

    def __init__(self, config: Config | None = None, *, counter) -> None:  # type: ignore[no-untyped-def]
        super().__init__(counter=counter)
        self.config = config or self.Config()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        return CompressionOutput(
            spans=[[(0, min(self.config.keep, len(p.text)))] for p in request.passages]
        )


def test_config_from_mapping_and_unknown_keys(minilm_counter) -> None:
    registry.register("head-chars", f"{__name__}:_HeadSentence")
    try:
        comp = ragzip.create_compressor("head-chars", counter=minilm_counter, config={"keep": 3})
        assert comp.config.keep == 3  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match="valid keys: keep"):
            ragzip.create_compressor("head-chars", counter=minilm_counter, config={"kep": 3})
    finally:
        registry._ENTRIES.pop("head-chars")


def test_base_class_enforces_budget(minilm_counter, caplog) -> None:
    comp = _HeadSentence(_HeadSentence.Config(keep=1000), counter=minilm_counter)
    passages = ["alpha beta gamma delta epsilon zeta eta theta", "one two three four five six"]
    result = comp.compress("q?", passages, budget=ragzip.Budget.tokens(7))
    assert 0 < result.compressed_tokens <= 7
    assert "exceeded its budget" in caplog.text
    with pytest.raises(ragzip.core.errors.BudgetError, match="keeps nothing"):  # trimmed to nothing
        comp.compress("q?", passages, budget=ragzip.Budget.tokens(5))
