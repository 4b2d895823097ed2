"""The engine seam: one small async protocol every inference backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishType = Literal["stop", "length", "abort"]


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

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

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


@dataclass(slots=True)
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: FinishType
    matched: int | str | None = None
    """The stop string or token id that ended generation, when ``finish_reason == "stop"``."""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    server: str | None = None


@runtime_checkable
class Engine(Protocol):
    name: str
    tokenizer: Tokenizer

    async def open(self) -> dict[str, Any]:
        """Get ready (load weights, wait for health) and describe the engine for the manifest."""
        ...

    async def generate(self, request: GenerateRequest) -> Completion: ...

    async def aclose(self) -> None: ...
