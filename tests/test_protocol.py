"""The paper's protocol: correct distractors, empty cuts skipped with a reason, the answer-in-prefix control."""

from __future__ import annotations

import json
from pathlib import Path

from collab.cli import main
from collab.log.store import RunStore

SCENARIO = """\
name: p
dataset: {pool: solo}
engines:
  e: {kind: scripted, script: {model: "Done.</think>\\n\\nThe answer is $\\\\boxed{1}$."}}
agents:
  model: {engine: e}
  distractor: {inject: {from_pool: solo, fraction: 0.5, new_line: true, prefix: "Wait. Let me think\\n"}}
pools:
  solo: {files: [pool.jsonl], agent: model}
graph:
  start: own
  turns:
    own: {seed: {pool: solo, fraction: 0.5, correct: null}}
    distractor: {}
    model: {}
  edges: [own->distractor, distractor->model]
"""

LONG = "First we set up. Then x is \\boxed{7} for now. Next we check it. Finally it holds.\n</think>\n\\boxed{7}"
ROWS = [
    {"id": "a", "correct": True, "response": LONG},
    {"id": "b", "correct": True, "response": LONG.replace("check", "verify")},
    {"id": "c", "correct": False, "response": LONG.replace("check", "doubt")},
    {"id": "d", "correct": False, "response": LONG.replace("check", "guess")},
    {"id": "e", "correct": True, "response": "one long line of thought with no end at all</think>\\boxed{7}"},
]


def run(tmp_path: Path, *sets: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "s.yaml").write_text(SCENARIO)
    with open(tmp_path / "pool.jsonl", "w") as handle:
        for row in ROWS:
            handle.write(json.dumps({**row, "problem": f"Problem {row['id']}", "gold_answer": "7"}) + "\n")
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet", "--samples", "3",
                 *(arg for s in sets for arg in ("--set", s))]) == 0
    (path,) = list(out.iterdir())
    return RunStore(path).episodes()


def test_distractors_come_from_correct_trajectories_and_empty_cuts_are_skipped(tmp_path: Path) -> None:
    records = run(tmp_path)
    correct = {r["id"] for r in ROWS if r["correct"]}
    sources = [s.meta["source_problem_id"] for r in records.values() for s in r.spans if s.kind == "injected"]
    assert sources and set(sources) <= correct
    skipped = [(r.start.problem_id, r.end.error) for r in records.values() if r.end.status == "skipped"]
    assert all("cut" in reason and "empty" in reason for _, reason in skipped)
    assert {"e"} <= {problem for problem, _ in skipped}  # its own cut is empty in every sample
    # never run as another condition: the model never continues a skipped episode, and it is not graded
    assert all(r.end.correct is None and all(s.kind != "generated" for s in r.spans)
               for r in records.values() if r.end.status == "skipped")
    summary = json.loads((next((tmp_path / "runs").iterdir()) / "summary.json").read_text())
    assert summary["skipped"] == len(skipped) and sum(summary["skip_reasons"].values()) == len(skipped)


def test_any_distractor_on_request_and_the_answer_in_prefix_by_the_graders_rule(tmp_path: Path) -> None:
    records = run(tmp_path, "agents.distractor.inject.correct=null", "graph.turns.own.seed.fraction=0.8")
    sources = {s.meta["source_problem_id"] for r in records.values() for s in r.spans if s.kind == "injected"}
    assert sources & {"c", "d"}
    seeds = [s for r in records.values() for s in r.spans if s.kind == "seeded"]
    assert seeds and all(s.meta["answer_in_prefix"] is True for s in seeds)  # "x is \boxed{7}" is stated
    records = run(tmp_path / "half", "graph.turns.own.seed.fraction=0.5")  # cut before the box: not stated
    assert all(s.meta["answer_in_prefix"] is False for r in records.values() for s in r.spans if s.kind == "seeded")


def test_summary_counts_what_the_judge_cost(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    assert main(["simulate", str(root / "scenarios" / "relay.yaml"), "--dry-run", "--out", str(tmp_path),
                 "--quiet", "--limit", "1"]) == 0
    (path,) = list(tmp_path.iterdir())
    cost = json.loads((path / "summary.json").read_text())["judge"]
    assert list(cost) == ["probe"]  # the shipped relay judges with the probe method
    values = [v for r in RunStore(path).episodes().values() for v in r.values if not v.detail.get("outcome")]
    assert cost["probe"]["boundaries"] == cost["probe"]["requests"] == len(values) > 0  # greedy: one request each
    assert cost["probe"]["tokens"] > 0 and cost["probe"]["prompt_tokens"] > cost["probe"]["tokens"]
