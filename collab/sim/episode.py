"""One episode: walk the turn graph, let writers extend the trace and injectors insert into it."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from collab.data.pools import Pool
from collab.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerateRequest,
    RequestContext,
    Tokenizer,
)
from collab.events import (
    EpisodeEnd,
    EpisodeStart,
    Event,
    InjectEvent,
    SeedEvent,
    TurnEvent,
)
from collab.judge.answers import AnswerChecker
from collab.scenario.graph import next_writer
from collab.scenario.schema import (
    AgentConfig,
    EdgeConfig,
    InjectConfig,
    Scenario,
    SeedConfig,
    TextCondition,
    Trigger,
)
from collab.scenario.seeds import stable_int
from collab.sim.plan import EpisodeSpec
from collab.sim.prompt import user_turn
from collab.sim.seeding import seed_prefix, states_answer
from collab.trace import Span, Trace, cut, ends_sentence

DEFAULT_MAX_TOKENS = 32768
ALIGN_STOPS = {
    "sentence": [". ", ".\n", "? ", "?\n", "! ", "!\n", "\n"],
    "paragraph": ["\n\n"],
}
ALIGN_BUDGET = 64
_BOXED = re.compile(r"\\boxed\s*\{")


class EpisodeFailed(Exception):
    """An episode could not finish (an engine gave up after its retries, a missing pool entry...)."""


class EpisodeSkipped(Exception):
    """An episode whose condition does not exist for its problem (a cut that would be empty): recorded as
    skipped with the reason, never run as another condition."""


@dataclass
class TurnOutcome:
    span: Span | None
    trigger: str
    eos: bool = False


@dataclass
class Episode:
    """Everything one episode needs; ``run()`` emits its events and returns the trace."""

    spec: EpisodeSpec
    engines: dict[str, Engine]
    pools: dict[str, Pool]
    files: dict[str, str]
    """Texts of ``inject: {file: ...}`` sources, read once per run."""
    emit: Callable[[Event], None]
    in_flight: Counter[str] = field(default_factory=Counter)
    """Requests in flight per engine name, shared by every episode of a run (for displays)."""
    checker: AnswerChecker | None = None
    """The judge's worker pool, for the answer checks seeding makes (none: those checks are not made)."""
    trace: Trace = field(init=False)
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    ideal_cached_tokens: int = 0
    requests: int = 0
    _seen: dict[str, list[int]] = field(default_factory=dict)
    _last_writer: str | None = None

    def __post_init__(self) -> None:
        scenario = self.scenario
        tokenizers = {engine.tokenizer.key: engine.tokenizer for engine in self.engines.values()}.values()
        user = user_turn(scenario.prompt.template, self.spec.problem.problem, tokenizers, scenario.prompt.system)
        self.trace = Trace(user, scenario.prompt.system)

    @property
    def scenario(self) -> Scenario:
        return self.spec.scenario

    @property
    def max_tokens(self) -> int:
        return self.scenario.limits.max_tokens or DEFAULT_MAX_TOKENS

    def start_event(self) -> EpisodeStart:
        spec = self.spec
        return EpisodeStart(
            episode_id=spec.id, problem_id=spec.problem.id, sample=spec.sample,
            point=spec.point.values if spec.stage is None else {}, seed=spec.seed, gold=spec.problem.answer,
            problem=spec.problem.problem, source=spec.problem.source, prompt=self.trace.user_prompt, stage=spec.stage,
            subsets=list(spec.subsets),
        )

    # ------------------------------------------------------------------ the walk

    async def run(self) -> str:
        """Walk the graph; returns why the episode ended."""
        scenario = self.scenario
        node, turns = scenario.graph.start, 0
        taken: dict[int, int] = {}
        while True:
            seed = scenario.graph.turns[node].seed
            agent_name = scenario.graph.turns[node].agent or node
            if seed is not None:
                outcome = await self._seed(node, seed)
            elif scenario.agents[agent_name].role == "injector":
                outcome = await self._inject(node, agent_name, scenario.agents[agent_name])
            else:
                outcome = await self._write(node, agent_name, scenario.agents[agent_name])
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
        answered = outcome.eos or bool(_BOXED.search(self.trace.text.rpartition("</think>")[2]))
        return {
            "always": True,
            "length": outcome.trigger in ("tokens", "limit"),
            "stop": outcome.trigger == "stop",
            "thinking_closed": "</think>" in self.trace.text,
            "answered": answered,
            "not_answered": not answered,
        }[when]

    # ------------------------------------------------------------------ writers

    def _sampling_seed(self, agent: AgentConfig, *parts: object) -> int:
        return stable_int(agent.seed if agent.seed is not None else self.spec.seed, self.spec.id, *parts)

    async def _request(self, engine_name: str, request: GenerateRequest) -> tuple[Completion, int, bool]:
        """Send one request, keeping the cache accounting.

        Returns the completion, the ideal cached prefix (what this engine already saw of the
        episode) and whether the request extends the episode's previous request on the engine.
        """
        engine = self.engines[engine_name]
        seen = self._seen.get(engine_name, [])
        ideal = _common_prefix(seen, request.input_ids)
        extends = ideal == len(seen)
        self.in_flight[engine_name] += 1
        try:
            completion = await engine.generate(request)
        except EngineError as error:
            raise EpisodeFailed(f"engine {engine_name}: {error}") from error
        finally:
            self.in_flight[engine_name] -= 1
        self._seen[engine_name] = request.input_ids + completion.token_ids
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens or len(request.input_ids)
        self.cached_tokens += completion.cached_tokens
        self.ideal_cached_tokens += ideal
        completion.prompt_tokens = completion.prompt_tokens or len(request.input_ids)
        return completion, ideal, extends

    def _budget(self, node: str, agent: AgentConfig, tokenizer: Tokenizer) -> tuple[int, str]:
        """Token budget of a turn and the trigger that sets it."""
        until = self.scenario.graph.turns[node].until
        budget, trigger = self.max_tokens - self.tokens, "limit"
        if agent.max_new_tokens is not None and agent.max_new_tokens < budget:
            budget, trigger = agent.max_new_tokens, "limit"
        wanted = self._trigger_tokens(until, tokenizer, node)
        if wanted is not None and wanted <= budget:
            budget, trigger = wanted, "tokens"
        return max(budget, 0), trigger

    def _trigger_tokens(self, until: Trigger, tokenizer: Tokenizer, node: str) -> int | None:
        if until.fraction is None or until.of is None:
            return until.tokens
        ref = until.of
        agent = ref.agent or (self.scenario.graph.turns[node].agent or node)
        pool = self.pools[ref.pool]
        found = pool.for_problem(self.spec.problem.id, agent) or pool.for_problem(self.spec.problem.id)
        if not found:
            raise EpisodeFailed(f"pool {ref.pool} has no trajectory of problem {self.spec.problem.id} for {agent}")
        length = len(tokenizer.encode(found[0].thinking))
        wanted = round(until.fraction * length)
        return wanted if until.tokens is None else min(wanted, until.tokens)

    async def _write(self, node: str, agent_name: str, agent: AgentConfig) -> TurnOutcome:
        assert agent.engine is not None
        engine = self.engines[agent.engine]
        tokenizer = engine.tokenizer
        until = self.scenario.graph.turns[node].until
        index = len(self.trace.spans)
        budget, trigger = self._budget(node, agent, tokenizer)
        if budget == 0:
            return TurnOutcome(None, trigger)
        stops = list(until.stop or [])
        if until.end == "thinking" and tokenizer.think_close:
            stops.append(tokenizer.think_close)
        started = time.perf_counter()
        context = RequestContext(self.spec.id, agent_name, index, "turn")
        request = GenerateRequest(
            input_ids=list(self.trace.input_ids(tokenizer)), max_new_tokens=budget,
            temperature=agent.temperature, top_p=agent.top_p, top_k=agent.top_k,
            seed=self._sampling_seed(agent, index, 0), stop=stops, stop_token_ids=list(tokenizer.eos_token_ids),
            context=context,
        )
        first, ideal, extends = await self._request(agent.engine, request)
        completions = [first]
        ids = list(first.token_ids)
        if first.finish_reason == "length" and trigger == "tokens" and until.align != "token":
            text = tokenizer.decode(ids)
            room = min(ALIGN_BUDGET, self.max_tokens - self.tokens - len(ids))
            if room > 0 and not (ends_sentence(text) if until.align == "sentence" else text.endswith("\n\n")):
                follow = GenerateRequest(
                    input_ids=request.input_ids + ids, max_new_tokens=room, temperature=agent.temperature,
                    top_p=agent.top_p, top_k=agent.top_k, seed=self._sampling_seed(agent, index, 1),
                    stop=stops + ALIGN_STOPS[until.align], stop_token_ids=request.stop_token_ids,
                    context=RequestContext(self.spec.id, agent_name, index, "align"),
                )
                second, more_ideal, more = await self._request(agent.engine, follow)
                ideal += more_ideal
                extends = extends and more
                completions.append(second)
                ids += second.token_ids
        last = completions[-1]
        eos = last.finish_reason == "stop" and isinstance(last.matched, int) and last.matched in tokenizer.eos_token_ids
        if eos and ids and ids[-1] == last.matched:
            ids = ids[:-1]  # the end-of-sequence token is not part of the trace
        if last.finish_reason == "stop" and not eos:
            trigger = "stop" if last.matched in stops else ("align" if last.matched is not None else "yield")
        elif eos:
            trigger = "eos"
        span = Span(agent_name, "generated", tokenizer.decode(ids), {tokenizer.key: ids})
        self.trace.append(span)
        self.tokens += len(ids)
        self._last_writer = agent_name
        self.emit(TurnEvent(
            episode_id=self.spec.id, index=index, turn=node, agent=agent_name, kind="generated", text=span.text,
            ids=span.ids, tokens=len(ids), engine=agent.engine, server=last.server,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            cached_tokens=sum(c.cached_tokens for c in completions),
            ideal_cached_tokens=ideal, requests=len(completions),
            extends=extends, latency_s=time.perf_counter() - started, finish_reason=last.finish_reason,
            matched=last.matched, trigger=trigger,
        ))
        return TurnOutcome(span, trigger, eos)

    # ------------------------------------------------------------------ seeds

    def _owner_tokenizer(self, author: str, node: str) -> Tokenizer:
        """Pool text counts in its author's tokens when the author writes here, else as injected text does."""
        agents = self.scenario.agents
        own = agents[author].engine if author in agents else None
        if own in self.engines:
            return self.engines[own].tokenizer
        return self._reference_tokenizer(node)

    async def _seed(self, node: str, seed: SeedConfig) -> TurnOutcome:
        """Place the start of a pool trajectory of this problem into the trace (a ``seeded`` span).

        The trajectory is chosen by problem, turn and sample, not by sweep point, so every cut of a
        sweep comes from the same trajectory. Seeded tokens are context, not generation: they do not
        count against ``limits.max_tokens``.
        """
        problem = self.spec.problem
        author = seed.agent or next_writer(self.scenario, node) or ""
        found = self.pools[seed.pool].for_problem(problem.id, author, correct=seed.correct)
        if not found:
            raise EpisodeFailed(f"pool {seed.pool} has no {_kind(seed.correct)}trajectory of problem {problem.id} "
                                f"by {author}")
        chosen = found[(stable_int(self.scenario.seed, problem.id, node, author) + self.spec.sample) % len(found)]
        tokenizer = self._owner_tokenizer(author, node)
        text, ids = seed_prefix(chosen, seed, tokenizer)
        if not text and seed.fraction > 0:
            raise EpisodeSkipped(f"the {seed.fraction:.0%} cut of {author}'s trajectory of problem {problem.id} "
                                 f"is empty (no {seed.align} boundary before it)")
        if not text:
            return TurnOutcome(None, "seed")
        index = len(self.trace.spans)
        meta = {
            "source": "pool", "pool": seed.pool, "source_problem_id": chosen.problem_id, "source_agent": author,
            "fraction": seed.fraction, "answer_in_prefix": await states_answer(text, problem.answer, self.checker),
        }
        span = self.trace.append(Span(author, "seeded", text, {tokenizer.key: ids}, meta))
        self.emit(SeedEvent(
            episode_id=self.spec.id, index=index, turn=node, agent=author, kind="seeded", text=text, ids=span.ids,
            tokens=len(ids), meta=meta,
        ))
        return TurnOutcome(span, "seed")

    # ------------------------------------------------------------------ injectors

    def _reference_tokenizer(self, node: str) -> Tokenizer:
        """Tokens of injected text count in the last writer's vocabulary (else the next writer's, else
        the first running writer's)."""
        agents = self.scenario.agents
        name = self._last_writer or next_writer(self.scenario, node) or next(
            n for n, a in agents.items() if a.role == "writer" and a.engine in self.engines)
        return self.engines[agents[name].engine or ""].tokenizer

    async def _inject(self, node: str, agent_name: str, agent: AgentConfig) -> TurnOutcome:
        inject = agent.inject
        assert inject is not None
        index = len(self.trace.spans)
        body, meta = await self._injection_text(node, inject, agent_name, agent, index)
        text = inject.prefix + body + inject.suffix
        if inject.new_line and self.trace.text and not self.trace.text.endswith("\n"):
            text = "\n" + text
        tokenizer = self._reference_tokenizer(node)
        span = Span(agent_name, "injected", text, meta=meta)
        tokens = len(span.ids_for(tokenizer))
        self.trace.append(span)
        self.tokens += tokens
        self.emit(InjectEvent(
            episode_id=self.spec.id, index=index, turn=node, agent=agent_name, kind="injected", text=text,
            tokens=tokens, meta=meta,
        ))
        return TurnOutcome(span, "inject")

    async def _injection_text(self, node: str, inject: InjectConfig, agent_name: str, agent: AgentConfig,
                              index: int) -> tuple[str, dict]:
        if inject.text is not None:
            return inject.text, {"source": "text"}
        if inject.file is not None:
            return self.files[inject.file], {"source": "file", "file": inject.file}
        if inject.from_pool is not None:
            return self._from_pool(node, inject)
        assert inject.model is not None
        model = inject.model
        engine = self.engines[model.engine]
        user = model.instruction.replace("{problem}", self.spec.problem.problem).replace("{trace}", self.trace.text)
        request = GenerateRequest(
            input_ids=engine.tokenizer.render_prompt(user), max_new_tokens=model.max_tokens,
            temperature=model.temperature, top_p=model.top_p, seed=self._sampling_seed(agent, index, "inject"),
            stop_token_ids=list(engine.tokenizer.eos_token_ids),
            context=RequestContext(f"{self.spec.id}/inject/{index}", agent_name, index, "inject"),
        )
        try:
            completion = await engine.generate(request)
        except EngineError as error:
            raise EpisodeFailed(f"engine {model.engine}: {error}") from error
        ids = completion.token_ids
        if ids and ids[-1] in engine.tokenizer.eos_token_ids:
            ids = ids[:-1]
        text = engine.tokenizer.decode(ids)
        if engine.tokenizer.think_close and engine.tokenizer.think_close in text:
            text = text.rpartition(engine.tokenizer.think_close)[2]
        return text.strip(), {"source": "model", "engine": model.engine}

    def _from_pool(self, node: str, inject: InjectConfig) -> tuple[str, dict]:
        """The first ``fraction`` of a pool trajectory's thinking, chosen by problem, turn and sample.

        By ``pool_agent`` (default: the writer that reads it next), or with ``other_agent`` by anyone else.
        """
        assert inject.from_pool is not None
        pool = self.pools[inject.from_pool]
        problem_id = self.spec.problem.id
        agent = inject.pool_agent or next_writer(self.scenario, node)
        key = stable_int(self.scenario.seed, problem_id, node, self.spec.sample)
        if inject.other_problem:
            chosen = pool.pick_other(problem_id, key, agent, other_agent=inject.other_agent, correct=inject.correct)
        else:
            choices = [t for t in pool.for_problem(problem_id, correct=inject.correct)
                       if agent is None or (t.agent == agent) != inject.other_agent]
            chosen = choices[key % len(choices)] if choices else None
        if chosen is None:
            raise EpisodeFailed(f"pool {inject.from_pool} has nothing to inject into problem {problem_id}")
        text, _ = cut(chosen.thinking, inject.fraction, self._owner_tokenizer(chosen.agent, node), inject.align)
        if not text and inject.fraction > 0:
            raise EpisodeSkipped(f"the {inject.fraction:.0%} cut of the injected trajectory (problem "
                                 f"{chosen.problem_id}) is empty (no {inject.align} boundary before it)")
        return text, {
            "source": "pool", "pool": inject.from_pool, "source_problem_id": chosen.problem_id,
            "source_agent": chosen.agent, "source_answer": chosen.answer, "fraction": inject.fraction,
        }

    # ------------------------------------------------------------------ the end

    @property
    def thinking(self) -> bool:
        """Whether the final answer follows ``</think>`` (the last writer's model thinks)."""
        if self._last_writer is None:
            return True
        engine = self.scenario.agents[self._last_writer].engine or ""
        return self.engines[engine].tokenizer.think_open is not None

    def end_event(self, status: str, reason: str, started: float, error: str | None = None) -> EpisodeEnd:
        return EpisodeEnd(
            episode_id=self.spec.id, status=status, error=error, turns=len(self.trace.spans), tokens=self.tokens,
            prompt_tokens=self.prompt_tokens, cached_tokens=self.cached_tokens,
            ideal_cached_tokens=self.ideal_cached_tokens, requests=self.requests, end_reason=reason,
            wall_s=time.perf_counter() - started,
        )


def _common_prefix(a: list[int], b: list[int]) -> int:
    if len(a) <= len(b) and b[: len(a)] == a:
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _kind(correct: bool | None) -> str:
    return {True: "correct ", False: "incorrect ", None: ""}[correct]
