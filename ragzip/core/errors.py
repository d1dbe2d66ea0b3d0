"""Exceptions raised by ragzip.

Every error ragzip raises on purpose derives from :class:`RagzipError`, so callers can catch
one type. Third-party failures are wrapped with ``raise X(...) from exc`` so the cause stays
attached::

    RagzipError
    ├── ConfigError                 bad arguments or settings (also a ValueError)
    │   └── BudgetError             a budget that cannot be met or makes no sense
    ├── InputError                  bad user input: empty query, malformed passages (ValueError)
    ├── RegistryError               unknown component name (also a KeyError)
    ├── MissingDependencyError      an optional extra is not installed (also an ImportError)
    ├── ModelError                  a model or its weights cannot be found or loaded
    ├── IndexStoreError                 base of on-disk index problems
    │   ├── IndexNotFoundError      no index at the given path
    │   ├── IndexFormatError        not a ragzip index, or another format version
    │   └── IndexCorruptedError     files missing or checksums not matching
    ├── RetrievalError              the retrieval backend failed or timed out
    ├── CompressionError            a compressor failed on valid input
    └── GenerationError             the generator failed
        └── UpstreamError           a remote OpenAI-compatible server failed or timed out
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class RagzipError(Exception):
    """Base class of all ragzip errors."""


class ConfigError(RagzipError, ValueError):
    """Invalid configuration or arguments."""


class BudgetError(ConfigError):
    """A budget that makes no sense (negative, zero ratio, ...)."""

    @classmethod
    def keeps_nothing(cls, budget: object, tokens: int, layout: int, smallest: int) -> BudgetError:
        """A token budget that keeps no part of a context with text: ``tokens`` in all, of
        which the layout around the passages takes ``layout``; the shortest passage has
        ``smallest``."""
        return cls(
            f"the budget ({budget}) keeps nothing of this context: of its {tokens} tokens the "
            f"layout takes {layout}, and the shortest passage has {smallest}; give about "
            f"{layout + smallest} tokens or more, or a ratio such as '4x' (a ratio is raised "
            "until something is kept)"
        )


class InputError(RagzipError, ValueError):
    """Invalid input: an empty question, passages of the wrong type, ..."""


class RegistryError(RagzipError, KeyError):
    """An unknown name was asked of a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(RagzipError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""


@contextlib.contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Imports of an optional dependency: a module missing inside the block raises
    :class:`MissingDependencyError` saying ``what`` and ``pip install 'ragzip[extra]'``.

    Example::

        with needs_extra("redis", "the shared feature cache needs redis"):
            import redis
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        msg = f"{what}: pip install 'ragzip[{extra}]'"
        raise MissingDependencyError(msg, name=exc.name) from exc


class ModelError(RagzipError):
    """A model or its weights cannot be found or loaded."""


class IndexStoreError(RagzipError):
    """Base class of on-disk index errors."""


class IndexNotFoundError(IndexStoreError, FileNotFoundError):
    """No index exists at the given path."""


class IndexFormatError(IndexStoreError):
    """The directory is not a ragzip index, or was written by an incompatible format version."""


class IndexCorruptedError(IndexStoreError):
    """The index is incomplete or its files do not match their recorded checksums."""


class RetrievalError(RagzipError):
    """The retrieval backend (an index, a database) failed or did not answer in time."""


class CompressionError(RagzipError):
    """A compressor failed on valid input."""


class GenerationError(RagzipError):
    """The generator failed."""


class UpstreamError(GenerationError):
    """A remote OpenAI-compatible server failed, refused the request or timed out.

    Attributes:
        status_code: The HTTP status of the upstream response, or ``None`` when no response came.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
