"""What the HTTP engines share: one aiohttp session, retries with backoff, sticky routing, warm-up, stats.

:class:`HTTPEngine` owns the plumbing; a :class:`Wire` (one per kind of server, in the manner of
httpx's transports) says how one attempt is sent and read, and how a request is stopped. Every
failure of an attempt is a :class:`RequestFailed` whose ``kind`` decides whether to retry and
whether it counts against the server's health.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import resource
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import aiohttp

from collab.engines.base import (
    Completion,
    EngineError,
    EngineLifecycle,
    GenerateRequest,
    RequestContext,
    Tokenizer,
)
from collab.engines.http import stops

orjson: Any
try:  # the optional fast JSON codec (``collab[fast]``)
    import orjson
except ImportError:
    orjson = None

KEEPALIVE_S = 4.0
"""Idle pooled connections are dropped before SGLang's server (uvicorn, 5 s) closes them."""
MAX_BACKOFF_S = 30.0
FAIL_LIMIT = 3
"""Consecutive failures after which a server is probed, and marked down if the probe fails too."""
DOWN_S = 30.0
"""How long a server marked down receives no new episodes (then it is tried again)."""
HEALTH_POLL_S = 0.25
WARMED_KEYS = 65536
OUTAGE_WAIT_S = 600.0
"""Default of how long a request waits for a server to come back when every server is down."""
OUTAGE_POLL_S = 1.0
OUTAGE_FAULTS = frozenset({"timeout", "connection", "disconnected", "http_5xx"})
"""Failure kinds after which a request checks whether every server is down (an outage) and waits."""
SERVER_FAULTS = frozenset({"timeout", "connection", "torn", "http_5xx"})
"""Failure kinds that say something about the server's health: not 429, bad requests, or a
disconnection before any answer (what an idle keep-alive connection closed by the server gives)."""


