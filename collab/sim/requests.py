"""Sending an episode's requests, and counting how much of each prompt an engine could have cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from collab.engines.base import Completion, Engine, EngineError, GenerateRequest

RequestWatcher = Callable[[str, int], None]
"""Told ``(engine, +1)`` when a request leaves and ``(engine, -1)`` when it is back (for live displays)."""


class EpisodeFailed(Exception):
    """An episode could not finish (an engine gave up after its retries, a missing pool entry...)."""


class EpisodeSkipped(Exception):
    """An episode whose condition does not exist for its problem (a cut that would be empty): recorded as
    skipped with the reason, never run as another condition."""


async def send(engines: dict[str, Engine], engine_name: str, request: GenerateRequest,
               watch: RequestWatcher | None = None) -> Completion:
    """``request`` on one of the episode's engines; an engine that gives up fails the episode."""
    if watch is not None:
        watch(engine_name, 1)
    try:
        return await engines[engine_name].generate(request)
    except EngineError as error:
        raise EpisodeFailed(f"engine {engine_name}: {error}") from error
    finally:
        if watch is not None:
            watch(engine_name, -1)


@dataclass
class CacheLedger:
    """An episode's prompt and cache accounting, request by request.

    The ideal cached prefix of a request is what its engine already saw of the episode (the previous
    request's prompt and completion on that engine); a request extends the episode when it starts
    with all of that.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    ideal_cached_tokens: int = 0
    block_ideal_cached_tokens: int = 0
    """The ideal rounded down to the engines' cache blocks (what a block-granular cache can report)."""
    requests: int = 0
    _seen: dict[str, list[int]] = field(default_factory=dict)

    def record(self, engine_name: str, request: GenerateRequest, completion: Completion,
               block: int = 1) -> tuple[int, bool]:
        """Count one answered request on an engine caching ``block`` tokens at a time; returns its ideal
        cached prefix and whether it extends the episode."""
        seen = self._seen.get(engine_name, [])
        ideal = common_prefix(seen, request.input_ids)
        self._seen[engine_name] = request.input_ids + completion.token_ids
        completion.prompt_tokens = completion.prompt_tokens or len(request.input_ids)
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.cached_tokens += completion.cached_tokens
        self.ideal_cached_tokens += ideal
        self.block_ideal_cached_tokens += block_ideal(ideal, len(seen), len(request.input_ids), block)
        return ideal, ideal == len(seen)

    def cut(self, engine_name: str, keep: int) -> None:
        """The episode keeps only the first ``keep`` tokens of what ``engine_name`` last saw (the rest was
        discarded): the next request extends the episode when it starts with those."""
        del self._seen.get(engine_name, [])[keep:]


def block_ideal(ideal: int, seen: int, prompt: int, block: int) -> int:
    """The ideal cached prefix as a server that caches whole blocks of ``block`` tokens can report it:
    the last token it saw was sampled, never computed, and a prompt's last token is always computed."""
    return max(min(ideal, seen - 1, prompt - 1), 0) // block * block


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    if len(a) <= len(b) and b[: len(a)] == a:
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
