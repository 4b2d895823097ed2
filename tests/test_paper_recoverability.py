"""Recoverability episodes stitched from the recorded R1-Distill-Qwen-1.5B pool, in Qwen2.5 tokens."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from collab.cli import main
from collab.data.pools import Trajectory
from collab.engines.base import Completion, EngineLifecycle, GenerateRequest
from collab.engines.tokenizers import HFTokenizer, load_tokenizer
from collab.events import Event
from collab.log.store import RunStore
from collab.scenario import load
from collab.sim.episode import Episode
from collab.sim.stages import Schedule
from collab.trace import boundary_before, ends_sentence

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "paper" / "recoverability.yaml"
POOL = "data/trajectories/reasoning/R1-Distill-Qwen-1.5B.jsonl"
TRANSITION = "Wait. Let me think\n"
FRACTIONS = [0.0, 0.2, 0.4, 0.6, 0.8]


class Silent(EngineLifecycle):
    """An engine that ends every turn at once: the trace holds only what was stitched."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.name = "model"
        self.tokenizer = tokenizer

    async def generate(self, request: GenerateRequest) -> Completion:
        eos = self.tokenizer.eos_token_ids[0]
        return Completion("", [eos], "stop", matched=eos)


def overrides(shared: Path, limit: int) -> list[str]:
    return [f"pools.solo={{files: [{shared / POOL}], agent: model}}", "dataset={pool: solo}",
            f"dataset.limit={limit}"]


@pytest.fixture(scope="module")
def stitched(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Schedule, list[Episode], HFTokenizer]:
    tokenizer = load_tokenizer(str(shared / "tokenizers" / "qwen2.5"))
    schedule = Schedule(load(SCENARIO, overrides(shared, 6)), SCENARIO.parent)
    store = RunStore(tmp_path_factory.mktemp("run"))
    (specs,) = list(schedule.phases(store))
    events: list[Event] = []
    episodes = [Episode(spec, {"model": Silent(tokenizer)}, schedule.pools, {}, events.append) for spec in specs]

    async def run_all() -> None:
        for episode in episodes:
            await episode.run()

    asyncio.run(run_all())
    return schedule, episodes, tokenizer


def own(schedule: Schedule, episode: Episode) -> Trajectory:
    (trajectory,) = schedule.pools["solo"].for_problem(episode.spec.problem.id, "model")
    return trajectory


def test_every_selected_problem_at_every_position(stitched) -> None:
    schedule, episodes, _ = stitched
    solved = [p.id for p in schedule.problems if schedule.pools["solo"].for_problem(p.id, "model", correct=True)]
    assert 0 < len(solved) <= 6
    seen = {(e.spec.problem.id, e.spec.point.values["graph.turns.own.seed.fraction"]) for e in episodes}
    assert seen == {(p, f) for p in solved for f in FRACTIONS}
    assert all(set(e.spec.subsets) == {"shared", "individual"} for e in episodes)


def test_own_prefix_is_cut_at_the_sentence_end_before_the_fraction(stitched) -> None:
    schedule, episodes, tokenizer = stitched
    cut = 0
    for episode in episodes:
        fraction = episode.spec.point.values["graph.turns.own.seed.fraction"]
        thinking = own(schedule, episode).thinking
        ids = tokenizer.encode(thinking)
        seeded = [s for s in episode.trace.spans if s.kind == "seeded"]
        if fraction == 0:
            assert seeded == []
            continue
        (span,) = seeded
        assert span.author == "model" and span.meta["source_problem_id"] == episode.spec.problem.id
        assert thinking.startswith(span.text) and ends_sentence(span.text) and "</think>" not in span.text
        assert span.ids[tokenizer.key] == ids[: len(span.ids[tokenizer.key])]  # the owner's own token prefix
        target = len(tokenizer.decode(ids[: round(fraction * len(ids))]))
        end = boundary_before(thinking, target, "sentence")  # the nearest end before it ...
        assert len(span.text) >= end and not span.text[end:].strip()  # ... with the line break after it
        assert fraction - 0.05 <= len(span.ids[tokenizer.key]) / len(ids) <= fraction
        cut += 1
    assert cut > 0, "no episode had an own prefix to check"


def test_transition_then_a_distractor_from_another_problem_and_nothing_after(stitched) -> None:
    schedule, episodes, tokenizer = stitched
    pool = schedule.pools["solo"]
    assert episodes
    for episode in episodes:
        spans = episode.trace.spans
        (index,) = [i for i, s in enumerate(spans) if s.kind == "injected"]
        injected = spans[index]
        before = "".join(s.text for s in spans[:index])
        transition = TRANSITION if before == "" or before.endswith("\n") else "\n" + TRANSITION
        assert injected.text.startswith(transition)
        meta = injected.meta
        assert meta["source_problem_id"] != episode.spec.problem.id and meta["source_agent"] == "model"
        (source,) = pool.for_problem(meta["source_problem_id"], "model")
        assert meta["source_answer"] == source.answer
        body = injected.text[len(transition):]
        assert body and source.thinking.startswith(body) and ends_sentence(body)
        assert len(tokenizer.encode(body)) <= 0.2 * len(tokenizer.encode(source.thinking))
        assert [s.text for s in spans[index + 1:]] == [""]  # only the model's (here empty) continuation
        assert episode.trace.text == before + injected.text


def test_positions_of_a_problem_share_the_trajectory_and_the_distractor(stitched) -> None:
    _, episodes, _ = stitched
    sources: dict[str, set[Any]] = {}
    for episode in episodes:
        (injected,) = [s for s in episode.trace.spans if s.kind == "injected"]
        sources.setdefault(episode.spec.problem.id, set()).add(injected.meta["source_problem_id"])
    assert sources and all(len(found) == 1 for found in sources.values())


def test_dry_run_from_the_recorded_pool_writes_the_table(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [a for o in overrides(shared, 4) for a in ("--set", o)]
    assert main(["simulate", str(SCENARIO), "--dry-run", "--out", str(out), "--quiet", *args]) == 0
    (run,) = list(out.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    tables = summary["twin_tests"]["tables"]
    assert [t["subset"] for t in tables] == ["shared", "individual"]
    assert tables[0]["columns"] == FRACTIONS and [r["model"] for r in tables[0]["rows"]] == ["model"]
    assert tables[0]["rows"][0]["avg"]["n"] == summary["ok"] == 5 * summary["twin_tests"]["problems"]
    selection = json.loads((run / "selection.json").read_text())
    assert selection[0]["model"] == "model" and set(selection[0]["subsets"]) == {"shared", "individual"}
