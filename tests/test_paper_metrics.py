"""Twin tests end to end on the scripted engine: known outcomes give the exact paper-style tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collab.cli import main
from collab.engines.base import GenerateRequest
from collab.engines.scripted import ScriptedEngine
from collab.report.paper_tables import paper_tables

GOLD = {"p1": "11", "p2": "22", "p3": "33", "p4": "44"}

RECOVERABILITY = """\
name: rec
dataset: {pool: solo}
engines:
  e: {kind: scripted}
agents:
  model: {engine: e}
  distractor: {inject: {from_pool: solo, fraction: 0.2, new_line: true, prefix: "Wait. Let me think\\n"}}
pools:
  solo: {files: [pool.jsonl]}
subsets:
  shared: {pool: solo, agents: [model], min_rate: 1.0}
graph:
  start: own
  turns:
    own: {seed: {pool: solo, fraction: 0.0}}
    distractor: {}
    model: {}
  edges: [own->distractor, distractor->model]
sweep:
  turns.own.seed.fraction: [0.0, 0.2, 0.4, 0.6, 0.8]
"""

GUIDABILITY = """\
name: gui
dataset: {pool: solo}
engines:
  e: {kind: scripted}
agents:
  model: {engine: e}
pools:
  solo: {files: [pool.jsonl]}
subsets:
  individual: {pool: solo, max_rate: 0.125}
  control: {pool: solo, min_rate: 1.0}
graph:
  start: guidance
  turns:
    guidance: {seed: {pool: solo, agent: guide, fraction: 0.2}}
    model: {}
  edges: [guidance->model]
sweep:
  turns.guidance.seed.fraction: [0.2, 0.4, 0.6, 0.8]
"""


def steps(author: str, problem: str, derive_at: int | None = None) -> str:
    """Ten 16-byte sentences (byte tokens: a cut at 0.4 keeps exactly four), answer after the thinking."""
    lines = [f"{author[:5]:5} {problem} st {i}.\n" if i != derive_at else f"So x = \\boxed{{{GOLD[problem]}}}.\n"
             for i in range(10)]
    return "".join(lines) + f"</think>\n\nThe answer is $\\boxed{{{GOLD[problem]}}}$."


def write_pool(folder: Path, rows: list[dict]) -> None:
    with open(folder / "pool.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps({"problem": f"Problem {row['id']}: find x.", "gold_answer": GOLD[row["id"]], **row})
                         + "\n")


def answer_with(rule):
    """A scripted model whose final answer ``rule(problem, trace)`` decides."""

    def respond(request: GenerateRequest, trace: str) -> str:
        problem = re.search(r"Problem (p\d)", trace).group(1)
        return f"Done.</think>\n\nThe answer is $\\boxed{{{rule(problem, trace)}}}$."

    return lambda name, config: ScriptedEngine(name, responder=respond)


def run(folder: Path, scenario: str, monkeypatch: pytest.MonkeyPatch, rule) -> dict:
    (folder / "s.yaml").write_text(scenario)
    monkeypatch.setattr("collab.sim.runner.build_engine", answer_with(rule))
    out = folder / "runs"
    assert main(["simulate", str(folder / "s.yaml"), "--out", str(out), "--quiet"]) == 0
    (path,) = list(out.iterdir())
    return json.loads((path / "summary.json").read_text())


def test_recoverability_table_and_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pool(tmp_path, [{"id": p, "model": "model", "correct": True, "response": steps("model", p)} for p in GOLD])

    def rule(problem: str, trace: str) -> str:
        """Recovers once at least 4 of its own steps precede the distractor; never on p4; else follows it."""
        if problem == "p4":
            return "0"
        if trace.count(f"model {problem} st") >= 4:
            return GOLD[problem]
        (followed,) = set(re.findall(r"model (p\d) st", trace)) - {problem}
        return GOLD[followed]

    summary = run(tmp_path, RECOVERABILITY, monkeypatch, rule)
    (table,) = summary["twin_tests"]["tables"]
    assert table["subset"] == "shared" and table["columns"] == [0.0, 0.2, 0.4, 0.6, 0.8]
    (row,) = table["rows"]
    assert [(c["correct"], c["n"]) for c in row["cells"]] == [(0, 4), (0, 4), (3, 4), (3, 4), (3, 4)]
    assert (row["avg"]["correct"], row["avg"]["n"], row["avg"]["accuracy"]) == (9, 20, 0.45)
    rendered, outcomes = paper_tables(summary)
    assert rendered.columns == ["model", "0%", "20%", "40%", "60%", "80%", "Avg"]
    assert rendered.rows == [["model", "0.0 [0.0–49.0]", "0.0 [0.0–49.0]", "75.0 [30.1–95.4]", "75.0 [30.1–95.4]",
                              "75.0 [30.1–95.4]", "45.0 [25.8–65.8]"]]
    assert [row[:3] for row in outcomes.rows] == [["model", "recovered", "0.0 [0.0–49.0]"],
                                                  ["model", "followed", "75.0 [30.1–95.4]"],
                                                  ["model", "other wrong", "25.0 [4.6–69.9]"]]
    assert [c["outcomes"]["followed_injection"] for c in row["cells"]] == [3, 3, 0, 0, 0]


def test_guidability_table_with_answers_in_guide_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"id": p, "model": "model", "correct": p == "p4", "response": steps("model", p)} for p in GOLD]
    rows += [{"id": p, "model": "guide", "correct": True, "response": steps("guide", p, derive_at=6)} for p in GOLD]
    write_pool(tmp_path, rows)

    def rule(problem: str, trace: str) -> str:
        """Solves it when the guide showed at least six of its steps."""
        return GOLD[problem] if trace.count(f"guide {problem} st") + trace.count("So x =") >= 6 else "0"

    summary = run(tmp_path, GUIDABILITY, monkeypatch, rule)
    individual, control = summary["twin_tests"]["tables"]
    assert (individual["subset"], control["subset"]) == ("individual", "control")
    (row,) = individual["rows"]
    assert [(c["correct"], c["n"]) for c in row["cells"]] == [(0, 3), (0, 3), (3, 3), (3, 3)]
    assert [c["answer_in_prefix"] for c in row["cells"]] == [0.0, 0.0, 0.0, 1.0]
    assert (row["avg"]["accuracy"], row["avg"]["answer_in_prefix"]) == (0.5, 0.25)
    assert [(c["correct"], c["n"]) for c in control["rows"][0]["cells"]] == [(0, 1), (0, 1), (1, 1), (1, 1)]
    rendered = paper_tables(summary)[0]
    assert [cell.split(" [")[0] + cell[cell.index("]") + 1:] for cell in rendered.rows[0][1:]] == [
        "0.0 (0.0)", "0.0 (0.0)", "100.0 (0.0)", "100.0 (100.0)", "50.0 (25.0)"]
