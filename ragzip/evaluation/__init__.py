"""The evaluation harness behind ``ragzip eval``.

Loads NQ-open and key-value retrieval data (:mod:`~ragzip.experiments.datasets`), scores retrieval,
compression and generation (:mod:`~ragzip.evaluation.metrics`, :mod:`~ragzip.evaluation.stages`,
:mod:`~ragzip.evaluation.runner`)
and writes JSON, Markdown and a plot (:mod:`~ragzip.evaluation.report`). Model-heavy modules are
imported only when a stage runs.
"""

from __future__ import annotations

from ragzip.evaluation.config import EvalConfig
from ragzip.evaluation.metrics import (
    answer_accuracy,
    answer_in_context,
    exact_match,
    f1_score,
    rate_adherence,
    recall_at_k,
)
from ragzip.evaluation.report import write_report
from ragzip.evaluation.results import EvalReport
from ragzip.evaluation.runner import run_eval
from ragzip.experiments.datasets import (
    KVCase,
    NQExample,
    load_kv,
    load_nq,
    nq_split,
)

__all__ = [
    "EvalConfig",
    "EvalReport",
    "KVCase",
    "NQExample",
    "answer_accuracy",
    "answer_in_context",
    "exact_match",
    "f1_score",
    "load_kv",
    "load_nq",
    "nq_split",
    "rate_adherence",
    "recall_at_k",
    "run_eval",
    "write_report",
]
