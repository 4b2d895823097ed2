"""SGLang servers through their native ``POST /generate`` API, with token ids in and out.

Requests carry ``input_ids`` (never text) and explicit sampling parameters, keep special tokens and
stop strings in the output (``skip_special_tokens: false``, ``no_stop_trim: true``) and have their own
``rid`` so that a cancelled request is aborted on the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from collab.engines.base import Completion, EngineError, FinishType, GenerateRequest, Tokenizer
from collab.engines.http.client import (
    DEFAULT_HTTP,
    EngineStats,
    HTTPEngine,
    HTTPSettings,
    RequestFailed,
    answers,
    loads,
    sse_data,
    status_error,
)
from collab.engines.logprobs import TokenLogprob
from collab.engines.tokenizers import tokenizer_for

LAUNCH_HINT = (
    "Start it with `python -m sglang.launch_server --model-path MODEL --port PORT` or `collab serve SCENARIO`."
)
SERVER_FIELDS = (
    "model_path",
    "tokenizer_path",
    "served_model_name",
    "schedule_policy",
    "page_size",
    "radix_eviction_policy",
    "chunked_prefill_size",
    "max_running_requests",
    "max_total_num_tokens",
    "max_req_input_len",
    "context_length",
    "tp_size",
    "dp_size",
    "stream_interval",
    "incremental_streaming_output",
    "enable_deterministic_inference",
    "random_seed",
)
"""``/server_info`` fields worth a manifest; the rest (which may hold secrets such as ``api_key``) is left out."""
MODEL_FIELDS = ("model_path", "tokenizer_path", "weight_version", "is_generation")


class SGLangWire:
    """SGLang's ``/generate``: token ids in and out, SSE streams cumulative or incremental, ``/abort_request``."""

    health_path = "/health"

    def __init__(self, tokenizer: Tokenizer, stats: EngineStats, *, stream: bool = False) -> None:
        self.tokenizer = tokenizer
        self.stats = stats
        self.stream = stream
        self.seeded: set[str] = set()
        """Servers that apply per-request seeds (launched with ``--enable-deterministic-inference``)."""

    def payload(self, request: GenerateRequest, rid: str, *, stream: bool, seeded: bool) -> dict[str, Any]:
        """The ``/generate`` body for ``request``; ``seeded``: send its seed (``sampling_seed``), which
        only servers in deterministic mode apply and servers older than it reject."""
        params: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "no_stop_trim": True,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        if request.stop_token_ids:
            params["stop_token_ids"] = list(request.stop_token_ids)
        if seeded and request.seed is not None:
            params["sampling_seed"] = request.seed
        body = {"input_ids": request.input_ids, "sampling_params": params, "rid": rid, "stream": stream}
        if request.logprobs is not None:  # output positions only: the prompt is not scored
            body |= {"return_logprob": True, "top_logprobs_num": request.logprobs, "logprob_start_len": -1}
        return body

    async def send(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, rid: str,
        *, headers: dict[str, str], warmup: bool,
    ) -> Completion:  # fmt: skip
        """POST ``/generate`` (streamed when configured, never for a warm-up) and parse the answer."""
        stream = self.stream and not warmup
        body = self.payload(request, rid, stream=stream, seeded=url in self.seeded)
        async with session.post(url + "/generate", json=body, headers=headers) as resp:
            if resp.status != 200:
                raise status_error(resp.status, await resp.read(), resp.headers)
            if stream:
                return self.parse(*await self._read_stream(resp))
            return self.parse(loads(await resp.read()), None)

    async def _read_stream(self, resp: aiohttp.ClientResponse) -> tuple[dict[str, Any], list[int]]:
        """The last chunk of an SSE answer and every output id, whether chunks are cumulative or incremental."""
        ids: list[int] = []
        scored: dict[str, list[Any]] = {key: [] for key in LOGPROB_KEYS}
        last: dict[str, Any] | None = None
        async for data in sse_data(resp):
            if data == b"[DONE]":
                break
            chunk = loads(data)
            if not isinstance(chunk, dict):
                raise RequestFailed(f"unexpected stream chunk {str(chunk)[:200]}", kind="bad_response")
            if "error" in chunk:
                raise _stream_error(chunk["error"])
            new = chunk.get("output_ids") or []
            done = (chunk.get("meta_info") or {}).get("completion_tokens")
            # completion_tokens counts every output token so far: a chunk that holds at least
            # that many ids carries them all (cumulative); otherwise it carries the new ones.
            cumulative = isinstance(done, int) and len(new) >= done
            ids = list(new) if cumulative else ids + list(new)
            for key, values in scored.items():
                found = (chunk.get("meta_info") or {}).get(key) or []
                scored[key] = list(found) if cumulative else values + list(found)
            last = chunk
        if last is None or (last.get("meta_info") or {}).get("finish_reason") is None:
            raise RequestFailed("the stream ended before the request finished", kind="torn")
        last["meta_info"].update({key: values for key, values in scored.items() if values})
        return last, ids

    def parse(self, out: Any, streamed_ids: list[int] | None) -> Completion:
        """Map a ``/generate`` answer to a :class:`Completion` (``streamed_ids``: ids gathered from a stream)."""
        if not isinstance(out, dict):
            raise RequestFailed(f"expected one JSON object, got {str(out)[:200]}", kind="bad_response")
        meta: dict[str, Any] = out.get("meta_info") or {}
        try:
            prompt_tokens = int(meta["prompt_tokens"])
            completion_tokens = int(meta["completion_tokens"])
            finish, matched = _finish(meta["finish_reason"])
        except (KeyError, TypeError, ValueError):
            raise RequestFailed(
                "meta_info lacks prompt_tokens, completion_tokens or finish_reason", kind="bad_response"
            ) from None
        ids = streamed_ids if streamed_ids is not None else out.get("output_ids")
        if not isinstance(ids, list):
            raise EngineError("the server returned no output_ids; use a newer SGLang", retryable=False)
        if len(ids) > completion_tokens:  # a known server bug repeats the prompt's tail first
            ids = ids[len(ids) - completion_tokens :]
            self.stats.trimmed_output_ids += 1
        text = out.get("text")
        if streamed_ids is not None or not isinstance(text, str):
            text = self.tokenizer.decode(ids)  # streamed text is cumulative or not depending on the version
        return Completion(
            text=text,
            token_ids=ids,
            finish_reason=finish,
            matched=matched,
            prompt_tokens=prompt_tokens,
            cached_tokens=int(meta.get("cached_tokens") or 0),
            logprobs=_logprobs(meta, len(ids)) if "output_token_logprobs" in meta else None,
        )

    async def healthy(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str]) -> bool:
        """Whether ``/health`` answers."""
        return await answers(session, url + self.health_path, headers)

    async def abort(self, session: aiohttp.ClientSession, url: str, rid: str, *, headers: dict[str, str]) -> None:
        """POST ``/abort_request`` for ``rid``."""
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with session.post(url + "/abort_request", json={"rid": rid}, headers=headers, timeout=timeout) as resp:
            await resp.read()


