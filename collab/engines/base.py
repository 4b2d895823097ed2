"""The engine seam: one small async protocol every inference backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

from collab.engines.logprobs import TokenLogprob

FinishType = Literal["stop", "length", "abort"]
THINK_CLOSE = "</think>"
"""The tag that ends a model's thinking, as every tokenizer here renders it (``Tokenizer.think_close``)."""


class EngineError(Exception):
    """A request failed. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class EngineStartError(Exception):
    """An engine could not get ready (weights not found, a server that never became healthy...)."""


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids for one model family, plus its prompt layout."""

    key: str
    """Identifies the vocabulary: spans cache their ids per tokenizer key."""
    think_open: str | None
    """The thinking opener (e.g. ``"<think>\\n"``) when the model thinks, else ``None``."""
    think_close: str | None
    eos_token_ids: list[int]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        ...

    def render_prompt(self, user: str, system: str | None = None) -> list[int]:
        """The chat-formatted user turn with the generation prompt (and the thinking opener)."""
        ...


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking: lets engines route (sticky servers), cache and script per episode."""

    episode_id: str = ""
    agent: str = ""
    turn: int = 0
    purpose: str = "turn"  # turn | align | inject | rollout


@dataclass(slots=True)
class GenerateRequest:
    """One generation: the prompt's token ids, the budget, sampling and where to stop."""

    input_ids: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    n: int = 1
    context: RequestContext = field(default_factory=RequestContext)
    logprobs: int | None = None
    """Ask for per-token log-probabilities with this many alternatives per position (``None``: none)."""


@dataclass(slots=True)
class Completion:
    """What an engine generated for one request and why it stopped."""

    text: str
    token_ids: list[int]
    finish_reason: FinishType
    matched: int | str | None = None
    """The stop string or token id that ended generation, when ``finish_reason == "stop"``."""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    server: str | None = None
    logprobs: list[TokenLogprob] | None = None
    """One per token of ``token_ids`` when the request asked for them."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How a writer samples its tokens."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1


def build_request(tokenizer: Tokenizer, input_ids: list[int], max_new_tokens: int, sampling: Sampling, *,
                  seed: int | None, context: RequestContext, stop: list[str] | None = None,
                  logprobs: int | None = None) -> GenerateRequest:
    """The one way requests are made: ``sampling`` from ``input_ids``, stopping at the tokenizer's end of
    sequence (and at any of ``stop``); ``logprobs``: alternatives per position to report."""
    return GenerateRequest(
        input_ids=input_ids, max_new_tokens=max_new_tokens, temperature=sampling.temperature,
        top_p=sampling.top_p, top_k=sampling.top_k, seed=seed, stop=list(stop or []),
        stop_token_ids=list(tokenizer.eos_token_ids), context=context, logprobs=logprobs,
    )


@runtime_checkable
class Engine(Protocol):
    """An inference backend. ``async with engine:`` opens it (``info`` keeps what :meth:`open` said) and
    closes it."""

    name: str
    info: dict[str, Any]
    cache_block: int
    """Tokens per prefix-cache block: a cache reports hits in whole blocks (1: token by token)."""

    @property
    def tokenizer(self) -> Tokenizer:
        """The engine's vocabulary (available once open)."""
        ...

    @property
    def replicas(self) -> int:
        """How many servers share the engine's load: a run's concurrency limit applies per replica."""
        ...

    async def open(self) -> dict[str, Any]:
        """Get ready (load weights, wait for health) and describe the engine for the manifest."""
        ...

    async def generate(self, request: GenerateRequest) -> Completion:
        """One completion; :class:`EngineError` when it fails."""
        ...

    def counters(self) -> dict[str, Any]:
        """What the engine counted so far (requests, prefill, cache, retries) for the run's summary."""
        ...

    async def aclose(self) -> None:
        """Release what :meth:`open` took; safe to call twice."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None: ...


class EngineLifecycle:
    """The context-manager half of :class:`Engine`, shared by every engine: subclasses provide ``open``
    and ``aclose``."""

    info: dict[str, Any] = {}  # noqa: RUF012  (replaced per instance by __aenter__)
    cache_block: int = 1

    async def open(self) -> dict[str, Any]:
        """Get ready and describe the engine (overridden by every engine)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what ``open`` took (overridden by every engine)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            self.info = await self.open()
        except BaseException:
            await self.aclose()  # what a failed open took (a session, a worker) is released all the same
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


def generated_tokens(engine: object) -> int | None:
    """Tokens ``engine`` has generated since it opened, counted while requests run where the engine
    can (``generated_tokens``); ``None`` for engines that do not count."""
    count = getattr(engine, "generated_tokens", None)
    return count if isinstance(count, int) else None
