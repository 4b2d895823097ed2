"""Malformed scenarios: each names file:line:column and the field, and exits 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collab.cli import main

BASE = """\
name: t
dataset: {file: data/demo.jsonl, limit: 2}
engines:
  e: {kind: scripted}
agents:
  a: {engine: e, temperature: 0.5}
  b: {engine: e}
graph:
  start: a
  turns:
    a: {until: {tokens: 8}}
    b: {}
  edges: [a->b]
"""

# (name, old, new, "line:column", field, words expected in the message)
CASES = [
    ("yaml syntax", "  edges: [a->b]", "  edges: [a->b", "14:1", "", "invalid YAML"),
    ("unknown top key", "name: t", "name: t\nagnets: {}", "2:1", "agnets", "did you mean `agents`"),
    ("unknown nested key", "{until: {tokens: 8}}", "{until: {tokns: 8}}", "11:17", "graph.turns.a.until.tokns",
     "did you mean `tokens`"),
    ("wrong type", "temperature: 0.5", "temperature: hot", "6:31", "agents.a.temperature", "valid number"),
    ("out of range", "temperature: 0.5", "top_p: 1.5", "6:25", "agents.a.top_p", "less than or equal to 1"),
    ("unknown engine", "b: {engine: e}", "b: {engine: x}", "7:15", "agents.b.engine", "unknown engine `x`"),
    ("unknown agent", "    b: {}", "    b: {agent: zed}", "12:16", "graph.turns.b.agent", "unknown agent `zed`"),
    ("edge to unknown turn", "edges: [a->b]", "edges: [a->b, {from: b, to: q}]", "13:31", "graph.edges[1].to",
     "unknown turn `q`"),
    ("unknown start", "start: a", "start: z", "9:10", "graph.start", "unknown turn `z`"),
    ("unreachable turn", "edges: [a->b]", "edges: []", "12:5", "graph.turns.b", "cannot be reached"),
    ("unbounded cycle", "edges: [a->b]", "edges: [a->b, b->a]", "13:17", "graph.edges[1]", "has no bound"),
    ("missing graph", "graph:\n  start: a\n  turns:\n    a: {until: {tokens: 8}}\n    b: {}\n  edges: [a->b]\n", "",
     "1:1", "graph", "required field is missing"),
    ("missing start", "  start: a\n", "", "9:3", "graph.start", "required field is missing"),
    ("engine kind", "{kind: scripted}", "{kind: magic}", "4:6", "engines.e", "does not match any of the expected tags"),
    ("two inject sources", "b: {engine: e}", "b: {inject: {text: hi, file: x.txt}}", "7:15", "agents.b.inject",
     "exactly one of text, file, from_pool, model"),
    ("edge without arrow", "edges: [a->b]", "edges: [ab]", "13:11", "graph.edges[0]", "from->to"),
    ("duplicate key", "  b: {engine: e}", "  b: {engine: e}\n  a: {engine: e}", "8:3", "", "duplicate key `a`"),
    ("not a mapping", BASE, "- just\n- a list\n", "1:1", "", "a scenario is a mapping"),
    ("unknown pool", "b: {engine: e}", "b: {inject: {from_pool: solo}}", "7:27", "agents.b.inject.from_pool",
     "unknown pool `solo`"),
    ("fraction needs a reference", "{until: {tokens: 8}}", "{until: {fraction: 0.4}}", "11:16",
     "graph.turns.a.until", "needs `of:"),
    ("bad sweep value", "  edges: [a->b]\n", "  edges: [a->b]\nsweep: {agents.a.temperature: [0.1, -3]}\n", "14:37",
     "sweep.agents.a.temperature[1]", "invalid scenario"),
    ("writer without engine", "b: {engine: e}", "b: {temperature: 0.2}", "7:6", "agents.b", "a writer needs `engine:`"),
]


@pytest.mark.parametrize("name,old,new,where,field,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_scenario(tmp_path: Path, capsys, name, old, new, where, field, words) -> None:
    assert old in BASE, name
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace(old, new, 1))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert first.startswith(f"{path}:{where}: "), err
    if field:
        assert f": {field}: " in first, err
    assert words in err, err
    assert "Traceback" not in err


def test_valid_base_and_shipped_scenarios(tmp_path: Path, capsys) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "data").mkdir()  # validate reads the files a scenario names
    (tmp_path / "data" / "demo.jsonl").write_text('{"id": "1", "problem": "p", "answer": "1"}\n')
    shipped = sorted(str(p) for p in Path("scenarios").rglob("*.yaml"))
    assert main(["validate", str(tmp_path / "base.yaml"), *shipped]) == 0, capsys.readouterr().err


def test_cli_process_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("tokens: 8", "tokens: eight"))
    done = subprocess.run([sys.executable, "-m", "collab.cli", "simulate", str(path), "--dry-run"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{path}:11:" in done.stderr and "Traceback" not in done.stderr


def test_dataset_missing_field_names_file_and_line(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "demo.jsonl").write_text('{"id": "1", "problem": "p", "answer": "1"}\n{"id": "2", "problem": "q"}\n')
    (tmp_path / "s.yaml").write_text(BASE)
    assert main(["simulate", str(tmp_path / "s.yaml"), "--dry-run", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'demo.jsonl'}:2: missing field(s) answer" in err
