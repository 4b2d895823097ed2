"""Every bad input a careless or hostile user can give: one clear line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.cli import main

ROOT = Path(__file__).resolve().parent.parent
RELAY = yaml.safe_load((ROOT / "scenarios/relay.yaml").read_text())
DEMO = ROOT / "scenarios/data/demo.jsonl"
GOOD_ROW = {"id": "p1", "problem": "What is 1 + 1?", "answer": "2"}
POOL_ROW = {"id": "p1", "response": "Let me think. 1 + 1 = 2.", "correct": True}


def scenario(tmp: Path, **changes: object) -> Path:
    """The relay scenario on the demo data, with top-level fields replaced."""
    data = {**RELAY, "dataset": {"file": str(DEMO), "limit": 1}, **changes}
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_dataset(tmp: Path, name: str, content: bytes | None) -> Path:
    """A scenario whose dataset file holds ``content`` (None: leave the path as prepared)."""
    if content is not None:
        (tmp / name).write_bytes(content)
    return scenario(tmp, dataset={"file": str(tmp / name)})


def with_inject(tmp: Path, target: Path) -> Path:
    agents = {**RELAY["agents"], "heckler": {"inject": {"file": str(target)}}}
    graph = {"start": "a", "turns": {"a": {"until": {"tokens": 8}}, "heckler": {}, "b": {"until": {"end": "answer"}}},
             "edges": ["a->heckler", "heckler->b"]}
    return scenario(tmp, agents=agents, graph=graph)


def with_pool(tmp: Path, content: bytes) -> Path:
    (tmp / "pool.jsonl").write_bytes(content)
    agents = {**RELAY["agents"], "heckler": {"inject": {"from_pool": "solo", "other_problem": True}}}
    graph = {"start": "a", "turns": {"a": {"until": {"tokens": 8}}, "heckler": {}, "b": {"until": {"end": "answer"}}},
             "edges": ["a->heckler", "heckler->b"]}
    return scenario(tmp, agents=agents, graph=graph, pools={"solo": {"files": [str(tmp / "pool.jsonl")]}})


def text_file(tmp: Path, name: str, content: bytes) -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


def fifo(tmp: Path, name: str) -> Path:
    os.mkfifo(tmp / name)
    return tmp / name


def alias_bomb(levels: int = 9) -> bytes:
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def jsonl(*rows: object) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


@dataclass
class Case:
    name: str
    scenario: Callable[[Path], Path]
    says: str


SCENARIO_CASES = [
    Case("utf-16 scenario", lambda t: text_file(t, "s.yaml", "name: relay\n".encode("utf-16")), "UTF-16"),
    Case("latin-1 scenario", lambda t: text_file(t, "s.yaml", "name: caf\xe9\n".encode("latin-1")), "not UTF-8"),
    Case("binary scenario", lambda t: text_file(t, "s.yaml", bytes(range(256)) * 4), "not UTF-8"),
    Case("NUL in scenario", lambda t: text_file(t, "s.yaml", b"name: a\x00b\n"), "NUL"),
    Case("complex key", lambda t: text_file(t, "s.yaml", b"? [a, b]\n: 1\nname: x\n"), "plain name"),
    Case("nesting 2000 deep", lambda t: text_file(t, "s.yaml", b"name: " + b"[" * 2000 + b"]" * 2000 + b"\n"),
         "nesting deeper"),
    Case("alias bomb", lambda t: text_file(t, "s.yaml", alias_bomb()), "aliases are expanded"),
    Case("scenario is a folder", lambda t: t, "not a regular file"),
    Case("scenario is a FIFO", lambda t: fifo(t, "s.yaml"), "not a regular file"),
    Case("scenario is /dev/zero", lambda t: Path("/dev/zero"), "not a regular file"),
    Case("samples 1e20", lambda t: scenario(t, samples=10**20), "less than or equal to 10000"),
    Case("judge workers 100000", lambda t: scenario(t, judge={"workers": 100_000}), "less than or equal to 64"),
]
DATA_CASES = [
    Case("dataset is a folder", lambda t: scenario(t, dataset={"file": str(t)}), "a folder"),
    Case("dataset is a FIFO", lambda t: (fifo(t, "d.jsonl"), with_dataset(t, "d.jsonl", None))[1],
         "not a regular file"),
    Case("dataset missing", lambda t: with_dataset(t, "none.jsonl", None), "no such file"),
    Case("dataset in Latin-1", lambda t: with_dataset(t, "d.jsonl", '{"id": "é"}\n'.encode("latin-1")), "not UTF-8"),
    Case("dataset 5000-digit int", lambda t: with_dataset(t, "d.jsonl", b'{"id": ' + b"9" * 5000 + b"}\n"),
         "invalid JSON"),
    Case("dataset JSON 100k deep", lambda t: with_dataset(t, "d.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
         "invalid JSON"),
    Case("dataset corrupt Parquet", lambda t: with_dataset(t, "d.parquet", b"PAR1" + os.urandom(200) + b"PAR1"),
         "cannot read as Parquet"),
    Case("dataset id a list", lambda t: with_dataset(t, "d.jsonl", jsonl({**GOOD_ROW, "id": [1]})),
         "field `id` must be a string or a number"),
    Case("dataset problem a number", lambda t: with_dataset(t, "d.jsonl", jsonl({**GOOD_ROW, "problem": 7})),
         "field `problem` must be a string"),
    Case("pool garbage bytes", lambda t: with_pool(t, jsonl(POOL_ROW) + b'{"id": "p2", "response": "\xff\xfe"}\n'),
         ":2: not UTF-8"),
    Case('pool "correct": "false"', lambda t: with_pool(t, jsonl(POOL_ROW, {**POOL_ROW, "correct": "false"})),
         ':2: field `correct` must be true, false or null, got "false"'),
    Case("inject file missing", lambda t: with_inject(t, t / "none.txt"), "no such file"),
    Case("inject file binary", lambda t: with_inject(t, text_file(t, "i.txt", b"\x89PNG\x00\x01")), "not text"),
    Case("inject file /dev/zero", lambda t: with_inject(t, Path("/dev/zero")), "not a regular file"),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_fifo()}


def one_error_line(err: str, says: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and says in lines[0], err


@pytest.mark.parametrize("case", SCENARIO_CASES + DATA_CASES, ids=lambda c: c.name)
def test_bad_scenario_and_data_files(case: Case, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = case.scenario(work)
    out = tmp_path / "runs"
    assert main(["validate", str(path)]) == 2
    one_error_line(capsys.readouterr().err, case.says)
    assert main(["simulate", str(path), "--dry-run", "--quiet", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, case.says)
    assert not out.exists() or not any(out.iterdir()), "a failed start leaves no run folder"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--dry-run", "--quiet", "--limit", "1",
                 "--out", str(out)]) == 0
    (run,) = out.iterdir()
    return run


def corrupt(run: Path, name: str, text: str) -> None:
    (run / name).write_text(text)


RUN_CASES: list[tuple[str, Callable[[Path], None], Callable[[Path], list[str]], str]] = [
    ("resume a missing folder", lambda r: None, lambda r: ["simulate", "--resume", str(r / "nope")],
     "no such run folder"),
    ("resume a folder that is no run", lambda r: (r / "MANIFEST.bak").touch(),
     lambda r: ["simulate", "--resume", str(r.parent)], "not a run folder"),
    ("resume a corrupt manifest", lambda r: corrupt(r, "manifest.json", '{"base_dir": '),
     lambda r: ["simulate", "--resume", str(r)], "is corrupt"),
    ("resume a manifest without base_dir", lambda r: corrupt(r, "manifest.json", "[]"),
     lambda r: ["simulate", "--resume", str(r)], "is corrupt"),
    ("report a corrupt summary", lambda r: corrupt(r, "summary.json", "{{"), lambda r: ["report", str(r)],
     "is corrupt"),
    ("report a summary that is a list", lambda r: corrupt(r, "summary.json", "[1]"), lambda r: ["report", str(r)],
     "is corrupt"),
    ("merge a corrupt manifest", lambda r: corrupt(r, "manifest.json", "\x00\x01"),
     lambda r: ["merge", str(r), "--out", str(r.parent / "merged")], "is corrupt"),
    ("show --html over the log", lambda r: None,
     lambda r: ["show", str(r), "--episode", "", "--html", str(r / "events.jsonl")], "refusing to overwrite"),
    ("report --out over the manifest", lambda r: None, lambda r: ["report", str(r), "--out", str(r / "manifest.json")],
     "refusing to overwrite"),
    ("judge a missing folder", lambda r: None, lambda r: ["judge", str(r / "nope")], "not a run folder"),
]


@pytest.mark.parametrize("name,damage,argv,says", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_run_folders(name: str, damage, argv, says: str, finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "box" / finished_run.name
    shutil.copytree(finished_run, run)
    damage(run)
    before = snapshot(tmp_path)
    assert main(argv(run)) == 2
    one_error_line(capsys.readouterr().err, says)
    assert snapshot(tmp_path) == before, "nothing written"


def test_negative_concurrency_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--concurrency", "-4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("expected a positive integer, got '-4'")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
ROW = st.fixed_dictionaries({}, optional={"id": JSON, "problem": JSON, "answer": JSON, "response": JSON,
                                          "correct": JSON, "model": JSON, "gold_answer": JSON})
LINE = st.one_of(ROW.map(lambda r: json.dumps(r).encode()), JSON.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=40))


def validate_only(path: Path, capsys) -> None:
    status = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err
    if status == 2:
        lines = err.strip().splitlines()
        assert lines and all(line.startswith(f"{path}:") for line in lines), err


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=4), target=st.sampled_from(["dataset", "pool"]))
def test_random_data_and_pool_files(tmp_path: Path, capsys, lines: list[bytes], target: str) -> None:
    content = b"\n".join(lines) + b"\n"
    path = with_dataset(tmp_path, "d.jsonl", content) if target == "dataset" else with_pool(tmp_path, content)
    validate_only(path, capsys)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_scenario_bytes(tmp_path: Path, capsys, content: bytes) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    validate_only(path, capsys)
