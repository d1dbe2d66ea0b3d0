"""The ``ragzip`` command line: compressor specs, early checks, a quiet output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragzip.cli import app

runner = CliRunner()
PAYLOAD = json.dumps(
    {
        "query": "How long is the Seine?",
        "passages": [
            "The river Seine flows through Paris. It is 777 km long. Boats carry tourists.",
            "Paris is the capital of France. About two million people live there.",
        ],
        "budget": "2x",
    }
)


def _compress(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["compress", *args], input=PAYLOAD, terminal_width=200)
    return result.exit_code, result.output


def test_compress_takes_a_spec() -> None:
    code, by_spec = _compress("--compressor", "random:seed=4;granularity=word")
    assert code == 0, by_spec
    code, by_option = _compress("--compressor", "random", "-o", "seed=4", "-o", "granularity=word")
    assert code == 0, by_option
    assert json.loads(by_spec)["passages"] == json.loads(by_option)["passages"]
    spans = {
        json.dumps(json.loads(_compress("--compressor", f"random:seed={s};granularity=word")[1]))
        for s in range(5)
    }
    assert len(spans) > 1  # the seed reaches the compressor


def test_bad_specs_exit_2_with_the_reason() -> None:
    for spec, message in (
        ("random:seed=x", "seed must be an integer"),
        ("random:sede=1", "valid keys: granularity, seed"),
        ("random:seed=1,granularity=word", "separate settings with ';'"),
        ("nope:seed=1", "unknown compressor 'nope'"),
    ):
        code, output = _compress("--compressor", spec)
        assert code == 2, output
        assert message in " ".join(output.split()), output
    code, output = _compress("--compressor", "random:seed=1", "-o", "seed=2")
    assert code == 2
    assert "both set ['seed']" in " ".join(output.split())


def test_bad_names_and_budgets_fail_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("models were loaded before the arguments were checked")

    monkeypatch.setattr("ragzip.pipeline.Pipeline.from_defaults", no_models)
    monkeypatch.setattr("ragzip.weights.smollm2_counter", no_models)
    for args, message in (
        (["ask", "q?", "--compressor", "nosuch"], "unknown compressor 'nosuch'"),
        (["ask", "q?", "--compressor", "mig:bogus=1"], "valid keys"),
        (["ask", "q?", "--budget", "0"], "at least 1"),
        (["index", str(tmp_path), "--engine", "spark"], "engine must be 'local' or 'ray'"),
        (["index", str(tmp_path), "--engine", "ray", "--workers", "0"], "greater than or equal"),
    ):
        result = runner.invoke(app, args, terminal_width=200)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    result = runner.invoke(app, ["compress", "--compressor", "nosuch"], input=PAYLOAD)
    assert result.exit_code == 2 and "unknown compressor" in result.output


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    ragzip = Path(sys.executable).with_name("ragzip")
    return subprocess.run(
        [str(ragzip), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


NOISE = ("it/s]", "Batches", "Loading weights", "Warning", "warn(", "%|")


@pytest.mark.slow
def test_cli_is_quiet_and_reports_skipped_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "seine.md").write_text("# Seine\n\nThe Seine is 777 km long and flows through Paris.")
    (docs / "empty.md").write_text("")
    (docs / "binary.md").write_bytes(b"PK\x03\x04\x00\x00zip")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    index = _run("index", "docs", "--index", "idx", "--no-progress", cwd=tmp_path)
    assert index.returncode == 0, index.stderr
    assert not any(n in index.stderr for n in NOISE), index.stderr
    report = " ".join(index.stderr.split())
    assert "skipped 3 file(s)" in report
    for reason in ("empty.md: is empty", "binary.md: contains NUL", "latin1.txt: is not UTF-8"):
        assert reason in report
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["features"]["n"] >= 1  # the sentence vectors mig reuses were stored
    stats = _run("index", "--stats", "--index", "idx", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    shown = json.loads(stats.stdout)
    assert shown["documents"] == 1 and shown["chunks"] == 1
    assert shown["sentence_vectors"] == manifest["features"]["n"] and shown["bytes"] > 0
    assert shown["version"] == (tmp_path / "idx").resolve().name
    ask = _run("ask", "How long is the Seine?", "--index", "idx", "--no-progress", cwd=tmp_path)
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip()
    assert not any(n in ask.stderr for n in NOISE), ask.stderr


def test_version_prints_the_package_version() -> None:
    from ragzip import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ragzip {__version__}"


@pytest.mark.parametrize(
    ("command", "extra"),
    [("ask", "ragzip[postgres]"), ("index", "ragzip[postgres]"), ("compressors", "ragzip[models]")],
)
def test_extras_are_named_literally(command: str, extra: str) -> None:
    """Square brackets in help texts and tables are text, never markup that eats them."""
    args = [command] if command == "compressors" else [command, "--help"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert extra in " ".join(result.output.split())
