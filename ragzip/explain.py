"""What compression kept and dropped, shown passage by passage: kept text highlighted, dropped
text dimmed, tokens before and after, and the budget (``ragzip ask --explain``).

On a terminal the view is styled with rich; anywhere else (a pipe, a log file, a test) it is
plain text in the word-diff convention of ``git diff --word-diff=plain``: dropped text stands
between ``[-`` and ``-]``, kept text as it is.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text

from ragzip.core.types import CompressedPassage, CompressionResult

KEPT_STYLE = "bold green"
DROPPED_STYLE = "dim strike"


def _header(index: int, passage: CompressedPassage) -> str:
    title = f" {passage.passage.title}" if passage.passage.title else ""
    pid = f" ({passage.passage.id})" if passage.passage.id else ""
    state = "dropped" if passage.dropped else "kept"
    return f"[{index}]{title}{pid}: {passage.original_tokens} → {passage.tokens} tokens, {state}"


def _summary(result: CompressionResult) -> str:
    ratio = "all dropped" if result.compressed_tokens == 0 else f"{result.ratio:.1f}x"
    soft = "" if result.embeddings is None else " (soft: vectors stand for the kept text)"
    kept = sum(not p.dropped for p in result.passages)
    return (
        f"{result.compressor}: {result.original_tokens} → {result.compressed_tokens} context "
        f"tokens ({ratio}), budget {result.budget_tokens}, "
        f"{kept} of {len(result.passages)} passages kept{soft}"
    )


def plain(result: CompressionResult) -> str:
    """The explanation as plain text: ``[-dropped-]`` marks, one block per passage."""
    blocks = [_summary(result)]
    for i, passage in enumerate(result.passages, 1):
        body = "".join(text if kept else f"[-{text}-]" for text, kept in passage.segments())
        blocks.append(f"{_header(i, passage)}\n{body}")
    return "\n\n".join(blocks) + "\n"


def styled(result: CompressionResult) -> Group:
    """The explanation as rich renderables: kept text in :data:`KEPT_STYLE`, dropped text in
    :data:`DROPPED_STYLE`."""
    parts: list[Text] = [Text(_summary(result), style="bold")]
    for i, passage in enumerate(result.passages, 1):
        parts.append(Text(""))
        parts.append(Text(_header(i, passage), style="cyan"))
        body = Text()
        for text, kept in passage.segments():
            body.append(text, style=KEPT_STYLE if kept else DROPPED_STYLE)
        parts.append(body)
    return Group(*parts)


def show(result: CompressionResult, console: Console) -> None:
    """Print the explanation on ``console``: styled on a terminal, plain text elsewhere."""
    if console.is_terminal:
        console.print(styled(result))
    else:
        console.file.write(plain(result))
