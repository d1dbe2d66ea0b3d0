"""Loading the NQ and key-value files, the fixed splits, and clear errors for bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ragzip.core.errors import InputError
from ragzip.experiments import datasets as data


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _nq_row(i: int) -> str:
    return json.dumps({"question": f"q{i}?", "answers": [f"a{i}"], "title": "T", "text": f"t {i}"})


def test_split_indices_are_fixed_disjoint_and_cover_everything() -> None:
    first = data.split_indices()
    assert first == data.split_indices()  # deterministic
    assert {k: len(v) for k, v in first.items()} == {"train": 1200, "val": 300, "test": 500}
    ids = [i for v in first.values() for i in v]
    assert sorted(ids) == list(range(2000))  # disjoint and complete
    for v in first.values():
        assert v == sorted(v)
    # the seed matters: another seed gives another split
    assert data.split_indices(seed=data.SPLIT_SEED + 1)["test"] != first["test"]


def test_split_rejects_other_sizes_and_names() -> None:
    with pytest.raises(InputError, match="2000"):
        data.split_indices(1999)
    with pytest.raises(InputError, match="unknown split"):
        data.nq_split("dev", examples=[])


def test_load_nq_real_file(data_dir: Path) -> None:
    rows = data.load_nq(data_dir)
    assert len(rows) == 2000
    assert [r.index for r in rows] == list(range(2000))
    first = rows[0]
    assert first.question == "when were cigarette ads banned from tv uk"
    assert first.answers == ("1 August 1965",)
    assert first.doc_id == "nq-0000"
    assert first.passage().id == "nq-0000"
    assert first.passage().metadata["doc_id"] == "nq-0000"
    splits = {name: data.nq_split(name, examples=rows) for name in ("train", "val", "test")}
    seen = [q.index for s in splits.values() for q in s]
    assert len(seen) == len(set(seen)) == 2000
    assert data.nq_split("test", data_dir)[:3] == splits["test"][:3]
    assert len(data.nq_split("all", examples=rows)) == 2000


def test_gold_ids_cover_duplicate_passages(data_dir: Path) -> None:
    rows = data.load_nq(data_dir)
    gold = data.gold_doc_ids(rows)
    assert all(r.doc_id in gold[r.index] for r in rows)
    dupes = [r for r in rows if len(gold[r.index]) > 1]
    assert dupes, "the release has passages shared by several questions"
    for r in dupes:
        assert all(rows[int(d.split("-")[1])].text == r.text for d in gold[r.index])


def test_load_kv_real_file(data_dir: Path) -> None:
    cases = data.load_kv(data_dir)
    assert len(cases) == 100
    case = cases[0]
    passages = case.passages()
    assert len(passages) == len(case.records) == 75
    pos = case.gold_position
    assert passages[pos].text == f'"{case.key}": "{case.value}"'
    assert case.query == f"What is the value of key {case.key}?"
    assert len({p.id for p in passages}) == 75


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        data.load_nq(tmp_path / "nope")
    with pytest.raises(InputError, match=r"nq_open_dev\.jsonl\.gz not found"):
        data.load_nq(tmp_path)
    with pytest.raises(InputError, match=r"kv_retrieval_dev\.jsonl\.gz not found"):
        data.load_kv(tmp_path)


def test_default_folder_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    _write(shared, data.NQ_FILE, [_nq_row(i) for i in range(3)])
    monkeypatch.chdir(tmp_path / "repo")
    assert [r.question for r in data.load_nq()] == ["q0?", "q1?", "q2?"]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", ":2: not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"question": "q", "title": "t", "text": "x"}), "no 'answers' field"),
        (json.dumps({"question": "q", "answers": [], "title": "t", "text": "x"}), "non-empty list"),
        (json.dumps({"question": 3, "answers": ["a"], "title": "t", "text": "x"}), "must be str"),
        (json.dumps({"question": " ", "answers": ["a"], "title": "t", "text": "x"}), "empty"),
    ],
)
def test_malformed_nq(tmp_path: Path, line: str, match: str) -> None:
    _write(tmp_path, data.NQ_FILE, [_nq_row(0), line])
    with pytest.raises(InputError, match=match):
        data.load_nq(tmp_path)


def test_not_gzip_and_empty(tmp_path: Path) -> None:
    (tmp_path / data.NQ_FILE).write_text(_nq_row(0))
    with pytest.raises(InputError, match="gzip"):
        data.load_nq(tmp_path)
    _write(tmp_path, data.KV_FILE, [""])
    with pytest.raises(InputError, match="no records"):
        data.load_kv(tmp_path)


def test_malformed_kv(tmp_path: Path) -> None:
    good = {"ordered_kv_records": [["k1", "v1"], ["k2", "v2"]], "key": "k2", "value": "v2"}
    _write(tmp_path, data.KV_FILE, [json.dumps(good)])
    assert data.load_kv(tmp_path)[0].gold_position == 1
    bad_pair = {**good, "ordered_kv_records": [["k1"], ["k2", "v2"]]}
    _write(tmp_path, data.KV_FILE, [json.dumps(bad_pair)])
    with pytest.raises(InputError, match="not a \\[key, value\\] pair"):
        data.load_kv(tmp_path)
    wrong_value = {**good, "value": "v1"}
    _write(tmp_path, data.KV_FILE, [json.dumps(wrong_value)])
    with pytest.raises(InputError, match="not among its records"):
        data.load_kv(tmp_path)
