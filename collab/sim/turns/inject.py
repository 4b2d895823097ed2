"""An injector's turn: fixed text, a file, a pool trajectory's start or a model's words, inserted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collab.engines.base import RequestContext, Sampling, build_request
from collab.events import InjectEvent
from collab.scenario.graph import next_writer
from collab.scenario.schema import AgentConfig, InjectConfig
from collab.scenario.seeds import stable_int
from collab.sim.requests import EpisodeFailed, EpisodeSkipped
from collab.sim.turns.base import TurnOutcome
from collab.trace import Span, cut

if TYPE_CHECKING:
    from collab.sim.episode import Episode


@dataclass
class InjectTurn:
    """``agent`` inserts its ``inject:`` text (an ``injected`` span)."""

    name: str
    agent: AgentConfig

    @property
    def inject(self) -> InjectConfig:
        """The agent's ``inject:`` block."""
        assert self.agent.inject is not None
        return self.agent.inject

    async def take(self, episode: Episode, node: str) -> TurnOutcome:
        """Find the text, frame it and append the span (counted in the reference tokenizer)."""
        inject = self.inject
        index = len(episode.trace.spans)
        body, meta = await self._text(episode, node, index)
        text = inject.prefix + body + inject.suffix
        if inject.new_line and episode.trace.text and not episode.trace.text.endswith("\n"):
            text = "\n" + text
        tokenizer = episode.reference_tokenizer(node)
        span = Span(self.name, "injected", text, meta=meta)
        tokens = len(span.ids_for(tokenizer))
        episode.trace.append(span)
        episode.tokens += tokens
        episode.emit(InjectEvent(
            episode_id=episode.spec.id, index=index, turn=node, agent=self.name, kind="injected", text=text,
            tokens=tokens, meta=meta,
        ))
        return TurnOutcome(span, "inject")

    async def _text(self, episode: Episode, node: str, index: int) -> tuple[str, dict[str, Any]]:
        """The injected text and where it came from."""
        inject = self.inject
        if inject.text is not None:
            return inject.text, {"source": "text"}
        if inject.file is not None:
            return episode.files[inject.file], {"source": "file", "file": inject.file}
        if inject.from_pool is not None:
            return self._from_pool(episode, node)
        assert inject.model is not None
        model = inject.model
        tokenizer = episode.engines[model.engine].tokenizer
        user = model.instruction.replace("{problem}", episode.spec.problem.problem).replace(
            "{trace}", episode.trace.text)
        request = build_request(
            tokenizer, tokenizer.render_prompt(user), model.max_tokens, Sampling(model.temperature, model.top_p),
            seed=episode.sampling_seed(self.agent, index, "inject"),
            context=RequestContext(f"{episode.spec.id}/inject/{index}", self.name, index, "inject"),
        )
        ids = (await episode.send(model.engine, request)).token_ids
        if ids and ids[-1] in tokenizer.eos_token_ids:
            ids = ids[:-1]
        text = tokenizer.decode(ids)
        if tokenizer.think_close and tokenizer.think_close in text:
            text = text.rpartition(tokenizer.think_close)[2]
        return text.strip(), {"source": "model", "engine": model.engine}

    def _from_pool(self, episode: Episode, node: str) -> tuple[str, dict[str, Any]]:
        """The first ``fraction`` of a pool trajectory's thinking, chosen by problem, turn and sample.

        By ``pool_agent`` (default: the writer that reads it next), or with ``other_agent`` by anyone else.
        """
        inject = self.inject
        assert inject.from_pool is not None
        pool = episode.pools[inject.from_pool]
        problem_id = episode.spec.problem.id
        agent = inject.pool_agent or next_writer(episode.scenario, node)
        key = stable_int(episode.scenario.seed, problem_id, node, episode.spec.sample)
        if inject.other_problem:
            chosen = pool.pick_other(problem_id, key, agent, other_agent=inject.other_agent, correct=inject.correct)
        else:
            choices = [t for t in pool.for_problem(problem_id, correct=inject.correct)
                       if agent is None or (t.agent == agent) != inject.other_agent]
            chosen = choices[key % len(choices)] if choices else None
        if chosen is None:
            raise EpisodeFailed(f"pool {inject.from_pool} has nothing to inject into problem {problem_id}")
        text, _ = cut(chosen.thinking, inject.fraction, episode.owner_tokenizer(chosen.agent, node), inject.align)
        if not text and inject.fraction > 0:
            raise EpisodeSkipped(f"the {inject.fraction:.0%} cut of the injected trajectory (problem "
                                 f"{chosen.problem_id}) is empty (no {inject.align} boundary before it)")
        return text, {
            "source": "pool", "pool": inject.from_pool, "source_problem_id": chosen.problem_id,
            "source_agent": chosen.agent, "source_answer": chosen.answer, "fraction": inject.fraction,
        }
