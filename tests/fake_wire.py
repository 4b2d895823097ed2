"""An in-memory wire for :class:`~collab.engines.http.client.HTTPEngine`: no sockets, answers at once.

Each call is recorded; ``faults`` maps a server URL to the failure kinds its successive attempts
meet (``None``: answer), ``down`` lists servers whose every attempt fails to connect, ``text`` is
what every answer says (as UTF-8 byte ids, for :class:`~collab.engines.tokenizers.ByteTokenizer`)
and ``delay_s`` how long an answer takes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from collab.engines.base import Completion, GenerateRequest
from collab.engines.http.client import RequestFailed

RETRYABLE = {"http_5xx", "http_429", "timeout", "connection", "torn", "disconnected"}


@dataclass
class Call:
    url: str
    rid: str
    request: GenerateRequest
    warmup: bool


@dataclass
class FakeWire:
    faults: dict[str, list[str | None]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    text: str = "one two"
    delay_s: float = 0.0
    health_path: str = "/health"
    stream: bool = False
    calls: list[Call] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a request has been sent."""
    _attempts: Counter[str] = field(default_factory=Counter)

    async def send(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, rid: str,
        *, headers: dict[str, str], warmup: bool,
    ) -> Completion:  # fmt: skip
        self.calls.append(Call(url, rid, request, warmup))
        self.sent.set()
        planned = self.faults.get(url, [])
        attempt = self._attempts[url]
        self._attempts[url] += 1
        fault = "connection" if url in self.down else (planned[attempt] if attempt < len(planned) else None)
        if fault is not None:
            raise RequestFailed(f"injected {fault}", kind=fault, retryable=fault in RETRYABLE)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        ids = list(self.text.encode())[: request.max_new_tokens]
        return Completion(text=bytes(ids).decode(errors="replace"), token_ids=ids, finish_reason="length",
                          prompt_tokens=len(request.input_ids))  # fmt: skip

    async def abort(self, session: aiohttp.ClientSession, url: str, rid: str, *, headers: dict[str, str]) -> None:
        self.aborted.append(rid)

    async def healthy(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str]) -> bool:
        return url not in self.down
