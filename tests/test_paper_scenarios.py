"""Stages, pools, subsets and seeds in the scenario language: positioned errors, and a staged run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from collab.cli import main
from collab.log.store import EVENTS, RunStore

BASE = """\
name: t
dataset: {file: data.jsonl}
engines:
  e: {kind: scripted, script: {model: "First step. Then it is 50.</think>\\n\\nThe answer is $\\\\boxed{50}$."}}
agents:
  model: {engine: e}
  distractor: {inject: {from_pool: solo, correct: null, fraction: 0.5, prefix: "Wait. Let me think\\n"}}
pools:
  solo: {stage: solo}
stages:
  solo: {samples: 2}
subsets:
  shared: {pool: solo, agents: [model], min_rate: 1.0}
graph:
  start: own
  turns:
    own: {seed: {pool: solo, fraction: 0.5}}
    distractor: {}
    model: {}
  edges: [own->distractor, distractor->model]
sweep:
  turns.own.seed.fraction: [0.0, 0.5]
"""
DATA = "".join(json.dumps({"id": f"q{i}", "problem": f"Question {i}?", "answer": a}) + "\n"
               for i, a in enumerate(["50", "60", "5"], start=1))

# (name, old, new, where the error points: (text, nth occurrence), field, words expected in the message)
CASES = [
    ("unknown seed pool", "seed: {pool: solo", "seed: {pool: nope", ("nope", 0), "graph.turns.own.seed.pool",
     "unknown pool `nope`"),
    ("seed turn with an agent", "own: {seed:", "own: {agent: model, seed:", ("{agent: model", 0), "graph.turns.own",
     "a seed turn takes no `agent`"),
    ("seed by an agent the stage lacks", "seed: {pool: solo,", "seed: {pool: solo, agent: guide,", ("guide", 0),
     "graph.turns.own.seed.agent", "holds no trajectories by `guide`"),
    ("no writer after the seed", "    model: {}\n  edges: [own->distractor, distractor->model]",
     "  edges: [own->distractor]", ("{pool: solo, fraction", 0), "graph.turns.own.seed", "no writer follows"),
    ("pool with two sources", "solo: {stage: solo}", "solo: {stage: solo, files: [a.jsonl]}", ("{stage", 0),
     "pools.solo", "give one of files, run"),
    ("pool agent without files", "solo: {stage: solo}", "solo: {stage: solo, agent: model}", ("{stage", 0),
     "pools.solo", "`agent` credits `files`"),
    ("unknown stage", "{stage: solo}", "{stage: sol0}", ("sol0", 0), "pools.solo.stage", "unknown stage `sol0`"),
    ("stage agent not a writer", "solo: {samples: 2}", "solo: {samples: 2, agents: [distractor]}",
     ("distractor", 1), "stages.solo.agents[0]", "`distractor` is not a writer"),
    ("unknown subset pool", "shared: {pool: solo", "shared: {pool: pool2", ("pool2", 0), "subsets.shared.pool",
     "unknown pool `pool2`"),
    ("subset agent the stage lacks", "agents: [model]", "agents: [modle]", ("modle", 0), "subsets.shared.agents[0]",
     "holds no trajectories by `modle`"),
    ("rates upside down", "min_rate: 1.0}", "min_rate: 1.0, max_rate: 0.5}", ("{pool: solo, agents", 0),
     "subsets.shared", "above `max_rate`"),
    ("dataset from a stage pool", "dataset: {file: data.jsonl}", "dataset: {pool: solo}", ("solo}", 0),
     "dataset.pool", "filled by a stage"),
    ("other_agent without a pool", "{inject: {from_pool: solo,", "{inject: {text: hi, other_agent: true,",
     ("{text: hi", 0), "agents.distractor.inject", "`other_agent` needs `from_pool`"),
    ("seed fraction out of range", "[0.0, 0.5]", "[0.0, 1.5]", ("1.5", 0),
     "sweep.turns.own.seed.fraction[1]", "invalid scenario"),
]


def position(text: str, marker: str, nth: int) -> str:
    start = -1
    for _ in range(nth + 1):
        start = text.index(marker, start + 1)
    line = text.count("\n", 0, start) + 1
    return f"{line}:{start - (text.rfind(chr(10), 0, start) + 1) + 1}"


@pytest.mark.parametrize("name,old,new,where,field,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_paper_scenario(tmp_path: Path, capsys, name, old, new, where, field, words) -> None:
    assert old in BASE, name
    text = BASE.replace(old, new, 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith(f"{path}:{position(text, *where)}: {field}: "), first
    assert words in first, first


def staged(tmp_path: Path) -> Path:
    (tmp_path / "s.yaml").write_text(BASE)
    (tmp_path / "data.jsonl").write_text(DATA)
    return tmp_path / "s.yaml"


def test_stage_fills_the_pool_that_selects_and_seeds_the_main_episodes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(staged(tmp_path)), "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    records = RunStore(run).episodes()
    solo = [r for r in records.values() if r.start.stage == "solo"]
    main_ = [r for r in records.values() if r.start.stage is None]
    assert Counter(r.start.problem_id for r in solo) == {"q1": 2, "q2": 2, "q3": 2}
    assert all(r.start.point == {} and [s.kind for s in r.spans] == ["generated"] for r in solo)
    assert sorted(r.start.point["turns.own.seed.fraction"] for r in main_) == [0.0, 0.5]
    assert all(r.start.problem_id == "q1" and r.start.subsets == ["shared"] for r in main_)  # only q1 solved 2/2
    for record in main_:
        kinds = [s.kind for s in record.spans]
        assert kinds == (["seeded"] if record.start.point["turns.own.seed.fraction"] else []) + ["injected",
                                                                                                "generated"]
        injected = next(s for s in record.spans if s.kind == "injected")
        assert injected.meta["source_problem_id"] in {"q2", "q3"} and injected.text.startswith("Wait. Let me think\n")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["stages"]["solo"]["model"]["correct"] == 2
    assert summary["stages"]["solo"]["model"]["episodes"] == 6


def test_resume_keeps_stage_episodes_and_plans_the_same_main_episodes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(staged(tmp_path)), "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    store = RunStore(run)
    before = {k for k, r in store.episodes().items() if r.start.stage is None}
    stage = {k for k, r in store.episodes().items() if r.start.stage is not None}
    lines = (run / EVENTS).read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line).get("episode_id") in stage | {None}]
    (run / EVENTS).write_bytes(b"".join(kept[:-1]))  # as if killed after the stage: no main episode, no run.end
    assert main(["simulate", "--resume", str(run), "--quiet"]) == 0
    starts = Counter(e.episode_id for e in store.events() if e.type == "episode.start")
    assert set(starts) == before | stage and set(starts.values()) == {1}


def test_stages_cannot_be_sharded(tmp_path: Path, capsys) -> None:
    args = ["simulate", str(staged(tmp_path)), "--out", str(tmp_path / "runs"), "--quiet", "--shard", "0/2"]
    assert main(args) == 2
    assert "stages cannot be split into shards" in capsys.readouterr().err
