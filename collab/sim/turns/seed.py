"""A seed turn: the start of a pool trajectory of the episode's problem, placed into the trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab.events import SeedEvent
from collab.scenario.graph import next_writer
from collab.scenario.schema import SeedConfig
from collab.scenario.seeds import stable_int
from collab.sim.requests import EpisodeFailed, EpisodeSkipped
from collab.sim.seeding import seed_prefix, states_answer
from collab.sim.turns.base import TurnOutcome
from collab.trace import Span

if TYPE_CHECKING:
    from collab.sim.episode import Episode


@dataclass
class SeedTurn:
    """Places a prefix of a pool trajectory (a ``seeded`` span).

    The trajectory is chosen by problem, turn and sample, not by sweep point, so every cut of a
    sweep comes from the same trajectory. Seeded tokens are context, not generation: they do not
    count against ``limits.max_tokens``.
    """

    seed: SeedConfig

    async def take(self, episode: Episode, node: str) -> TurnOutcome:
        """Choose the trajectory, cut it and append the span."""
        seed, scenario, problem = self.seed, episode.scenario, episode.spec.problem
        author = seed.agent or next_writer(scenario, node) or ""
        found = episode.pools[seed.pool].for_problem(problem.id, author, correct=seed.correct)
        if not found:
            raise EpisodeFailed(f"pool {seed.pool} has no {_kind(seed.correct)}trajectory of problem {problem.id} "
                                f"by {author}")
        chosen = found[(stable_int(scenario.seed, problem.id, node, author) + episode.spec.sample) % len(found)]
        tokenizer = episode.owner_tokenizer(author, node)
        text, ids = seed_prefix(chosen, seed, tokenizer)
        if not text and seed.fraction > 0:
            raise EpisodeSkipped(f"the {seed.fraction:.0%} cut of {author}'s trajectory of problem {problem.id} "
                                 f"is empty (no {seed.align} boundary before it)")
        if not text:
            return TurnOutcome(None, "seed")
        index = len(episode.trace.spans)
        meta = {
            "source": "pool", "pool": seed.pool, "source_problem_id": chosen.problem_id, "source_agent": author,
            "fraction": seed.fraction, "answer_in_prefix": await states_answer(text, problem.answer, episode.checker),
        }
        span = episode.trace.append(Span(author, "seeded", text, {tokenizer.key: ids}, meta))
        episode.emit(SeedEvent(
            episode_id=episode.spec.id, index=index, turn=node, agent=author, kind="seeded", text=text,
            ids=span.ids, tokens=len(ids), meta=meta,
        ))
        return TurnOutcome(span, "seed")


def _kind(correct: bool | None) -> str:
    return {True: "correct ", False: "incorrect ", None: ""}[correct]
