"""``eval_command`` registered on a small typer app, as the CLI does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ragzip.evaluation.command import eval_command, parse_compressors, parse_ratios

app = typer.Typer()
app.command("eval")(eval_command)
app.command("noop")(lambda: None)  # two commands, so "eval" is a subcommand as in the CLI
runner = CliRunner()


def test_help_lists_options() -> None:
    result = runner.invoke(app, ["eval", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for opt in (
        "--data-dir",
        "--out",
        "--questions",
        "-n",
        "--split",
        "--k",
        "--compressors",
        "--ratios",
        "--generate-n",
        "--generate-ratio",
        "--no-kv",
        "--index-cache",
    ):
        assert opt in result.output, opt


def test_parse_ratios() -> None:
    assert parse_ratios("1,2, 4x,8") == (1.0, 2.0, 4.0, 8.0)
    with pytest.raises(typer.BadParameter):
        parse_ratios("two")
    with pytest.raises(typer.BadParameter):
        parse_ratios(" , ")


def test_parse_compressors_gives_canonical_specs() -> None:
    assert parse_compressors(
        " sentence : mode=budgeted ,sentence:mode=adaptive; threshold=0.3,mig"
    ) == (
        "sentence:mode=budgeted",
        "sentence:mode=adaptive;threshold=0.3",
        "mig",
    )
    for bad in ("sentence:mode=greedy", "random:seed=x", "sentence:mode=adaptive,threshold=1", ","):
        with pytest.raises(typer.BadParameter):
            parse_compressors(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compressors", "sentence:mode=greedy"], "got 'greedy'"),
        (["--compressors", "random:sed=1"], "valid keys"),
        (["--ratios", "0.5"], ">= 1"),
        (["--split", "dev"], "unknown split"),
        (["--ratios", "abc"], "cannot read ratio"),
        (["-n", "0"], "questions must be an int >= 1"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", *args], terminal_width=200)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_unknown_compressor_and_missing_data(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", "--compressors", "nope", "--data-dir", str(tmp_path)], terminal_width=200
    )
    assert result.exit_code == 2
    assert "unknown compressor 'nope'" in " ".join(result.output.split())
    result = runner.invoke(
        app, ["eval", "--data-dir", str(tmp_path / "missing"), "--no-progress"], terminal_width=200
    )
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())  # rich wraps lines


@pytest.mark.slow
def test_kv_only_run_writes_report(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "eval",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--no-retrieval",
            "--no-compression",
            "--compressors",
            "truncate",
            "--ratios",
            "1,2",
            "--kv-cases",
            "3",
            "--no-progress",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "Key-value" in result.output
    assert {p.name for p in out.iterdir()} == {"eval.json", "eval.md", "eval.png"}


def test_report_rows_are_labelled_with_specs(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    specs = "random:seed=1,random:seed=2;granularity=word"
    args = ["eval", "--data-dir", str(data_dir), "--out", str(out), "--no-retrieval"]
    args += ["--no-compression", "--compressors", specs, "--ratios", "2", "--kv-cases", "3"]
    result = runner.invoke(app, [*args, "--no-progress"], terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    labels = [row["compressor"] for row in report["kv"]["rows"]]
    assert labels == ["random:seed=1", "random:seed=2;granularity=word"]
    assert report["config"]["compressors"] == labels
    assert "random:seed=2;granularity=word" in (out / "eval.md").read_text()


def test_blocked_output_folder_fails_before_work(data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        app, ["eval", "--data-dir", str(data_dir), "--out", str(blocker)], terminal_width=200
    )
    assert result.exit_code == 2
    assert "a file is in the way" in " ".join(result.output.split())