class RequestFailed(EngineError):
    """One attempt failed. ``kind``: timeout, connection, disconnected, torn, http_5xx, http_429,
    http_4xx, bad_response, server_error (an error the server reported in a stream)."""

    def __init__(self, message: str, *, kind: str, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class ServerStats:
    """Counters of one server: requests, failures, times marked down."""

    requests: int = 0
    """Attempts sent to this server (warm-ups and retries included)."""
    failures: int = 0
    marked_down: int = 0


@dataclass
class EngineStats:
    """Counters a runner or benchmark reads (``engine.stats``) and writes into its summary."""

    requests: int = 0
    """``generate`` calls."""
    ok: int = 0
    failed: int = 0
    """Calls that raised :class:`EngineError` (after their retries)."""
    cancelled: int = 0
    aborted: int = 0
    """Completions the server ended with ``finish_reason == "abort"``."""
    attempts: int = 0
    retries: int = 0
    warmups: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """As reported by the server, over successful ``generate`` calls (warm-ups excluded)."""
    completion_tokens: int = 0
    warmup_prefill_tokens: int = 0
    """Prompt tokens the warm-up requests made the server compute (not reported as cached)."""
    trimmed_output_ids: int = 0
    """Responses whose ``output_ids`` overlapped the prompt (a known SGLang bug) and were trimmed."""
    outage_waits: int = 0
    """Requests that found every server down and waited for one to come back."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind."""
    servers: dict[str, ServerStats] = field(default_factory=dict)

    @property
    def prefilled_tokens(self) -> int:
        """Prompt tokens the servers had to compute: not cached, plus the warm-ups'."""
        return self.prompt_tokens - self.cached_tokens + self.warmup_prefill_tokens

    def as_dict(self) -> dict[str, Any]:
        """The counters as plain data for the run's summary."""
        out = asdict(self)
        out["errors"] = dict(self.errors)
        out["prefilled_tokens"] = self.prefilled_tokens
        return out


@dataclass(eq=False)
class Server:
    """One server behind an engine, with its counters and health."""

    url: str
    stats: ServerStats
    failures: int = 0
    """Consecutive failures counting against health."""
    down_until: float = 0.0
    probe: asyncio.Future[bool] | None = None


def pool_size(max_connections: int) -> int:
    """Connections the pool may open: ``max_connections``, within half the process's file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(max_connections, soft // 2)) if soft > 0 else max(1, max_connections)


def normalize_url(url: str) -> str:
    """A server URL without its trailing slash."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def dumps(data: Any) -> str:
    """A request body as JSON text (with orjson when it is installed)."""
    return orjson.dumps(data).decode() if orjson is not None else json.dumps(data)


def loads(body: bytes | str) -> Any:
    """JSON from a response body (with orjson when it is installed); a :class:`RequestFailed` for garbage."""
    try:
        return orjson.loads(body) if orjson is not None else json.loads(body)
    except ValueError as e:
        raise RequestFailed(f"unparseable JSON from the server ({e})", kind="bad_response") from None


def error_message(body: bytes) -> str:
    """The message in an error body: ``{"error": {"message"}}``, ``{"message"}``, ``{"detail"}`` or text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:2000]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:2000]
        return str(err)[:2000]
    return str(data)[:2000]


def status_error(status: int, body: bytes, headers: Any) -> RequestFailed:
    """The error of an HTTP status, retryable or not, with the server's ``Retry-After``."""
    message = f"HTTP {status}: {error_message(body) or 'no message'}"
    if status == 429:
        return RequestFailed(message, kind="http_429", retry_after=_seconds(headers.get("Retry-After")))
    if status >= 500:
        return RequestFailed(message, kind="http_5xx")
    if status == 408:
        return RequestFailed(message, kind="timeout")
    return RequestFailed(message, kind="http_4xx", retryable=False)


def transport_error(exc: BaseException, timeout_s: float) -> RequestFailed:
    """The error of a failed connection or read."""
    if isinstance(exc, TimeoutError):
        return RequestFailed(f"no answer within {timeout_s:g}s", kind="timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return RequestFailed(f"response cut short ({exc})", kind="torn")
    if isinstance(exc, aiohttp.InvalidURL):
        return RequestFailed(f"invalid URL {exc}", kind="connection", retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return RequestFailed(f"cannot connect: {exc}", kind="connection")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        # mostly a pooled keep-alive connection that the server had closed: the request never got there
        return RequestFailed(f"connection closed ({type(exc).__name__}: {exc})", kind="disconnected")
    return RequestFailed(f"{type(exc).__name__}: {exc}", kind="connection")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def sse_data(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The payloads of a server-sent-events body's ``data:`` lines, of any length."""
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        start = len(buf)  # the buffer holds no newline before the new bytes
        buf += chunk
        begin, pos = 0, buf.find(b"\n", start)
        while pos != -1:
            line = bytes(buf[begin:pos]).rstrip(b"\r")
            if line.startswith(b"data:"):
                yield line[5:].strip()
            begin, pos = pos + 1, buf.find(b"\n", pos + 1)
        del buf[:begin]
    if buf.startswith(b"data:"):
        yield bytes(buf[5:]).strip()


@dataclass(frozen=True)
class HTTPSettings:
    """How an HTTP engine talks to its servers: the same for every kind of server."""

    timeout_s: float = 600.0
    """Bounds each wait for a server (a whole non-streaming answer, or the gap between streamed chunks)."""
    retries: int = 4
    """Attempts after the first."""
    backoff_s: float = 0.5
    max_connections: int = 4096
    health_timeout_s: float = 300.0
    """How long opening the engine waits for its servers to be healthy."""
    api_key_env: str | None = None
    """The environment variable holding the API key, read at each request and never recorded."""
    outage_wait_s: float = OUTAGE_WAIT_S
    """With every server down, how long a request waits for one to come back."""

    @classmethod
    def pick(cls, options: dict[str, Any]) -> HTTPSettings:
        """The settings among ``options`` (a scenario's engine entry), removed from it."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: options.pop(name) for name in names if name in options})


DEFAULT_HTTP = HTTPSettings()


class Wire(Protocol):
    """One kind of server's dialect: how an attempt is sent and its answer read, how a request stops.

    ``send`` raises :class:`RequestFailed` for a bad answer; transport errors (``aiohttp.ClientError``,
    ``TimeoutError``) may escape it: the engine classifies them.
    """

    health_path: str
    stream: bool
    """Whether answers come as server-sent events."""

    async def send(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, rid: str,
        *, headers: dict[str, str], warmup: bool,
    ) -> Completion:  # fmt: skip
        """Send one attempt of ``request`` to the server at ``url`` and read its answer."""
        ...

    async def abort(self, session: aiohttp.ClientSession, url: str, rid: str, *, headers: dict[str, str]) -> None:
        """Ask the server to stop working on ``rid``."""
        ...

    async def healthy(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str]) -> bool:
        """Whether the server at ``url`` is up (its health check answers)."""
        ...


async def answers(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    """Whether a GET of ``url`` answers 200."""
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status == 200


class HTTPEngine(EngineLifecycle):
    """An engine backed by inference servers over HTTP, speaking ``wire``.

    Routing: each episode sticks to one server (a stable hash of its id); a server that keeps
    failing and fails a health probe is marked down for a while and its episodes move to a live one.
    Warm-up: before the first turn of an episode and before rollouts, the same prompt is sent with
    one new token, once per distinct prompt and server, while the requests that share it wait; then
    they all hit the server's prefix cache instead of each computing the prefix.
    """

    kind: ClassVar[str] = "http"
    launch_hint: ClassVar[str] = ""
    """How to start a server, for the error when none answers."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        *,
        wire: Wire,
        tokenizer: Tokenizer,
        http: HTTPSettings,
        model: str | None = None,
        max_stop_strings: int | None = None,
        stats: EngineStats | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.wire = wire
        self.http = http
        self.max_stop_strings = max_stop_strings
        """Stop strings the server accepts (``None``: any number); the rest are applied here."""
        self.waiting: Counter[str] = Counter()
        """Requests now waiting out an outage, under the engine's name (a runner may share one Counter)."""
        self.tokenizer = tokenizer
        self.stats = stats or EngineStats()
        unique = dict.fromkeys(normalize_url(url) for url in urls)
        self.servers = [Server(url, self.stats.servers.setdefault(url, ServerStats())) for url in unique]
        self._moved: dict[str, int] = {}
        self._episodes: set[str] = set()
        self._warming: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._warmed: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        wait = http.timeout_s
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=wait, sock_read=wait)

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(self, server: Server, request: GenerateRequest, rid: str, *, warmup: bool) -> Completion:
        """Send one attempt; raise :class:`RequestFailed` on any failure."""
        try:
            return await self.wire.send(self.session(), server.url, request, rid, headers=self.headers(), warmup=warmup)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise transport_error(e, self.http.timeout_s) from None

    async def _abort(self, server: Server, rid: str) -> None:
        """Ask the server to stop working on ``rid`` (best effort: it also drops a request whose client left)."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, RuntimeError, EngineError):
            await self.wire.abort(self.session(), server.url, rid, headers=self.headers())

    # -- public ---------------------------------------------------------------------------

    @property
    def generated_tokens(self) -> int:
        """Completion tokens of finished requests (a streamed request counts when it ends)."""
        return self.stats.completion_tokens

    async def generate(self, request: GenerateRequest) -> Completion:
        """One completion, retried with backoff on transient faults; :class:`EngineError` when it fails."""
        if request.n != 1:
            raise EngineError(
                f"engine {self.name!r} returns one completion per request (n={request.n})", retryable=False
            )
        stats = self.stats
        stats.requests += 1
        started = time.perf_counter()
        ctx = request.context
        sent, kept = stops.split(request.stop, self.max_stop_strings)
        if kept:
            request = dataclasses.replace(request, stop=sent)
        try:
            if self._wants_warmup(ctx):
                await self._warm(self._route(ctx.episode_id), request)
            attempt, outage_until = 0, None
            while True:
                server = self._route(ctx.episode_id)
                try:
                    completion = await self._send(server, request, f"{_rid()}-{attempt}", warmup=False)
                    break
                except EngineError as e:
                    outage = None
                    if e.retryable and getattr(e, "kind", None) in OUTAGE_FAULTS:
                        outage_until = outage_until or time.monotonic() + self.http.outage_wait_s
                        outage = await self._ride_out_outage(outage_until)
                        if outage == "back":  # every server was down and one came back: not this request's fault
                            continue
                    if not e.retryable or attempt >= self.http.retries or outage == "over":
                        stats.failed += 1
                        raise EngineError(
                            f"{e} (server {server.url}, {attempt + 1} attempt{'s' * (attempt > 0)})",
                            retryable=e.retryable,
                        ) from e
                    stats.retries += 1
                    await asyncio.sleep(self._backoff(attempt, getattr(e, "retry_after", None)))
                    attempt += 1
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        if kept:
            completion = stops.apply(completion, kept, self.tokenizer)
        completion.latency_s = time.perf_counter() - started
        completion.server = server.url
        stats.ok += 1
        if completion.finish_reason == "abort":
            stats.aborted += 1
        stats.prompt_tokens += completion.prompt_tokens
        stats.cached_tokens += completion.cached_tokens
        stats.completion_tokens += len(completion.token_ids)
        return completion

    @property
    def replicas(self) -> int:
        """The servers behind the engine."""
        return len(self.servers)

    def counters(self) -> dict[str, Any]:
        """:attr:`stats` as a dict."""
        return self.stats.as_dict()

    async def open(self) -> dict[str, Any]:
        """Wait until every server is healthy, then describe the engine and each server (:meth:`describe`)."""
        health = self.wire.health_path
        await asyncio.gather(*(self.wait_healthy(s.url + health, self.launch_hint) for s in self.servers))
        servers = await asyncio.gather(*(self.describe(s.url) for s in self.servers))
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model,
            "tokenizer": self.tokenizer.key,
            "stream": self.wire.stream,
            "urls": [s.url for s in self.servers],
            "servers": servers,
        }

    async def describe(self, url: str) -> dict[str, Any]:
        """What a server says about itself (its kind's engine knows where to ask)."""
        return {"url": url}

    async def aclose(self) -> None:
        """Wait briefly for background work (aborts, probes), then close the session."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- plumbing -------------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The engine's one session (created on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=pool_size(self.http.max_connections), limit_per_host=0, keepalive_timeout=KEEPALIVE_S
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, json_serialize=dumps)
        return self._session

    def headers(self) -> dict[str, str]:
        """Request headers; the API key is read from its environment variable now, never stored."""
        if not self.http.api_key_env:
            return {}
        key = os.environ.get(self.http.api_key_env)
        if not key:
            raise EngineError(
                f"engine {self.name!r}: environment variable {self.http.api_key_env} is not set", retryable=False
            )
        return {"Authorization": f"Bearer {key}"}

    async def get_json(self, url: str, timeout_s: float | None = None) -> tuple[int, Any]:
        """GET ``url``: (status, parsed JSON body or None)."""
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.http.timeout_s)
        async with self.session().get(url, headers=self.headers(), timeout=timeout) as resp:
            body = await resp.read()
        try:
            return resp.status, json.loads(body) if body else None
        except ValueError:
            return resp.status, None

    async def wait_healthy(self, url: str, hint: str) -> None:
        """Poll ``url`` until it answers 200, or raise a clear error at the deadline."""
        deadline = time.monotonic() + self.http.health_timeout_s
        last = "no answer"
        while True:
            try:
                status, _ = await self.get_json(url, timeout_s=max(0.1, min(5.0, deadline - time.monotonic())))
                if status == 200:
                    return
                if status in (401, 403):
                    raise EngineError(
                        f"engine {self.name!r}: {url} refused the API key (HTTP {status})", retryable=False
                    )
                last = f"HTTP {status}" + (" (still starting)" if status == 503 else "")
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"engine {self.name!r}: no healthy server at {url} after {self.http.health_timeout_s:g}s "
                    f"(last: {last}). {hint}",
                    retryable=False,
                )
            await asyncio.sleep(min(HEALTH_POLL_S, max(0.0, deadline - time.monotonic())))

    async def _send(self, server: Server, request: GenerateRequest, rid: str, *, warmup: bool) -> Completion:
        """One attempt with its bookkeeping: stats, server health, aborts on timeout and cancellation."""
        self.stats.attempts += 1
        server.stats.requests += 1
        try:
            completion = await self._attempt(server, request, rid, warmup=warmup)
        except asyncio.CancelledError:
            self._background(self._abort(server, rid))
            raise
        except RequestFailed as e:
            self.stats.errors[e.kind] += 1
            if e.kind == "timeout":
                self._background(self._abort(server, rid))
            if e.kind in SERVER_FAULTS:
                server.stats.failures += 1
                server.failures += 1
                if server.failures >= FAIL_LIMIT and len(self.servers) > 1:
                    await self._probe(server)
            raise
        server.failures = 0
        return completion

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), at least ``Retry-After``."""
        delay = min(MAX_BACKOFF_S, self.http.backoff_s * 2**attempt)
        delay = delay / 2 + random.uniform(0, delay / 2)
        return min(MAX_BACKOFF_S, max(delay, retry_after or 0.0))

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ride_out_outage(self, until: float) -> str:
        """After a server fault: ``"up"`` when some server answers its health check (no outage);
        else wait for one until ``until``: ``"back"`` when one returned, ``"over"`` when time ran out."""
        if await self._any_healthy():
            return "up"
        self.waiting[self.name] += 1
        self.stats.outage_waits += 1
        try:
            while time.monotonic() < until:
                await asyncio.sleep(min(OUTAGE_POLL_S, max(0.0, until - time.monotonic())))
                if await self._any_healthy():
                    for server in self.servers:
                        server.down_until, server.failures = 0.0, 0
                    return "back"
            return "over"
        finally:
            self.waiting[self.name] -= 1

    async def _any_healthy(self) -> bool:
        return any(await asyncio.gather(*(self._healthy(server) for server in self.servers)))

    # -- routing --------------------------------------------------------------------------

    def _route(self, episode_id: str) -> Server:
        """The episode's server: sticky by a stable hash, moved (for good) when its server is down."""
        servers = self.servers
        if len(servers) == 1:
            return servers[0]
        h = zlib.crc32(episode_id.encode())
        index = self._moved.get(episode_id, h % len(servers))
        now = time.monotonic()
        if servers[index].down_until <= now:
            return servers[index]
        live = [i for i, s in enumerate(servers) if s.down_until <= now]
        if not live:
            return servers[index]
        self._moved[episode_id] = live[h % len(live)]
        return servers[self._moved[episode_id]]

    async def _probe(self, server: Server) -> None:
        """Check a failing server's health once for everyone; mark it down if it does not answer."""
        if server.probe is None:
            server.probe = asyncio.ensure_future(self._healthy(server))
        probe = server.probe
        healthy = await asyncio.shield(probe)
        if server.probe is probe:
            server.probe = None
            server.failures = 0
            if not healthy and server.down_until <= time.monotonic():
                server.down_until = time.monotonic() + DOWN_S
                server.stats.marked_down += 1

    async def _healthy(self, server: Server) -> bool:
        check = self.wire.healthy(self.session(), server.url, headers=self.headers())
        try:
            return await asyncio.wait_for(check, min(5.0, self.http.timeout_s))
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    # -- warm-up --------------------------------------------------------------------------

    def _wants_warmup(self, ctx: RequestContext) -> bool:
        """Rollouts, and the first turn of an episode (K samples and sweep points share it)."""
        if ctx.purpose == "rollout":
            return True
        if ctx.purpose != "turn" or ctx.episode_id in self._episodes:
            return False
        self._episodes.add(ctx.episode_id)
        return True

    async def _warm(self, server: Server, request: GenerateRequest) -> None:
        """Have ``server`` compute this prompt once; concurrent requests for it wait for that."""
        key = (server.url, hash(tuple(request.input_ids)))
        if key in self._warmed:
            self._warmed.move_to_end(key)
            return
        future = self._warming.get(key)
        if future is None:
            future = self._warming[key] = asyncio.ensure_future(self._warmup(server, request, key))
        await asyncio.shield(future)

    async def _warmup(self, server: Server, request: GenerateRequest, key: tuple[str, int]) -> None:
        probe = GenerateRequest(request.input_ids, max_new_tokens=1, temperature=0.0, context=request.context)
        try:
            completion = await self._send(server, probe, f"{_rid()}-warmup", warmup=True)
        except EngineError:
            return  # the waiting requests go ahead and meet the fault themselves
        finally:
            del self._warming[key]
        self.stats.warmups += 1
        self.stats.warmup_prefill_tokens += completion.prompt_tokens - completion.cached_tokens
        self._warmed[key] = None
        if len(self._warmed) > WARMED_KEYS:
            self._warmed.popitem(last=False)


def _rid() -> str:
    return f"collab-{os.urandom(8).hex()}"
