"""``precision="auto"``: what it resolves to, and the environment variable that fixes it."""

from __future__ import annotations

import pytest

from ragzip.core.errors import ConfigError
from ragzip.encoders.embedding import PRECISION_ENV, resolve_precision
from ragzip.weights import native_bf16_cpu


def test_auto_follows_the_cpu_and_fixed_values_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert resolve_precision("auto") == ("bfloat16" if native_bf16_cpu() else "float32")
    assert resolve_precision("auto", "cuda") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("float32") == "float32"


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_the_environment_fixes_auto(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    monkeypatch.setenv(PRECISION_ENV, forced)
    assert resolve_precision("auto") == forced
    assert resolve_precision("auto", "cuda") == forced
    other = "float32" if forced == "bfloat16" else "bfloat16"
    assert resolve_precision(other) == other  # an explicit precision wins


def test_a_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(ConfigError, match="RAGZIP_PRECISION='fp16'"):
        resolve_precision("auto")
