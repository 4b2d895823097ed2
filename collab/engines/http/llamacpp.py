"""llama.cpp's ``llama-server`` through its native ``POST /completion`` API, with token ids in and out.

The prompt is sent as token ids and ``return_tokens`` gives the exact output ids; ``stop_type``
(``eos``, ``word``, ``limit``) and ``stopping_word`` give the finish reason; ``timings.cache_n`` the
prompt tokens reused from the slot's cache (``tokens_cached`` counts every token the slot holds
afterwards, output included, so it is not a hit count). Cancelling closes the connection: a streamed
request stops at the server's next write; a non-streamed one runs to its end (the server polls the
socket, but did not see it closed in tests/test_llamacpp_server.py).

Two quirks are worked around here. With ``n_probs`` and a stop string that matched, a non-streamed
answer leaves out the log-probabilities of the stop string's tokens: requests that want
log-probabilities apply their stop strings here instead. A stream sends no id for a token that ends
inside a UTF-8 character (it is never sent alone): such an answer is asked for again, unstreamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from collab.engines.base import Completion, FinishType, GenerateRequest, Tokenizer
from collab.engines.http import stops
from collab.engines.http.client import (
    DEFAULT_HTTP,
    HTTPEngine,
    HTTPSettings,
    RequestFailed,
    answers,
    error_message,
    loads,
    sse_data,
    status_error,
)
from collab.engines.logprobs import TokenLogprob
from collab.engines.tokenizers import tokenizer_for

LAUNCH_HINT = (
    "Start it with `llama-server -m MODEL.gguf --port PORT -np SLOTS -c CONTEXT` "
    "(`python tools/build_llama_server.py` builds it)."
)
SAMPLERS = ["top_k", "temperature", "top_p"]
"""The sampling chain, in the order vLLM and SGLang apply it (llama.cpp's default also has min-p,
typical-p, XTC and DRY, and applies the temperature last)."""


class LlamaCppWire:
    """``/completion`` with token-id prompts, ``return_tokens``, ``n_probs``; SSE streams of one token each."""

    health_path = "/health"

    def __init__(self, tokenizer: Tokenizer, *, stream: bool = False) -> None:
        self.tokenizer = tokenizer
        self.stream = stream

    def payload(self, request: GenerateRequest, *, stream: bool) -> dict[str, Any]:
        """The ``/completion`` body for ``request`` (its stop strings left out when it wants log-probabilities)."""
        body: dict[str, Any] = {
            "prompt": request.input_ids,
            "n_predict": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": max(0, request.top_k),
            "samplers": SAMPLERS,
            "cache_prompt": True,
            "return_tokens": True,
            "stream": stream,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop and request.logprobs is None:
            body["stop"] = list(request.stop)
        if request.logprobs is not None:  # the model's own distribution, before sampling
            body |= {"n_probs": request.logprobs, "post_sampling_probs": False}
        return body

    async def send(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, rid: str,
        *, headers: dict[str, str], warmup: bool,
    ) -> Completion:  # fmt: skip
        """POST ``/completion`` (streamed when configured, never for a warm-up) and parse the answer; a
        stream that left out the ids of some tokens is asked for again, unstreamed."""
        if self.stream and not warmup:
            out = await self._post(session, url, request, headers, stream=True)
            if len(out["tokens"]) == out.get("tokens_predicted"):
                return self.parse(out, request)
        return self.parse(await self._post(session, url, request, headers, stream=False), request)

    async def _post(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, headers: dict[str, str],
        *, stream: bool,
    ) -> Any:  # fmt: skip
        body = self.payload(request, stream=stream)
        async with session.post(url + "/completion", json=body, headers=headers) as resp:
            if resp.status != 200:
                raise status_error(resp.status, await resp.read(), resp.headers)
            return await _read_stream(resp) if stream else loads(await resp.read())

    def parse(self, out: Any, request: GenerateRequest) -> Completion:
        """Map a ``/completion`` answer to a :class:`Completion`, cut at its first stop id, its stop strings
        applied when they were not sent."""
        if not isinstance(out, dict) or out.get("stop") is not True:
            raise RequestFailed(f"not a finished /completion answer: {str(out)[:200]}", kind="bad_response")
        ids = out.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise RequestFailed("the answer holds no token ids (return_tokens)", kind="bad_response")
        scored = _logprobs(out.get("completion_probabilities"), len(ids)) if request.logprobs is not None else None
        finish, matched = _finish(out.get("stop_type"), out.get("stopping_word"), ids)
        cut = next((i for i, token in enumerate(ids) if token in request.stop_token_ids), None)
        if cut is not None:  # also a stop id that is no end-of-generation token to the server
            ids, finish, matched = ids[: cut + 1], "stop", ids[cut]
        completion = Completion(
            text=self.tokenizer.decode(ids),
            token_ids=ids,
            finish_reason=finish,
            matched=matched,
            prompt_tokens=int(out.get("tokens_evaluated") or len(request.input_ids)),
            cached_tokens=int((out.get("timings") or {}).get("cache_n") or 0),
            logprobs=scored[: len(ids)] if scored is not None else None,
        )
        if request.stop and request.logprobs is not None:
            completion = stops.apply(completion, request.stop, self.tokenizer)
        return completion

    async def healthy(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str]) -> bool:
        """Whether ``/health`` answers (503 while the model loads)."""
        return await answers(session, url + self.health_path, headers)

    async def abort(self, session: aiohttp.ClientSession, url: str, rid: str, *, headers: dict[str, str]) -> None:
        """Nothing to send: llama-server has no abort endpoint; a stream stops when its connection closes."""


class LlamaCppEngine(HTTPEngine):
    """An engine backed by one or more llama.cpp servers (``llama-server``)."""

    kind = "llamacpp"
    launch_hint = LAUNCH_HINT

    def __init__(
        self,
        name: str,
        url: str | None = None,
        urls: Sequence[str] | None = None,
        model: str | None = None,
        tokenizer: str | None = None,
        thinking: bool | None = None,
        stream: bool = True,
        http: HTTPSettings = DEFAULT_HTTP,
    ) -> None:
        """``url``/``urls``: the servers; ``model``: the ``.gguf`` file they serve (or its hub id), the tokenizer
        source unless ``tokenizer`` names one; ``http``: timeouts, retries, connections, API key."""
        found = [*(urls or ()), *([url] if url else [])]
        if not found:
            raise ValueError(f"engine {name!r}: give `url` or `urls`")
        source = tokenizer or model
        if not source:
            raise ValueError(f"engine {name!r}: give `model` or `tokenizer` (for the token ids it sends)")
        tok = tokenizer_for(source, thinking=thinking)
        self.wire: LlamaCppWire = LlamaCppWire(tok, stream=stream)
        super().__init__(name, found, wire=self.wire, tokenizer=tok, http=http, model=model)
        self.cache_block = 1

    async def describe(self, url: str) -> dict[str, Any]:
        """``/props``: the build, the model file, the slots and each slot's context."""
        try:
            status, props = await self.get_json(url + "/props")
        except (aiohttp.ClientError, TimeoutError):
            status, props = 0, None
        if status != 200 or not isinstance(props, dict):
            return {"url": url}
        settings = props.get("default_generation_settings") or {}
        return {
            "url": url,
            "build": props.get("build_info"),
            "model_path": props.get("model_path"),
            "slots": props.get("total_slots"),
            "slot_context": settings.get("n_ctx"),
        }


