"""The ``ragzip profile`` command: measure this machine, fit the cost models, save and show them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragzip.core.errors import ConfigError, RagzipError
from ragzip.experiments.reporting import json_ready
from ragzip.profiling.measure import calibration_pool, measure
from ragzip.profiling.output import CHECK_JSON, CHECK_MD, plot_profile, summary_table
from ragzip.profiling.profile import JSON_NAME, Profile, save_profile, user_profile_path

if TYPE_CHECKING:
    from ragzip.generators.base import Generator


# -- command line -----------------------------------------------------------------------------


def _csv(text: str, kind: Callable[[str], Any], what: str) -> list[Any]:
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        msg = f"--{what} must be a comma-separated list of numbers, got {text!r}"
        raise ConfigError(msg) from exc
    if not values:
        msg = f"--{what} is empty"
        raise ConfigError(msg)
    return values


def _build_generator(generator: str, model: str | None) -> Generator:
    if generator == "embedded":
        from ragzip.generators.embedded import EmbeddedGenerator

        return EmbeddedGenerator()
    if not model:
        msg = "--model is needed with a remote --generator URL"
        raise ConfigError(msg)
    from ragzip.generators.openai_compat import OpenAIGenerator

    return OpenAIGenerator(generator, model)


def run_profile(
    *,
    compressors: Sequence[str],
    lengths: Sequence[int],
    ratios: Sequence[float],
    repeats: int,
    generator: Generator,
    out_dir: str | Path,
    expected_output_tokens: int,
    data: str | Path | None = None,
    index: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    max_context_tokens: int | None = None,
    check_repeats: int = 0,
    check_ratios: Sequence[float] | None = None,
) -> tuple[Profile, list[Path]]:
    """Measure, fit, save ``profile.json`` and the plots under ``out_dir``.

    With ``check_repeats`` above 0, the predictions are then checked at ``0.5``, ``1`` and
    ``1.5`` times each break-even length (:func:`ragzip.profile_check.check_profile`) and the
    report is written as ``check.json`` and ``check.md`` beside the profile (only the ratios in
    ``check_ratios`` when given).
    """
    from ragzip.registry import create_compressor

    pool = calibration_pool(data, index, limit=max(50, max(lengths) // 40 + 50))
    built = {name: create_compressor(name, counter=generator.counter) for name in compressors}
    profile = measure(
        generator,
        built,
        lengths=lengths,
        ratios=ratios,
        pool=pool,
        repeats=repeats,
        expected_output_tokens=expected_output_tokens,
        progress=progress,
        max_context_tokens=max_context_tokens,
    )
    out = Path(out_dir)
    path = save_profile(profile, out / JSON_NAME)
    files = [path, *plot_profile(profile, out)]
    if check_repeats > 0:
        from ragzip.profiling.check import check_profile, render_check_markdown

        report = check_profile(
            profile,
            generator,
            built,
            pool,
            repeats=check_repeats,
            ratios=check_ratios,
            progress=progress,
        )
        check_json = out / CHECK_JSON
        check_json.write_text(
            json.dumps(json_ready(report.to_dict()), indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        check_md = out / CHECK_MD
        check_md.write_text(render_check_markdown([report]), encoding="utf-8")
        files += [check_json, check_md]
    return profile, files


def profile_command(
    compressors: Annotated[
        str, typer.Option("--compressors", help="Comma-separated registry names.")
    ] = "truncate,mig",
    lengths: Annotated[
        str, typer.Option("--lengths", help="Context lengths in tokens, comma-separated.")
    ] = "256,512,1024,2048",
    ratios: Annotated[
        str, typer.Option("--ratios", help="Compression factors, comma-separated.")
    ] = "2,4",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per point (medians).")] = 3,
    generator: Annotated[
        str,
        typer.Option(
            "--generator", help="'embedded' or the base URL of an OpenAI-compatible server."
        ),
    ] = "embedded",
    model: Annotated[
        str | None, typer.Option("--model", help="Served model name (remote generator).")
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option("--context-window", help="The remote model's context window in tokens."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (default: the user cache folder, where auto looks)."
        ),
    ] = None,
    expected_output_tokens: Annotated[
        int, typer.Option("--expected-output-tokens", help="Answer length for end-to-end latency.")
    ] = 32,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="NQ-open jsonl.gz to build contexts from."),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help="Build contexts from this index's chunks (default: a corpus shipped with ragzip).",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Then measure again at 0.5, 1 and 1.5 times each n* and report the error.",
        ),
    ] = False,
    check_repeats: Annotated[
        int, typer.Option("--check-repeats", help="Timed runs per check point.")
    ] = 5,
    check_ratios: Annotated[
        str | None,
        typer.Option("--check-ratios", help="Check only these ratios (comma-separated)."),
    ] = None,
) -> None:
    """Measure when compression speeds up answers: break-even context lengths per compressor."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        names = _csv(compressors, str, "compressors")
        grid_n = _csv(lengths, int, "lengths")
        grid_r = _csv(ratios, float, "ratios")
        if data is not None and not Path(data).is_file():
            msg = f"no NQ data at {data} (pass --data PATH/nq_open_dev.jsonl.gz)"
            raise ConfigError(msg)
        if check and check_repeats < 1:
            msg = "--check-repeats must be >= 1"
            raise ConfigError(msg)
        gen = _build_generator(generator, model)
        profile, files = run_profile(
            compressors=names,
            lengths=grid_n,
            ratios=grid_r,
            repeats=repeats,
            generator=gen,
            out_dir=out if out is not None else user_profile_path().parent,
            expected_output_tokens=expected_output_tokens,
            data=data,
            index=index,
            progress=lambda line: console.log(line),
            max_context_tokens=context_window,
            check_repeats=check_repeats if check else 0,
            check_ratios=None
            if check_ratios is None
            else _csv(check_ratios, float, "check-ratios"),
        )
    except RagzipError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    Console().print(summary_table(profile))
    for f in files:
        console.print(f"wrote {f}")
