"""What a report says of the machine (ragzip.core.machine)."""

from __future__ import annotations

import pytest

from ragzip.core import machine


def test_features_name_what_decides_minilm_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = frozenset({"fpu", "avx512_bf16", "avx2", "avx512_vnni", "avx512f", "sse4_2"})
    monkeypatch.setattr(machine, "_cpu_flags", lambda: flags)
    assert machine.cpu_features() == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert machine.cpu_label() == f"{machine.cpu_model()} (avx2, avx512f, avx512_vnni, avx512_bf16)"
    assert machine.native_bf16_cpu() and not machine.amx_cpu()
    assert machine.machine_info()["cpu_features"] == machine.cpu_features()


def test_a_cpu_without_them_is_named_by_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "_cpu_flags", lambda: frozenset({"fpu", "sse2"}))
    assert machine.cpu_features() == []
    assert machine.cpu_label() == machine.cpu_model()
    assert not machine.native_bf16_cpu() and not machine.amx_cpu()
