"""``ragzip train xrag|merge``: train a soft compressor's artefact for a generator.

Both read the NQ train split (questions, gold passages and, for ``merge``, hybrid-retrieved
contexts), choose on the val split, and write a folder to pass as ``xrag:weights=DIR`` or
``merge:adapter=DIR``; the folder records the generator it was trained for, and is refused for
any other. A checkpoint is written at every validation: running the same command again goes on
where it stopped (``--no-resume`` starts over). Progress is logged on stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ragzip.commands import fail
from ragzip.core.errors import RagzipError

train_app = typer.Typer(
    help="Train the soft compressors' artefacts (xrag projector, merge adapter) for a generator.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

GENERATOR_HELP = (
    "The generator the vectors are for: smollm2, gemma3-270m, a Hugging Face model folder or a "
    ".gguf file."
)
# the options both commands take
Generator = Annotated[str, typer.Option(help=GENERATOR_HELP)]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
TrainN = Annotated[int, typer.Option(help="Train questions to use (0: all).")]
DataDir = Annotated[Path | None, typer.Option(help="Folder with the NQ data.")]
Threads = Annotated[int, typer.Option(help="torch CPU threads.")]
Resume = Annotated[bool, typer.Option(help="Go on from a checkpoint in --out.")]


def _train(config_type: Any, train: Callable[..., dict[str, Any]], options: dict[str, Any]) -> Any:
    """Run ``train`` on ``config_type``'s defaults with the command's options (named as the
    config's fields, ``resume`` apart), logging on stderr; a ragzip error ends the command."""
    from ragzip.training.common import set_threads

    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    resume = options.pop("resume")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    set_threads(options["threads"])
    command = " ".join(["ragzip", *sys.argv[1:]])
    try:
        return train(replace(config_type(), **options), command=command, resume=resume)
    except RagzipError as exc:
        raise fail(exc) from exc


@train_app.command("xrag")
def train_xrag(
    out: Annotated[Path, typer.Option(help="Folder to write the projector to.")],
    generator: Generator = "smollm2",
    device: Device = "cpu",
    minutes: Annotated[float, typer.Option(help="Training time, both stages (0: no limit).")] = 0,
    train_n: TrainN = 0,
    stage1_examples: Annotated[int, typer.Option(help="Paraphrase examples.")] = 640,
    stage2_examples: Annotated[int, typer.Option(help="Question-answering examples.")] = 640,
    val_n: Annotated[int, typer.Option(help="Val questions for the curves.")] = 32,
    eval_every: Annotated[int, typer.Option(help="Steps between validations.")] = 20,
    data_dir: DataDir = None,
    threads: Threads = 1,
    resume: Resume = True,
) -> None:
    """Train an xRAG projector (passage vector -> one input embedding) for a generator."""
    options = dict(locals())
    from ragzip.training.xrag.config import TrainConfig
    from ragzip.training.xrag.run import train

    record = _train(TrainConfig, train, options)
    val = record["stage2"]["val"][-1] if record["stage2"]["val"] else {}
    typer.echo(f"wrote {out} (for {record['generator']['name']}); last val {val}")


@train_app.command("merge")
def train_merge(
    out: Annotated[Path, typer.Option(help="Folder to write the adapter to.")],
    generator: Generator = "smollm2",
    device: Device = "cpu",
    minutes: Annotated[float, typer.Option(help="Training time of the loop.")] = 30.0,
    max_steps: Annotated[int, typer.Option(help="Most optimiser steps.")] = 10_000,
    train_n: TrainN = 0,
    val_examples: Annotated[int, typer.Option(help="Val questions per validation.")] = 40,
    val_every: Annotated[int, typer.Option(help="Steps between validations.")] = 40,
    kl_weight: Annotated[float, typer.Option(help="Self-distillation weight.")] = 0.0,
    text_share: Annotated[
        float, typer.Option(help="Share of the budget kept as text while training.")
    ] = 0.5,
    data_dir: DataDir = None,
    threads: Threads = 1,
    resume: Resume = True,
) -> None:
    """Train a merge adapter (merged token embeddings -> what the generator reads best)."""
    options = dict(locals())
    from ragzip.training.merge.config import TrainConfig
    from ragzip.training.merge.train import train

    record = _train(TrainConfig, train, options)
    typer.echo(
        f"wrote {out} (for {record['generator']['name']}); val answer CE "
        f"{record['untrained_val_ce']:.3f} untrained -> {record['best_val_ce']:.3f}"
    )
