"""One episode: walk the turn graph, each turn extending the shared trace (see :mod:`collab.sim.turns`)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collab.data.pools import Pool
from collab.engines.base import THINK_CLOSE, Completion, Engine, GenerateRequest, Tokenizer
from collab.events import EpisodeEnd, EpisodeStart, Event
from collab.judge.answers import AnswerChecker
from collab.scenario.graph import next_writer
from collab.scenario.schema import AgentConfig, EdgeConfig, Scenario, TextCondition
from collab.scenario.seeds import stable_int
from collab.sim.plan import EpisodeSpec
from collab.sim.prompt import user_turn
from collab.sim.requests import CacheLedger, RequestWatcher, send
from collab.sim.turns import TurnOutcome, turn_at
from collab.trace import Trace

DEFAULT_MAX_TOKENS = 32768
_BOXED = re.compile(r"\\boxed\s*\{")


@dataclass
class Episode:
    """Everything one episode needs; ``run()`` emits its events and returns why it ended."""

    spec: EpisodeSpec
    engines: dict[str, Engine]
    pools: dict[str, Pool]
    files: dict[str, str]
    """Texts of ``inject: {file: ...}`` sources, read once per run."""
    emit: Callable[[Event], None]
    watch: RequestWatcher | None = None
    """Told when a request leaves for an engine and when it is back (for live displays)."""
    checker: AnswerChecker | None = None
    """The judge's worker pool, for the answer checks seeding makes (none: those checks are not made)."""
    trace: Trace = field(init=False)
    tokens: int = 0
    """Tokens written and injected so far (seeded context does not count)."""
    ledger: CacheLedger = field(default_factory=CacheLedger)
    nodes: list[str] = field(default_factory=list)
    """The graph node of each span of the trace."""

    def __post_init__(self) -> None:
        scenario = self.scenario
        tokenizers = {engine.tokenizer.key: engine.tokenizer for engine in self.engines.values()}.values()
        user = user_turn(scenario.prompt.template, self.spec.problem.problem, tokenizers, scenario.prompt.system)
        self.trace = Trace(user, scenario.prompt.system)

    @property
    def scenario(self) -> Scenario:
        """The scenario of the episode's sweep point (or its stage's solo scenario)."""
        return self.spec.scenario

    @property
    def max_tokens(self) -> int:
        """The episode's token limit."""
        return self.scenario.limits.max_tokens or DEFAULT_MAX_TOKENS

    def start_event(self) -> EpisodeStart:
        """The ``episode.start`` event."""
        spec = self.spec
        return EpisodeStart(
            episode_id=spec.id, problem_id=spec.problem.id, source=spec.problem.source, sample=spec.sample,
            point=spec.point.values if spec.stage is None else {}, seed=spec.seed, gold=spec.problem.answer,
            problem=spec.problem.problem, prompt=self.trace.user_prompt, stage=spec.stage,
            subsets=list(spec.subsets),
        )

    # ------------------------------------------------------------------ the walk

    async def run(self) -> str:
        """Walk the graph; returns why the episode ended."""
        scenario = self.scenario
        node, turns = scenario.graph.start, 0
        taken: dict[int, int] = {}
        while True:
            outcome = await turn_at(scenario, node).take(self, node)
            if outcome.span is not None:
                self.nodes.append(node)
            turns += 1
            if outcome.eos:
                return "answer"
            if scenario.limits.max_turns is not None and turns >= scenario.limits.max_turns:
                return "max_turns"
            if self.tokens >= self.max_tokens:
                return "max_tokens"
            edge = self._next_edge(node, outcome, taken)
            if edge is None:
                return "graph_end"
            taken[edge] = taken.get(edge, 0) + 1
            node = scenario.graph.edges[edge].target

    def _next_edge(self, node: str, outcome: TurnOutcome, taken: dict[int, int]) -> int | None:
        for index, edge in enumerate(self.scenario.graph.edges):
            if edge.source != node or (edge.repeat is not None and taken.get(index, 0) >= edge.repeat):
                continue
            if self._holds(edge, outcome):
                return index
        return None

    def _holds(self, edge: EdgeConfig, outcome: TurnOutcome) -> bool:
        when = edge.when
        text = outcome.span.text if outcome.span else ""
        if isinstance(when, TextCondition):
            return (when.contains is None or when.contains in text) and (
                when.not_contains is None or when.not_contains not in text
            )
        if when == "always":
            return True
        if when in ("length", "stop", "uncertain"):
            return outcome.trigger in (("tokens", "limit") if when == "length" else (when,))
        close = self.think_close
        if when == "thinking_closed":
            return close in self.trace.text
        answered = outcome.eos or bool(_BOXED.search(self.trace.text.rpartition(close)[2]))
        return answered if when == "answered" else not answered

    # ------------------------------------------------------------------ what turns share

    async def request(self, engine_name: str, request: GenerateRequest) -> tuple[Completion, int, bool]:
        """Send a writer's request and count it: the completion, its ideal cached prefix and whether it
        extends the episode's previous request on that engine."""
        completion = await self.send(engine_name, request)
        ideal, extends = self.ledger.record(engine_name, request, completion, self.engines[engine_name].cache_block)
        return completion, ideal, extends

    async def send(self, engine_name: str, request: GenerateRequest) -> Completion:
        """Send a request outside the episode's cache accounting (an injector's model)."""
        return await send(self.engines, engine_name, request, self.watch)

    def sampling_seed(self, agent: AgentConfig, *parts: object) -> int:
        """The seed of one request: the agent's (else the episode's), the episode and ``parts``."""
        return stable_int(agent.seed if agent.seed is not None else self.spec.seed, self.spec.id, *parts)

    def reference_tokenizer(self, node: str) -> Tokenizer:
        """Tokens of injected text count in the last writer's vocabulary (else the next writer's, else
        the first running writer's)."""
        agents = self.scenario.agents
        name = self.last_writer or next_writer(self.scenario, node) or next(
            n for n, a in agents.items() if a.role == "writer" and a.engine in self.engines)
        return self.engines[agents[name].engine or ""].tokenizer

    def owner_tokenizer(self, author: str, node: str) -> Tokenizer:
        """Pool text counts in its author's tokens when the author writes here, else as injected text does."""
        agents = self.scenario.agents
        own = agents[author].engine if author in agents else None
        if own in self.engines:
            return self.engines[own].tokenizer
        return self.reference_tokenizer(node)

    @property
    def last_writer(self) -> str | None:
        """The agent that generated last (None before any did)."""
        return self.trace.last_writer

    @property
    def think_close(self) -> str:
        """The tag that closes thinking in the last writer's vocabulary."""
        if self.last_writer is None:
            return THINK_CLOSE
        return self.engines[self.scenario.agents[self.last_writer].engine or ""].tokenizer.think_close or THINK_CLOSE

    # ------------------------------------------------------------------ the end

    @property
    def thinking(self) -> bool:
        """Whether the final answer follows ``</think>`` (the last writer's model thinks)."""
        if self.last_writer is None:
            return True
        engine = self.scenario.agents[self.last_writer].engine or ""
        return self.engines[engine].tokenizer.think_open is not None

    def end_event(self, status: str, reason: str, started: float, error: str | None = None) -> EpisodeEnd:
        """The ``episode.end`` event (the runner adds the grade)."""
        ledger = self.ledger
        return EpisodeEnd(
            episode_id=self.spec.id, status=status, error=error, turns=len(self.trace.spans), tokens=self.tokens,
            prompt_tokens=ledger.prompt_tokens, cached_tokens=ledger.cached_tokens,
            ideal_cached_tokens=ledger.ideal_cached_tokens,
            block_ideal_cached_tokens=ledger.block_ideal_cached_tokens, requests=ledger.requests, end_reason=reason,
            wall_s=time.perf_counter() - started,
        )
