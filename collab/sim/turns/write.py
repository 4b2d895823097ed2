"""A writer's turn: its engine continues the trace until a trigger, then (optionally) to a sentence end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab.engines.base import Completion, RequestContext, Sampling, Tokenizer, build_request
from collab.events import TurnEvent
from collab.scenario.schema import AgentConfig, Trigger
from collab.sim.requests import EpisodeFailed
from collab.sim.turns.base import TurnOutcome
from collab.sim.turns.watched import watch
from collab.trace import Span, ends_sentence

if TYPE_CHECKING:
    from collab.sim.episode import Episode

ALIGN_STOPS = {
    "sentence": [". ", "? ", "! ", "\n"],  # "\n" also ends ".\n": four, the most vLLM accepts by default
    "paragraph": ["\n\n"],
}
ALIGN_BUDGET = 64


@dataclass
class WriteTurn:
    """``agent`` generates on its engine."""

    name: str
    agent: AgentConfig

    async def take(self, episode: Episode, node: str) -> TurnOutcome:
        """Generate up to the turn's budget, align the cut if asked, and append the span."""
        agent, engine_name = self.agent, self.agent.engine
        assert engine_name is not None
        tokenizer = episode.engines[engine_name].tokenizer
        until = episode.scenario.graph.turns[node].until
        index = len(episode.trace.spans)
        budget, trigger = self._budget(episode, node, tokenizer)
        if budget == 0:
            return TurnOutcome(None, trigger)
        stops = list(until.stop or [])
        if until.end == "thinking" and tokenizer.think_close:
            stops.append(tokenizer.think_close)
        started = time.perf_counter()
        sampling = Sampling(agent.temperature, agent.top_p, agent.top_k)
        request = build_request(
            tokenizer, list(episode.trace.input_ids(tokenizer)), budget, sampling,
            seed=episode.sampling_seed(agent, index, 0), stop=stops,
            context=RequestContext(episode.spec.id, self.name, index, "turn"),
        )
        rule = until.uncertain
        watched = None
        if rule is None:
            first, ideal, extends = await episode.request(engine_name, request)
            completions, ids, last = [first], list(first.token_ids), first
        else:
            watched = await watch(episode, engine_name, request, rule,
                                  lambda n: episode.sampling_seed(agent, index, 0, *([n] if n else [])), tokenizer)
            completions, ids, ideal, extends, last = (
                watched.completions, watched.ids, watched.ideal, watched.extends, watched.last)
            if watched.at is not None:
                trigger = "uncertain"
        if last.finish_reason == "length" and trigger in ("tokens", "uncertain") and until.align != "token":
            text = tokenizer.decode(ids)
            room = min(ALIGN_BUDGET, episode.max_tokens - episode.tokens - len(ids))
            if room > 0 and not (ends_sentence(text) if until.align == "sentence" else text.endswith("\n\n")):
                follow = build_request(
                    tokenizer, request.input_ids + ids, room, sampling,
                    seed=episode.sampling_seed(agent, index, 1), stop=stops + ALIGN_STOPS[until.align],
                    context=RequestContext(episode.spec.id, self.name, index, "align"),
                    logprobs=None if rule is None else rule.top,
                )
                second, more_ideal, more = await episode.request(engine_name, follow)
                ideal += more_ideal
                extends = extends and more
                completions = [*completions, second]
                ids += second.token_ids
                last = second
                if watched is not None:
                    watched.profile.extend(second.logprobs or [])
        eos = last.finish_reason == "stop" and isinstance(last.matched, int) and last.matched in tokenizer.eos_token_ids
        if eos and ids and ids[-1] == last.matched:
            ids = ids[:-1]  # the end-of-sequence token is not part of the trace
            if watched is not None:
                watched.profile.keep(len(ids))
        trigger = _trigger(last, eos, stops, trigger)
        if watched is not None and watched.at is not None and not eos:
            trigger = "uncertain"  # also after aligning to the sentence's end
        span = Span(self.name, "generated", tokenizer.decode(ids), {tokenizer.key: ids})
        episode.trace.append(span)
        episode.tokens += len(ids)
        episode.emit(TurnEvent(
            episode_id=episode.spec.id, index=index, turn=node, agent=self.name, kind="generated", text=span.text,
            ids=span.ids, tokens=len(ids), engine=engine_name, server=last.server,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            cached_tokens=sum(c.cached_tokens for c in completions),
            ideal_cached_tokens=ideal, requests=len(completions),
            extends=extends, latency_s=time.perf_counter() - started, finish_reason=last.finish_reason,
            matched=last.matched, trigger=trigger,
            uncertainty=None if watched is None or rule is None else watched.profile.record(
                rule, watched.at, watched.crossed, watched.discarded),
        ))
        return TurnOutcome(span, trigger, eos)

    def _budget(self, episode: Episode, node: str, tokenizer: Tokenizer) -> tuple[int, str]:
        """Token budget of the turn and the trigger that sets it."""
        until = episode.scenario.graph.turns[node].until
        budget, trigger = episode.max_tokens - episode.tokens, "limit"
        if self.agent.max_new_tokens is not None and self.agent.max_new_tokens < budget:
            budget, trigger = self.agent.max_new_tokens, "limit"
        wanted = _trigger_tokens(episode, until, tokenizer, node)
        if wanted is not None and wanted <= budget:
            budget, trigger = wanted, "tokens"
        return max(budget, 0), trigger


def _trigger(last: Completion, eos: bool, stops: list[str], trigger: str) -> str:
    """What ended the turn: the budget's trigger, unless the model stopped first."""
    if last.finish_reason == "stop" and not eos:
        return "stop" if last.matched in stops else ("align" if last.matched is not None else "yield")
    return "eos" if eos else trigger


def _trigger_tokens(episode: Episode, until: Trigger, tokenizer: Tokenizer, node: str) -> int | None:
    """The tokens ``until`` asks for: fixed, or a fraction of a pool trajectory's length."""
    if until.fraction is None or until.of is None:
        return until.tokens
    ref = until.of
    agent = ref.agent or (episode.scenario.graph.turns[node].agent or node)
    pool = episode.pools[ref.pool]
    problem_id = episode.spec.problem.id
    found = pool.for_problem(problem_id, agent) or pool.for_problem(problem_id)
    if not found:
        raise EpisodeFailed(f"pool {ref.pool} has no trajectory of problem {problem_id} for {agent}")
    length = len(tokenizer.encode(found[0].thinking))
    wanted = round(until.fraction * length)
    return wanted if until.tokens is None else min(wanted, until.tokens)
