"""``ragzip compress`` / ``ragzip ask``: compressors given as specs."""

from __future__ import annotations

import json

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
