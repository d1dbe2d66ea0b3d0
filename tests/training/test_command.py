"""``ragzip train xrag|merge`` for a third model (a tiny random Llama, 48 wide): train → save →
load → compress → generate, the artefact refused for another model, and a killed run resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragzip.cli import app
from ragzip.core.errors import ModelError
from ragzip.core.types import Budget
from ragzip.generators.target import load_target
from tests.soft_support import THIRD_HIDDEN, tiny_model_folder

pytestmark = pytest.mark.slow
QUESTION = "Who wrote Yesterday?"
PASSAGES = ["Yesterday is a song by the Beatles, written by Paul McCartney.", "Paris is big."]


@pytest.fixture(scope="module")
def third(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_model_folder(tmp_path_factory.mktemp("third") / "model"))


def _generate(spec: str, result: Any) -> Any:
    from ragzip.generators.local import embedded_generator

    return embedded_generator(spec).generate_compressed(result, max_new_tokens=3)


def test_train_xrag_for_a_third_model(third: str, data_dir: Path, tmp_path: Path) -> None:
    from ragzip.compressors.xrag import XragCompressor
    from ragzip.weights import smollm2_counter

    out = tmp_path / "xrag"
    args = ["train", "xrag", "--out", str(out), "--generator", third, "--data-dir", str(data_dir)]
    args += ["--train-n", "16", "--stage1-examples", "8", "--stage2-examples", "8"]
    args += ["--val-n", "2", "--eval-every", "1"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    config = json.loads((out / "config.json").read_text())
    assert config["target"] == load_target(third).to_dict()
    assert config["out_dim"] == THIRD_HIDDEN
    record = json.loads((out / "training.json").read_text())
    assert [len(record[s]["steps"]) for s in ("stage1", "stage2")] == [1, 1]
    assert not (out / "checkpoint.pt").exists()
    counter = smollm2_counter()  # the third model shares SmolLM2's tokenizer
    xrag = XragCompressor(XragCompressor.Config(generator=third, weights=str(out)), counter=counter)
    result = xrag.compress(QUESTION, PASSAGES, budget=Budget.compression(4))
    assert result.embeddings is not None and result.embeddings.shape == (1, THIRD_HIDDEN)
    assert _generate(third, result).completion_tokens >= 1
    with pytest.raises(ModelError, match="not for smollm2-135m-instruct"):
        XragCompressor(XragCompressor.Config(weights=str(out)), counter=counter)


def test_train_merge_for_a_third_model_and_resume(
    third: str, data_dir: Path, tmp_path: Path
) -> None:
    from ragzip.compressors.merge.compressor import MergeCompressor
    from ragzip.weights import smollm2_counter

    out = tmp_path / "merge"
    common = ["train", "merge", "--out", str(out), "--generator", third]
    common += ["--data-dir", str(data_dir), "--train-n", "24", "--val-examples", "2"]
    common += ["--val-every", "1", "--minutes", "10", "--text-share", "0.5"]
    # a first run, killed once it has written a checkpoint
    code = "from ragzip.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *common, "--max-steps", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.5)
        time.sleep(1.0)  # let it train on a little
    finally:
        proc.kill()
        proc.wait()
    # the same command goes on from the checkpoint (given a step limit to stop at)
    import torch

    done = int(torch.load(out / "checkpoint.pt", weights_only=False)["state"]["run"]["step"])
    run = CliRunner().invoke(app, [*common, "--max-steps", str(done + 2)])
    assert run.exit_code == 0, run.output
    record = json.loads((out / "training.json").read_text())
    assert record["resumed_at"] == [done] and record["steps"] == done + 2
    assert record["val_curve"][0]["step"] == 0  # the curve of the first run goes on
    assert not (out / "checkpoint.pt").exists()
    assert record["config"]["text_share"] == 0.5  # trained beside kept text
    counter = smollm2_counter()
    merge = MergeCompressor(
        MergeCompressor.Config(generator=third, adapter=str(out), text_share=0.5), counter=counter
    )
    result = merge.compress(QUESTION, PASSAGES, budget=Budget.tokens(12))
    assert result.embeddings is not None and result.embeddings.shape[1] == THIRD_HIDDEN
    assert 0 < result.timings["text_vectors"] < result.compressed_tokens
    assert _generate(third, result).completion_tokens >= 1
    with pytest.raises(ModelError, match="trained for model"):
        MergeCompressor(MergeCompressor.Config(adapter=str(out)), counter=counter)
