"""What every command-line command shares: the console on stderr and the way it fails."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)
"""Progress, tables and errors go to stderr; answers and JSON to stdout."""


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` as an error and give the exit (code 2) to raise."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=2)
