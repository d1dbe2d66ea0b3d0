"""The retriever interface: anything that turns a question into ranked passages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ragzip.core.types import Passage


@runtime_checkable
class Retriever(Protocol):
    """Returns the ``k`` passages most relevant to a query, best first."""

    def retrieve(self, query: str, k: int = 10) -> list[Passage]:
        """The top ``k`` passages for ``query``, each with its retrieval ``score`` set."""
        ...


class SearchIndex(Retriever, Protocol):
    """An index that ranks by each of its retrievers (the folder index, the Postgres index)."""

    def __len__(self) -> int:
        """The chunks it holds."""
        ...

    def search_batch(
        self, queries: Sequence[str], k: int = 10, *, mode: Any = "hybrid"
    ) -> list[list[Passage]]:
        """The top ``k`` chunks of each query by ``mode`` (``hybrid``, ``bm25``, ``dense``)."""
        ...
