"""Counterfactual forks on the scripted engine: outcomes known in advance, events, report, replay, re-judging."""

from __future__ import annotations

import json
from pathlib import Path

from collab.cli import main
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """\
name: forks
dataset: {{file: {data}, limit: 1}}
engines:
  e:
    kind: scripted
    script:
      a: "Let me compute 7 times 8 minus 6. So 56 - 6 = 50.</think>\\n\\nThe answer is $\\\\boxed{{50}}$."
      b: "</think>\\n\\nThe answer is $\\\\boxed{{7}}$."
      c: "</think>\\n\\nThe answer is $\\\\boxed{{9}}$."
agents:
  a: {{engine: e}}
  b: {{engine: e}}
  c: {{engine: e}}
graph:
  start: a
  turns: {{a: {{until: {{tokens: 34, align: token}}}}, b: {{}}}}
  edges: [a->b]
{judge}
"""
FORKS = "judge: {forks: {at: [b], alternatives: [same, c], samples: 3}}"


def simulate(tmp_path: Path, judge: str) -> Path:
    (tmp_path / "s.yaml").write_text(SCENARIO.format(data=ROOT / "scenarios/data/demo.jsonl", judge=judge))
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    return run


def check_forks(run: Path, samples: int = 3, alternatives: int = 2) -> None:
    (record,) = RunStore(run).episodes().values()
    assert [s.agent for s in record.spans] == ["a", "b"] and record.end.correct is False  # b answered 7, gold 50
    forks = {f.label: f for f in record.forks}
    assert {"same", "c"} <= set(forks) and len(forks) == alternatives
    same, other = forks["same"], forks["c"]
    assert same.boundary == other.boundary == 1 and same.actual == "b" and same.previous == "a"
    assert same.alternative == "a" and same.correct == [True] * samples and same.value == 1.0
    assert other.alternative == "c" and other.correct == [False] * samples and other.answers == ["9"] * samples
    assert same.cost["requests"] == samples and same.cost["generated_tokens"] > 0
    assert same.cost["prompt_tokens"] == samples * (record.spans[0].prompt_tokens + record.spans[0].tokens)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["forks"]["forks"] == alternatives
    assert summary["forks"]["continuations"] == summary["forks"]["requests"] == samples * alternatives


def test_forks_during_simulation(tmp_path: Path, capsys) -> None:
    run = simulate(tmp_path, FORKS)
    check_forks(run)
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    table = (run / "report.md").read_text()
    assert "Counterfactual forks" in table
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if "a → b (b)" in line}
    assert "-100%" in rows["same (a)"] and "+0%" in rows["c"]  # a alone would have been right; c as wrong as b
    assert main(["replay", str(run), "--static"]) == 0
    shown = capsys.readouterr().out
    assert "⑂ b took over; had another continued: same (a) 3/3 ✓ · c 0/3 ✓" in shown


def test_judge_adds_forks_to_a_finished_run(tmp_path: Path) -> None:
    """Without ``judge.forks`` in the scenario: every boundary, ``same`` and every writer, 4 samples each (``a`` is
    ``same`` here: forked once)."""
    run = simulate(tmp_path, "")
    (record,) = RunStore(run).episodes().values()
    assert record.forks == []
    assert main(["judge", str(run), "--forks"]) == 0
    check_forks(run, samples=4, alternatives=3)
    assert main(["judge", str(run), "--forks"]) == 0  # again: the old forks are replaced, not doubled
    (record,) = RunStore(run).episodes().values()
    assert len(record.forks) == 3 and {f.label for f in record.forks} == {"same", "b", "c"}
