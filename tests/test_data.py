"""Problems and pools from local files."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.data import DataError, load_pool, load_problems
from collab.scenario.schema import DatasetConfig


def test_jsonl_and_parquet_give_the_same_problems(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"id": "a", "question": "1+1?", "answer": "2"}, {"id": "b", "question": "2+2?", "answer": "4"}]
    (tmp_path / "p.jsonl").write_text("".join(f'{{"id": "{r["id"]}", "question": "{r["question"]}", '
                                              f'"answer": "{r["answer"]}"}}\n' for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    fields = {"problem": "question"}
    from_jsonl = load_problems(DatasetConfig(file="p.jsonl", fields=fields), tmp_path)
    from_parquet = load_problems(DatasetConfig(file="p.parquet", fields=fields), tmp_path)
    assert from_jsonl == from_parquet and [p.problem for p in from_jsonl] == ["1+1?", "2+2?"]
    assert [p.id for p in load_problems(DatasetConfig(file="p.jsonl", fields=fields, ids=["b"]), tmp_path)] == ["b"]


def test_benchmark_files_load(shared: Path) -> None:
    for path in sorted((shared / "data" / "benchmarks").glob("*.jsonl")):
        problems = load_problems(DatasetConfig(file=str(path)), path.parent)
        assert problems and all(p.problem and p.answer for p in problems), path.name
    assert len(load_problems(DatasetConfig(file=str(shared / "data/benchmarks/math500.jsonl")), shared)) == 500


def test_recorded_trajectories_load_as_a_pool(shared: Path) -> None:
    path = shared / "data" / "trajectories" / "reasoning" / "R1-Distill-Qwen-1.5B.jsonl"
    pool = load_pool("solo", [(path, None)])
    assert len(pool) > 0 and len({t.agent for t in pool.trajectories}) == 1
    some = pool.trajectories[0]
    assert pool.for_problem(some.problem_id)
    assert all(pool.pick_other(some.problem_id, key).problem_id != some.problem_id for key in range(50))


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "x", "problem": "p", "answer": "1"}\n' * 2)
    with pytest.raises(DataError, match="duplicate problem id 'x'"):
        load_problems(DatasetConfig(file="d.jsonl"), tmp_path)


def test_unknown_benchmark_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown benchmark"):
        load_problems(DatasetConfig(source="nope"), tmp_path)