def _finish(stop_type: Any, word: Any, ids: list[int]) -> tuple[FinishType, int | str | None]:
    """``stop_type`` as a finish reason and what matched: the end-of-generation id, or the stop string."""
    if stop_type == "eos":
        return "stop", ids[-1] if ids else None
    if stop_type == "word":
        return "stop", str(word)
    if stop_type == "limit":
        return "length", None
    return "abort", None


async def _read_stream(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """An SSE answer (one chunk per token, then the final one) gathered into one ``/completion`` answer."""
    ids: list[int] = []
    scored: list[Any] = []
    async for data in sse_data(resp):
        chunk = loads(data)
        if not isinstance(chunk, dict):
            raise RequestFailed(f"unexpected stream chunk {str(chunk)[:200]}", kind="bad_response")
        if "error" in chunk:
            raise _stream_error(chunk["error"], data)
        ids += chunk.get("tokens") or []
        scored += chunk.get("completion_probabilities") or []
        if chunk.get("stop") is True:
            return {**chunk, "tokens": ids, "completion_probabilities": scored}
    raise RequestFailed("the stream ended before the request finished", kind="torn")


def _stream_error(error: Any, data: bytes) -> RequestFailed:
    """An ``{"error": ...}`` stream event: retryable when it says the server failed or was busy."""
    code = error.get("code") if isinstance(error, dict) else None
    retryable = isinstance(code, int) and (code >= 500 or code == 429)
    return RequestFailed(f"server error in stream: {error_message(data)}", kind="server_error", retryable=retryable)


def _logprobs(found: Any, count: int) -> list[TokenLogprob]:
    """Per-token log-probabilities of ``completion_probabilities`` (``logprob`` and ``top_logprobs``)."""
    try:
        if len(found) != count:
            raise ValueError(f"{len(found)} log-probabilities for {count} tokens")
        return [TokenLogprob(float(p["logprob"]), tuple(sorted((float(t["logprob"]) for t in p["top_logprobs"]),
                                                                reverse=True)))
                for p in found]  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise RequestFailed(f"malformed completion_probabilities: {error}", kind="bad_response") from None
