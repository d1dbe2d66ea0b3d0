"""ragzip: compress retrieved context between retrieval and an LLM.

Public API; everything listed in ``__all__`` is importable from ``ragzip`` directly.
"""

from __future__ import annotations

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.errors import (
    BudgetError,
    CompressionError,
    ConfigError,
    GenerationError,
    IndexCorruptedError,
    IndexFormatError,
    IndexNotFoundError,
    InputError,
    MissingDependencyError,
    ModelError,
    RagzipError,
    RegistryError,
    UpstreamError,
)
from ragzip.core.framing import PLAIN_CONTEXT, ContextFormat, ContextLayout
from ragzip.core.tokenization import HFTokenCounter, TokenCounter
from ragzip.core.types import Budget, CompressedPassage, CompressionResult, Passage, Span
from ragzip.registry import available as available_compressors
from ragzip.registry import create_compressor, register

__version__ = "0.1.0"

__all__ = [
    "PLAIN_CONTEXT",
    "Budget",
    "BudgetError",
    "CompressedPassage",
    "CompressionError",
    "CompressionOutput",
    "CompressionRequest",
    "CompressionResult",
    "Compressor",
    "ConfigError",
    "ContextFormat",
    "ContextLayout",
    "GenerationError",
    "HFTokenCounter",
    "IndexCorruptedError",
    "IndexFormatError",
    "IndexNotFoundError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "Passage",
    "RagzipError",
    "RegistryError",
    "Span",
    "TokenCounter",
    "UpstreamError",
    "__version__",
    "available_compressors",
    "create_compressor",
    "register",
]
