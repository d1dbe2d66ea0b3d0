"""``python -m ragzip.training.token``: train the token classifier."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ragzip.training.common import set_threads
from ragzip.training.token.config import TrainConfig
from ragzip.training.token.run import run

logger = logging.getLogger(__name__)


def _parse(argv: Sequence[str]) -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m ragzip.training.token", description=__doc__.splitlines()[0]
    )
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        if name == "data_dir":
            parser.add_argument(flag, type=Path, default=None)
        elif name == "threads":
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=kind, default=value)
    args = parser.parse_args(argv)
    return TrainConfig(**vars(args))


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = _parse(args)
    set_threads(cfg.threads)
    report = run(cfg, args)
    logger.info("wrote %s (selected epoch %s)", cfg.out, report["selected_epoch"])


if __name__ == "__main__":
    main()
