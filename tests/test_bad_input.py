"""Property: any mutated scenario either validates or fails with exit 2 and file:line:column."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.cli import main

ROOT = Path(__file__).resolve().parent.parent
BASES = [yaml.safe_load((ROOT / name).read_text()) for name in ("scenarios/relay.yaml", "scenarios/interjector.yaml")]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=12),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, (*prefix, index))
    return found


def mutate(data: dict, path: tuple, action: str, value: Any, key: str) -> dict:
    data = copy.deepcopy(data)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "add_key" and isinstance(parent[last], dict):
        parent[last][key] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[key or "x"] = parent.pop(last)
    return data


def check(tmp_path: Path, text: str, capsys) -> None:
    path = tmp_path / "mutant.yaml"
    path.write_text(text)
    if not (tmp_path / "data").exists():  # validate reads the files a scenario names
        (tmp_path / "data").symlink_to(ROOT / "scenarios" / "data")
    status = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert status in (0, 2)
    if status == 2:
        lines = err.strip().splitlines()
        assert lines and all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", line) for line in lines), err
    assert "Traceback" not in err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_structural_mutations(tmp_path: Path, capsys, data) -> None:
    base = data.draw(st.sampled_from(BASES))
    path = data.draw(st.sampled_from(paths(base)))
    action = data.draw(st.sampled_from(["delete", "replace", "add_key", "rename"]))
    mutant = mutate(base, path, action, data.draw(VALUES), data.draw(st.text(max_size=8)))
    check(tmp_path, yaml.safe_dump(mutant, sort_keys=False), capsys)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1), cut=st.integers(1, 6),
       insert=st.sampled_from(["", ":", "- ", "{", "]", "\t", "&a", "*b"]))
def test_textual_mutations(tmp_path: Path, capsys, position: float, cut: int, insert: str) -> None:
    text = (ROOT / "scenarios/relay.yaml").read_text()
    at = int(position * len(text))
    check(tmp_path, text[:at] + insert + text[at + cut:], capsys)


@pytest.mark.parametrize("row,words", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": "x", "answer": "1"}', "missing field(s) problem"),
])
def test_malformed_dataset_names_file_and_line(tmp_path: Path, capsys, row: str, words: str) -> None:
    (tmp_path / "data").mkdir()
    good = '{"id": "a", "problem": "p", "answer": "1"}'
    (tmp_path / "data" / "demo.jsonl").write_text(f"{good}\n\n{row}\n")
    scenario = (ROOT / "scenarios/relay.yaml").read_text()
    (tmp_path / "s.yaml").write_text(scenario)
    assert main(["simulate", str(tmp_path / "s.yaml"), "--dry-run", "--quiet", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'data' / 'demo.jsonl'}:3: " in err and words in err


def test_malformed_pool_file_names_file_and_line(tmp_path: Path, capsys) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"id": "1", "response": "ok"}\n{"id": "2"}\n')
    scenario = (ROOT / "scenarios/interjector.yaml").read_text().replace(
        "data/demo.jsonl", str(ROOT / "scenarios/data/demo.jsonl"))
    (tmp_path / "s.yaml").write_text(scenario + f"pools: {{solo: {{files: [{pool}]}}}}\n")
    assert main(["simulate", str(tmp_path / "s.yaml"), "--dry-run", "--quiet", "--out", str(tmp_path / "runs")]) == 2
    assert f"{pool}:2: missing field(s) response" in capsys.readouterr().err


def test_run_names_cannot_escape_the_runs_folder(tmp_path: Path) -> None:
    scenario = (ROOT / "scenarios/relay.yaml").read_text().replace("name: relay", "name: ../../etc/evil")
    scenario = scenario.replace("data/demo.jsonl", str(ROOT / "scenarios/data/demo.jsonl"))
    (tmp_path / "s.yaml").write_text(scenario)
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--dry-run", "--quiet", "--limit", "1", "--out", str(out)]) == 0
    (run,) = out.iterdir()
    assert run.parent == out and run.name.startswith("etc-evil-")