class SGLangEngine(HTTPEngine):
    """An engine backed by one or more SGLang servers (``python -m sglang.launch_server``)."""

    kind = "sglang"
    launch_hint = LAUNCH_HINT

    def __init__(
        self,
        name: str,
        url: str | None = None,
        urls: Sequence[str] | None = None,
        model: str | None = None,
        tokenizer: str | None = None,
        thinking: bool | None = None,
        stream: bool = False,
        port: int | None = None,
        launch_args: Sequence[str] = (),
        http: HTTPSettings = DEFAULT_HTTP,
    ) -> None:
        """``url``/``urls``: the servers (default ``http://127.0.0.1:PORT``); ``model``: the model path the
        servers run (tokenizer source, and what ``collab serve`` launches); ``tokenizer``: a hub id, a
        folder or a ``.gguf`` file that overrides it; ``http``: timeouts, retries, connections, API key."""
        found = [*(urls or ()), *([url] if url else [])] or ([f"http://127.0.0.1:{port}"] if port else [])
        if not found:
            raise ValueError(f"engine {name!r}: give `url`, `urls` or `port`")
        source = tokenizer or model
        if not source:
            raise ValueError(f"engine {name!r}: give `model` or `tokenizer` (for the token ids it sends)")
        tok, stats = tokenizer_for(source, thinking=thinking), EngineStats()
        self.wire: SGLangWire = SGLangWire(tok, stats, stream=stream)
        super().__init__(name, found, wire=self.wire, stats=stats, tokenizer=tok, http=http, model=model)
        self.port = port
        self.launch_args = list(launch_args)
        self.cache_block = 1
        """Tokens per radix-cache page (``page_size``): cached tokens are reported in whole pages."""

    async def describe(self, url: str) -> dict[str, Any]:
        """The server's version, model and cache settings (its page size becomes :attr:`cache_block`)."""
        info = await self._first_json(url, "/server_info", "/get_server_info")
        model = await self._first_json(url, "/model_info", "/get_model_info")
        out: dict[str, Any] = {"url": url, "version": info.get("version")}
        out.update({k: info[k] for k in SERVER_FIELDS if k in info})
        if "disable_radix_cache" in info:
            out["radix_cache"] = not info["disable_radix_cache"]
        if isinstance(info.get("page_size"), int):
            self.cache_block = max(self.cache_block, info["page_size"])
        if info.get("enable_deterministic_inference"):
            self.wire.seeded.add(url)
        out.update({k: model[k] for k in MODEL_FIELDS if k in model})
        return out

    async def _first_json(self, url: str, *paths: str) -> dict[str, Any]:
        """The first of ``paths`` that answers with a JSON object (newer, then older SGLang names)."""
        for path in paths:
            try:
                status, data = await self.get_json(url + path)
            except (aiohttp.ClientError, TimeoutError):
                continue
            if status == 200 and isinstance(data, dict):
                return data
        return {}


