"""Reports from a real (small) run: JSON keys, Markdown tables, a non-empty PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ragzip.core.errors import ConfigError, RegistryError
from ragzip.evaluation.config import EvalConfig
from ragzip.evaluation.report import JSON_NAME, MARKDOWN_NAME, PLOT_NAME, SCHEMA, write_report
from ragzip.evaluation.results import EvalReport
from ragzip.evaluation.runner import run_eval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def kv_report(data_dir: Path, minilm_counter: Any) -> EvalReport:
    config = EvalConfig(
        data_dir=data_dir,
        questions=5,
        compressors=("truncate", "random"),
        ratios=(1, 4),
        retrieval=False,
        compression=False,
        kv=True,
        kv_cases=8,
    )
    seen: list[EvalReport] = []
    report = run_eval(config, counter=minilm_counter, progress=False, checkpoint=seen.append)
    assert len(seen) == 1 and seen[0].kv == report.kv  # one checkpoint per stage that ran
    return report


def test_kv_stage_numbers(kv_report: EvalReport) -> None:
    assert kv_report.kv is not None
    assert kv_report.retrieval is None and kv_report.compression is None
    rows = {(r.compressor, r.requested_ratio): r for r in kv_report.kv.rows}
    assert set(rows) == {("truncate", 1.0), ("truncate", 4.0), ("random", 1.0), ("random", 4.0)}
    for row in rows.values():
        assert row.n == 8
        assert row.budget_violations == 0
        assert 0.0 <= row.pair_survival <= row.value_survival <= 1.0
        assert len(row.survived) == round(row.value_survival * 8)
    # at 1x everything fits: every value survives, nothing is cut
    assert rows[("truncate", 1.0)].value_survival == 1.0
    assert rows[("truncate", 1.0)].achieved_ratio == pytest.approx(1.0)
    assert rows[("random", 4.0)].achieved_ratio >= 4.0
    assert rows[("random", 4.0)].value_survival < 1.0


def test_write_report_files(kv_report: EvalReport, tmp_path: Path) -> None:
    files = write_report(kv_report, tmp_path / "out")
    assert set(files) == {"json", "markdown", "plot"}
    doc = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert doc["schema"] == SCHEMA
    for key in (
        "config",
        "started_at",
        "finished_at",
        "duration_s",
        "tokenizer",
        "data",
        "machine",
        "retrieval",
        "compression",
        "generation",
        "kv",
        "stage_seconds",
    ):
        assert key in doc, key
    assert doc["tokenizer"] == "minilm"
    assert doc["config"]["ratios"] == [1.0, 4.0]
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["machine"]["versions"]["ragzip"]
    assert doc["retrieval"] is None
    kv_rows = doc["kv"]["rows"]
    assert len(kv_rows) == 4
    assert set(kv_rows[0]) >= {"compressor", "requested_ratio", "value_survival", "achieved_ratio"}
    md = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    assert "## Key-value retrieval" in md
    assert "| truncate | 4x |" in md
    png = (tmp_path / "out" / PLOT_NAME).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_json_has_no_nan(kv_report: EvalReport, tmp_path: Path) -> None:
    from dataclasses import replace

    from ragzip.evaluation.results import KVStage

    assert kv_report.kv is not None
    row = replace(kv_report.kv.rows[0], ms_per_1k_tokens=math.nan, achieved_ratio=math.inf)
    broken = replace(kv_report, kv=KVStage(cases=1, records_per_case=75.0, rows=(row,)))
    write_report(broken, tmp_path)
    doc = json.loads((tmp_path / JSON_NAME).read_text())
    assert doc["kv"]["rows"][0]["ms_per_1k_tokens"] is None
    assert doc["kv"]["rows"][0]["achieved_ratio"] is None
    assert "∞" in (tmp_path / MARKDOWN_NAME).read_text()


def test_report_folder_blocked_by_a_file(kv_report: EvalReport, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="in the way"):
        write_report(kv_report, blocker)


def test_nothing_to_plot(kv_report: EvalReport, tmp_path: Path) -> None:
    from dataclasses import replace

    files = write_report(replace(kv_report, kv=None), tmp_path)
    assert "plot" not in files
    assert not (tmp_path / PLOT_NAME).exists()


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="split"):
        EvalConfig(split="dev")
    with pytest.raises(ConfigError, match=">= 1"):
        EvalConfig(ratios=(0.5,))
    with pytest.raises(ConfigError, match="questions"):
        EvalConfig(questions=0)
    with pytest.raises(ConfigError, match="compressor"):
        EvalConfig(compressors=())
    cfg = EvalConfig(ratios=(4, 1, 4.0), compressors=(" mig", "mig", "truncate"))
    assert cfg.ratios == (1.0, 4.0)
    assert cfg.compressors == ("mig", "truncate")


def test_unknown_compressor_fails_before_work(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="choose one of"):
        run_eval(EvalConfig(data_dir=tmp_path, compressors=("nope",)), progress=False)
