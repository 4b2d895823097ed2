"""Typed events: one JSON object per line of a run's ``events.jsonl``."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
"""A value in [0, 1]; a hand-edited NaN or 2.0 makes its line unreadable (skipped), not a crash."""
Index = Annotated[int, Field(ge=0)]


class Event(BaseModel):
    """What every logged event has: its time."""

    model_config = ConfigDict(extra="allow")
    t: float = Field(default_factory=time.time, allow_inf_nan=False)


class RunStart(Event):
    """A run (or a resumed run) starts."""

    type: Literal["run.start"] = "run.start"
    run_id: str
    scenario: str
    digest: str
    episodes: int
    resumed: bool = False


class PhaseStart(Event):
    """A later phase of a staged run is planned (its episodes were unknown at ``run.start``)."""

    type: Literal["phase.start"] = "phase.start"
    episodes: int


class RunEnd(Event):
    """A run ends: ok, interrupted or failed."""

    type: Literal["run.end"] = "run.end"
    run_id: str
    status: Literal["ok", "interrupted", "failed"] = "ok"


class EpisodeStart(Event):
    """An episode starts: its problem, sweep point, seed and prompt."""

    type: Literal["episode.start"] = "episode.start"
    episode_id: str
    problem_id: str
    sample: int
    point: dict[str, Any] = {}
    seed: int
    gold: str | None = None
    problem: str = ""
    source: str = ""
    """The benchmark the problem comes from (e.g. math500, aime24), for per-benchmark tables."""
    prompt: str = ""
    stage: str | None = None
    subsets: list[str] = []
    """The problem subsets (scenario ``subsets:``) this episode counts in."""


class SpanEvent(Event):
    """A span added to an episode's trace (by a writer's turn, an injector or a seed)."""

    episode_id: str
    index: Index
    """Position of the span in the trace."""
    turn: str
    """The graph node that produced it."""
    agent: str
    kind: Literal["generated", "injected", "seeded"]
    text: str
    ids: dict[str, list[int]] = {}
    tokens: int = 0
    meta: dict[str, Any] = {}


class TurnEvent(SpanEvent):
    """A writer's turn: its text and ids, the engine and the cache accounting."""

    type: Literal["turn"] = "turn"
    engine: str
    server: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    ideal_cached_tokens: int = 0
    requests: int = 1
    extends: bool = True
    """Every request of the turn extended the episode's previous request on that engine."""
    latency_s: float = 0.0
    finish_reason: str = "length"
    matched: int | str | None = None
    trigger: str = ""
    """Which handoff trigger ended the turn: tokens, stop, thinking, answer, limit, eos, uncertain."""
    uncertainty: dict[str, Any] | None = None
    """With an ``uncertain`` trigger: the span's per-token profile and where the trigger fired
    (see :mod:`collab.sim.uncertainty`)."""


class InjectEvent(SpanEvent):
    """An injector's text."""

    type: Literal["inject"] = "inject"


class SeedEvent(SpanEvent):
    """A seed turn's prefix of a pool trajectory."""

    type: Literal["seed"] = "seed"


class EpisodeEnd(Event):
    """An episode ends: why, its totals, and its grade."""

    type: Literal["episode.end"] = "episode.end"
    episode_id: str
    status: Literal["ok", "failed", "skipped"]
    """skipped: the episode's condition cannot be built for its problem (e.g. an empty cut); ``error`` says why."""
    error: str | None = None
    answer: str | None = None
    correct: bool | None = None
    judge_reason: str | None = None
    turns: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    ideal_cached_tokens: int = 0
    block_ideal_cached_tokens: int = 0
    """The ideal rounded down to the engine's cache blocks (what a block-granular cache can report)."""
    requests: int = 0
    end_reason: str = ""
    wall_s: float = 0.0


class JudgeValue(Event):
    """The judge's estimate of the chance of a correct answer at one span boundary."""

    type: Literal["judge.value"] = "judge.value"
    episode_id: str
    boundary: Index
    """Number of spans before the boundary (0 = the bare prompt)."""
    value: Probability | None
    method: str
    samples: int = 0
    detail: dict[str, Any] = {}


class JudgeVerdict(Event):
    """The judge's verdict on a span (derailed, rescued...) or on the episode."""

    type: Literal["judge.verdict"] = "judge.verdict"
    episode_id: str
    span: Index | None = None
    agent: str | None = None
    verdict: str
    """derailed | rescued | neutral for a span; recovered | followed_injection | other_wrong for an episode."""
    before: Probability | None = None
    after: Probability | None = None
    method: str = ""
    detail: dict[str, Any] = {}


class ForkEvent(Event):
    """Counterfactual continuations of an episode from the exact prefix at a handoff boundary."""

    type: Literal["fork"] = "fork"
    episode_id: str
    boundary: int
    """Number of spans before the boundary (the fork continues the trace's first ``boundary`` spans)."""
    turn: str
    """The graph node that actually took the trace at the boundary."""
    actual: str
    """The agent that actually continued."""
    previous: str | None = None
    """The last writer before the boundary (``same`` forks continue with it)."""
    alternative: str
    """The agent continuing in this fork (``same`` resolves to ``previous``)."""
    label: str
    """How the scenario named the alternative: an agent name or ``same``."""
    samples: int
    correct: list[bool | None] = []
    answers: list[str | None] = []
    value: float | None = None
    """Share of the judged continuations that ended correct."""
    cost: dict[str, int] = {}
    """requests, prompt_tokens, cached_tokens, generated_tokens of the fork's continuations."""


AnyEvent = Annotated[
    RunStart | PhaseStart | RunEnd | EpisodeStart | TurnEvent | InjectEvent | SeedEvent | EpisodeEnd | JudgeValue
    | JudgeVerdict | ForkEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(line: str | bytes) -> AnyEvent:
    """One log line as its event."""
    return EVENT_ADAPTER.validate_json(line)