LOGPROB_KEYS = ("output_token_logprobs", "output_top_logprobs")
"""``meta_info`` keys of a ``return_logprob`` answer: per position ``[logprob, id, text]`` and a list of those."""


def _logprobs(meta: dict[str, Any], count: int) -> list[TokenLogprob]:
    """The last ``count`` positions' log-probabilities of a ``return_logprob`` answer."""
    try:
        chosen = meta["output_token_logprobs"][-count:] if count else []
        tops = (meta.get("output_top_logprobs") or [None] * len(chosen))[-count:] if count else []
        return [TokenLogprob(float(c[0]), tuple(float(t[0]) for t in top or ()))
                for c, top in zip(chosen, tops, strict=True)]
    except (TypeError, ValueError, IndexError) as error:
        raise RequestFailed(f"malformed output logprobs: {error}", kind="bad_response") from None


def _finish(reason: Any) -> tuple[FinishType, int | str | None]:
    """SGLang's ``finish_reason`` (``{"type": "stop", "matched": ...}``, ``"length"``, ``"abort"``)."""
    kind = reason.get("type") if isinstance(reason, dict) else reason
    if kind == "stop":
        return "stop", reason.get("matched") if isinstance(reason, dict) else None
    if kind == "length":
        return "length", None
    if kind is None:
        raise ValueError("unfinished")
    return "abort", None


def _stream_error(error: Any) -> RequestFailed:
    """An ``{"error": ...}`` stream event: the streaming form of HTTP 400 unless it says otherwise."""
    message = error.get("message", error) if isinstance(error, dict) else error
    code = error.get("code") or error.get("status_code") if isinstance(error, dict) else None
    if isinstance(code, int) and (code >= 500 or code == 429):
        return RequestFailed(f"server error in stream: {message}", kind="server_error")
    return RequestFailed(f"server error in stream: {message}", kind="server_error", retryable=False)
