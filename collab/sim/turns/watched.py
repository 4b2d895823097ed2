"""A writer's generation watched for uncertainty: bounded chunks, cut at the crossing token.

Each chunk asks for log-probabilities and extends the previous request token by token (prefix caches
hit). When the writer's uncertainty crosses the rule's threshold at token ``t``, the tokens from ``t`` on
are discarded: the trace keeps exactly the ids before the crossing, and the next writer draws token ``t``.
A stop string that spans two chunks is found across their boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from collab.engines.base import Completion, GenerateRequest, Tokenizer
from collab.scenario.schema import Uncertain
from collab.sim.requests import EpisodeFailed
from collab.sim.uncertainty import Profile

if TYPE_CHECKING:
    from collab.sim.episode import Episode

STOP_LOOKBACK = 32
"""Tokens before a chunk boundary searched for the start of a stop string that ends after it."""


@dataclass
class Watched:
    """What a watched generation wrote: its requests, the kept ids, and where (if) the trigger fired."""

    completions: list[Completion]
    ids: list[int]
    ideal: int
    extends: bool
    profile: Profile
    at: int | None = None
    crossed: float | None = None
    discarded: int = 0

    @property
    def last(self) -> Completion:
        """The last completion as the turn sees it: a cut reads as running out of budget."""
        last = self.completions[-1]
        return replace(last, finish_reason="length", matched=None) if self.at is not None else last


async def watch(episode: Episode, engine_name: str, request: GenerateRequest, rule: Uncertain,
                seed_of: Callable[[int], int], tokenizer: Tokenizer) -> Watched:
    """Generate up to ``request.max_new_tokens`` in chunks of ``rule.chunk``, stopping at the crossing."""
    done = Watched([], [], 0, True, Profile())
    while len(done.ids) < request.max_new_tokens:
        n = len(done.completions)
        chunk = replace(
            request, input_ids=request.input_ids + done.ids, logprobs=rule.top, seed=seed_of(n),
            max_new_tokens=min(rule.chunk, request.max_new_tokens - len(done.ids)),
            context=replace(request.context, purpose="turn" if n == 0 else "chunk"),
        )
        completion, ideal, extends = await episode.request(engine_name, chunk)
        done.completions.append(completion)
        done.ideal += ideal
        done.extends = done.extends and extends
        start = len(done.ids)
        done.ids += completion.token_ids
        done.profile.extend(completion.logprobs or [])
        if len(done.profile.entropy) != len(done.ids):
            raise EpisodeFailed(f"engine {engine_name} returned no log-probabilities for an uncertain trigger")
        found = done.profile.crossing(rule, start)
        if found is not None:
            done.at, done.crossed = found
            done.discarded = len(done.ids) - done.at
            del done.ids[done.at:]
            done.profile.keep(done.at)
            episode.ledger.cut(engine_name, len(request.input_ids) + done.at)
            return done
        if request.stop and start and (hit := _stop_across(tokenizer, done.ids, start, request.stop)):
            end, matched = hit
            del done.ids[end:]
            done.profile.keep(end)
            episode.ledger.cut(engine_name, len(request.input_ids) + end)
            done.completions[-1] = replace(completion, finish_reason="stop", matched=matched)
            return done
        if completion.finish_reason != "length":
            return done
    return done


def _stop_across(tokenizer: Tokenizer, ids: list[int], boundary: int, stops: list[str]) -> tuple[int, str] | None:
    """``(tokens kept, stop)`` for the first stop string that starts before ``boundary`` and ends after it."""
    base = max(0, boundary - STOP_LOOKBACK)
    before = tokenizer.decode(ids[base:boundary])
    for end in range(boundary + 1, len(ids) + 1):
        text = tokenizer.decode(ids[base:end])
        for stop in stops:
            if stop in text and text.index(stop) + len(stop) > len(before):
                return end, stop
    return None
