"""Sending an episode's requests, and counting how much of each prompt an engine could have cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from collab.engines.base import Completion, Engine, EngineError, GenerateRequest

RequestWatcher = Callable[[str, int], None]
"""Told ``(engine, +1)`` when a request leaves and ``(engine, -1)`` when it is back (for live displays)."""


class EpisodeFailed(Exception):
    """An episode could not finish (an engine gave up after its retries, a missing pool entry...)."""


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
    requests: int = 0
    _seen: dict[str, list[int]] = field(default_factory=dict)

    def record(self, engine_name: str, request: GenerateRequest, completion: Completion) -> tuple[int, bool]:
        """Count one answered request; returns its ideal cached prefix and whether it extends the episode."""
        seen = self._seen.get(engine_name, [])
        ideal = common_prefix(seen, request.input_ids)
        self._seen[engine_name] = request.input_ids + completion.token_ids
        completion.prompt_tokens = completion.prompt_tokens or len(request.input_ids)
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.cached_tokens += completion.cached_tokens
        self.ideal_cached_tokens += ideal
        return ideal, ideal == len(seen)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    if len(a) <= len(b) and b[: len(a)] == a:
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
