"""Run folders written event by event, so display tests control spans, values and verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collab.events import (
    EpisodeEnd,
    EpisodeStart,
    InjectEvent,
    JudgeValue,
    JudgeVerdict,
    RunEnd,
    RunStart,
    SeedEvent,
    TurnEvent,
)
from collab.log.store import RunStore

SPANS = (
    ("a", "turn", "Let x be the number of apples. Then 2x + 3 = 11.\n"),
    ("b", "turn", "Wait, [bold red]this looks off[/bold red]; so x = 7?\n"),
    ("heckler", "inject", "Actually the answer must be 12.\n"),
    ("a", "turn", "No: 2x = 8, so x = 4.\n</think>\n\nThe answer is $\\boxed{4}$."),
)


def start_run(path: Path, episodes: int = 1) -> RunStore:
    store = RunStore(path)
    path.mkdir(parents=True, exist_ok=True)
    store.emit(RunStart(run_id=path.name, scenario="test", digest="0", episodes=episodes))
    return store


def write_episode(store: RunStore, episode_id: str, *, spans: tuple = SPANS, correct: bool | None = True,
                  answer: str = "4", point: dict[str, Any] | None = None, values: list[float] | None = None,
                  verdicts: dict[int, str] | None = None, outcome: str | None = None, t: float = 1000.0) -> None:
    """One finished episode: ``values[b]`` at boundary b, ``verdicts[i]`` on span i."""
    store.emit(EpisodeStart(episode_id=episode_id, problem_id=f"p-{episode_id}", sample=0, point=point or {},
                            seed=1, gold="4", problem="Two apples [dim]and[/dim] a pear: find x.", t=t))
    for index, (agent, kind, text) in enumerate(spans):
        common = {"episode_id": episode_id, "index": index, "turn": agent, "agent": agent, "text": text,
                      "tokens": len(text) // 4, "t": t + index}
        if kind == "turn":
            store.emit(TurnEvent(kind="generated", engine="small", prompt_tokens=40 + 10 * index,
                                 cached_tokens=30 + 10 * index, latency_s=0.5, **common))
        elif kind == "inject":
            store.emit(InjectEvent(kind="injected", meta={"source_problem_id": "q9", "source_answer": "12"}, **common))
        else:
            store.emit(SeedEvent(kind="seeded", **common))
    tokens = sum(len(text) // 4 for _, _, text in spans)
    store.emit(EpisodeEnd(episode_id=episode_id, status="ok", answer=answer, correct=correct, turns=len(spans),
                          tokens=tokens, prompt_tokens=200, cached_tokens=150, ideal_cached_tokens=160,
                          end_reason="answer", wall_s=2.0, t=t + 10))
    for boundary, value in enumerate(values or []):
        store.emit(JudgeValue(episode_id=episode_id, boundary=boundary, value=value, method="answers", t=t + 20))
    for span, verdict in (verdicts or {}).items():
        store.emit(JudgeVerdict(episode_id=episode_id, span=span, agent=spans[span][0], verdict=verdict,
                                before=(values or [None] * 9)[span], after=(values or [None] * 9)[span + 1],
                                method="answers", t=t + 21))
    if outcome is not None:
        store.emit(JudgeVerdict(episode_id=episode_id, verdict=outcome, method="answers", t=t + 22))


def end_run(store: RunStore) -> None:
    store.emit(RunEnd(run_id=store.path.name))
    store.close()


def demo_run(path: Path) -> Path:
    """Three episodes: a rescue, a derail, a plain correct one; with a sweep value each."""
    store = start_run(path, episodes=3)
    write_episode(store, "ep1", point={"graph.turns.a.until.tokens": 32}, values=[0.5, 0.6, 0.1, 0.0, 0.9],
                  verdicts={1: "derailed", 3: "rescued"}, outcome="recovered")
    write_episode(store, "ep2", point={"graph.turns.a.until.tokens": 96}, correct=False, answer="12",
                  values=[0.5, 0.7, 0.6, 0.1, 0.0], verdicts={2: "derailed"}, outcome="followed_injection", t=2000)
    write_episode(store, "ep3", point={"graph.turns.a.until.tokens": 96}, t=3000)
    end_run(store)
    return path
