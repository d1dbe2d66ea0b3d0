"""The ONNX Runtime backend: chosen per CPU, exported once from the shipped weights into the
cache, and as close to torch as the graph's precision allows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ragzip.core import machine
from ragzip.core.errors import ConfigError
from ragzip.encoders.embedding import PRECISION_ENV
from ragzip.encoders.onnx import (
    AUTO_ONNX,
    AUTO_ONNX_CLASSIFIER,
    BACKEND_ENV,
    OnnxModel,
    auto_int8_layers,
    cached_graph,
    check_backend,
    export_key,
    exported,
    resolve_backend,
)


@pytest.fixture
def no_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)


@pytest.mark.usefixtures("no_pins")
def test_auto_picks_the_fast_path_of_this_cpu() -> None:
    assert resolve_backend("auto") == ("torch" if machine.amx_cpu() else AUTO_ONNX)
    classifier = resolve_backend("auto", onnx=AUTO_ONNX_CLASSIFIER)
    # int8 weights where MiniLM's own frozen layers are, float32 in the trained ones
    assert classifier == ("torch" if machine.amx_cpu() else "onnx-int8")
    assert resolve_backend("auto", "cuda") == "torch"
    # a pinned precision keeps torch: the numbers it names are torch's
    assert resolve_backend("auto", "cpu", "float32") == "torch"
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("onnx") == "onnx"


@pytest.mark.parametrize(
    ("flags", "embedder", "classifier"),
    [
        (
            {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"},
            "torch",
            "torch",
        ),
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, AUTO_ONNX, AUTO_ONNX_CLASSIFIER),
        ({"avx2", "fma"}, AUTO_ONNX, AUTO_ONNX_CLASSIFIER),
    ],
    ids=["amx", "avx512-bf16-without-amx", "avx2"],
)
@pytest.mark.usefixtures("no_pins")
def test_auto_takes_torch_only_where_the_cpu_has_amx(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], embedder: str, classifier: str
) -> None:
    """bfloat16 autocast is MiniLM's fast path on AMX tiles; with AVX512-BF16 alone the ONNX
    graphs are faster (the measurement is in resolve_backend's docstring)."""
    monkeypatch.setattr(machine, "_cpu_flags", lambda: frozenset(flags))
    assert machine.native_bf16_cpu() == ("avx512_bf16" in flags)
    assert resolve_backend("auto") == embedder
    assert resolve_backend("auto", onnx=AUTO_ONNX_CLASSIFIER) == classifier


@pytest.mark.usefixtures("no_pins")
def test_auto_quantises_only_the_frozen_layers_of_a_classifier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert auto_int8_layers("auto", "onnx-int8", 4) == 4
    assert auto_int8_layers("onnx-int8", "onnx-int8", 4) is None  # asked for: every layer
    assert auto_int8_layers("auto", "onnx", 4) is None
    assert auto_int8_layers("auto", "torch", 4) is None
    monkeypatch.setenv(BACKEND_ENV, "onnx-int8")  # the environment names it: every layer
    assert auto_int8_layers("auto", "onnx-int8", 4) is None


@pytest.mark.usefixtures("no_pins")
def test_environment_fixes_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    assert resolve_backend("auto") == "onnx"
    assert resolve_backend("torch") == "torch"  # an explicit choice wins
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend("auto") == "torch"
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="RAGZIP_BACKEND='tensorrt'"):
        resolve_backend("auto")
    monkeypatch.delenv(BACKEND_ENV)
    monkeypatch.setenv(PRECISION_ENV, "float32")
    assert resolve_backend("auto") == "torch"


def test_bad_backends_are_refused() -> None:
    with pytest.raises(ConfigError, match="backend must be one of auto, torch, onnx"):
        check_backend("openvino")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_backend("onnx-int8", "cuda")


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.one_hot(input_ids % 8, 8).float()
        return self.proj(x) * attention_mask[..., None].float()


def test_export_is_written_once_per_key_and_runs_any_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))
    module = Tiny()
    ids = torch.ones((2, 3), dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    key = export_key("weights-digest")
    assert cached_graph("tiny", key, "float32") is None
    path = exported(module, example, outputs=["out"], name="tiny", key=key)
    assert path.is_file() and cached_graph("tiny", key, "float32") == path
    stamp = path.stat().st_mtime_ns
    assert exported(module, example, outputs=["out"], name="tiny", key=key) == path
    assert path.stat().st_mtime_ns == stamp  # not exported again
    assert export_key("other-digest") != key
    assert module.training  # the module's mode is given back
    tokens = np.array([[1, 2, 3, 4, 5]], dtype=np.int64)
    out = OnnxModel(path, threads=1).run(input_ids=tokens, attention_mask=np.ones_like(tokens))
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(tokens), torch.ones((1, 5), dtype=torch.long))
    np.testing.assert_allclose(out, want.numpy(), atol=1e-6)
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary folder is gone
    assert os.access(path, os.R_OK)


def test_a_graph_runs_at_the_thread_count_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model loaded before the entry point sets torch's thread count (or run at two counts by
    a benchmark) runs at the count in force, not at the one it was loaded under."""
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))
    ids = torch.ones((1, 3), dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    path = exported(Tiny(), example, outputs=["out"], name="tiny", key=export_key("threads"))
    tokens = np.array([[1, 2, 3]], dtype=np.int64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = OnnxModel(path)
        torch.set_num_threads(1)
        one = model.run(input_ids=tokens, attention_mask=np.ones_like(tokens))
        assert model.session().get_session_options().intra_op_num_threads == 1
        torch.set_num_threads(2)
        assert model.session().get_session_options().intra_op_num_threads == 2
        np.testing.assert_array_equal(
            model.run(input_ids=tokens, attention_mask=np.ones_like(tokens)), one
        )
    finally:
        torch.set_num_threads(before)
    fixed = OnnxModel(path, threads=1)
    assert fixed.session().get_session_options().intra_op_num_threads == 1
