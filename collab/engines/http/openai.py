"""OpenAI-compatible completion servers (vLLM and similar) through ``POST /v1/completions``.

The prompt is sent as token ids; vLLM's extensions keep the output exact (``return_token_ids``,
``skip_special_tokens: false``, ``include_stop_str_in_output``) and report prefix-cache hits in
``usage.prompt_tokens_details.cached_tokens`` (vLLM: ``--enable-prompt-tokens-details``), in whole
cache blocks (the block size is read from vLLM's ``/metrics``). A server that returns no token ids
or no finish reason (llama.cpp's ``llama-server`` here; ``kind: llamacpp`` speaks its native API) is
refused with a clear error: re-encoding its text would change the trace's tokens and hide its
end-of-sequence, so episodes could never end.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from collab.engines.base import Completion, EngineError, FinishType, GenerateRequest
from collab.engines.http.client import (
    DEFAULT_HTTP,
    HTTPEngine,
    HTTPSettings,
    RequestFailed,
    answers,
    error_message,
    loads,
    normalize_url,
    sse_data,
    status_error,
)
from collab.engines.logprobs import TokenLogprob
from collab.engines.tokenizers import tokenizer_for

LAUNCH_HINT = "Start it, e.g. `vllm serve MODEL --port PORT`."
FINISH: dict[Any, FinishType] = {"stop": "stop", "length": "length", "abort": "abort"}
VLLM_BLOCK = re.compile(r'^vllm:cache_config_info\{[^}]*\bblock_size="(\d+)"', re.MULTILINE)
NO_IDS = (
    "the server at {url} returned no {what}; collab needs the exact token ids and finish reason of every "
    "completion (vLLM gives them; llama.cpp's llama-server does so only on its native API: use `kind: llamacpp`)"
)


class OpenAIWire:
    """``/v1/completions`` with token-id prompts and vLLM's extensions for exact output."""

    health_path = "/v1/models"

    def __init__(self, model: str, *, stream: bool = False) -> None:
        self.model = model
        self.stream = stream

    def payload(self, request: GenerateRequest, *, stream: bool = False) -> dict[str, Any]:
        """The ``/v1/completions`` body for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.input_ids,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": 1,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        if request.top_k != -1:
            body["top_k"] = request.top_k
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.stop_token_ids:
            body["stop_token_ids"] = list(request.stop_token_ids)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
        return body

    async def send(
        self, session: aiohttp.ClientSession, url: str, request: GenerateRequest, rid: str,
        *, headers: dict[str, str], warmup: bool,
    ) -> Completion:  # fmt: skip
        """POST ``/v1/completions`` (streamed unless a warm-up) and parse the answer."""
        stream = self.stream and not warmup
        body = self.payload(request, stream=stream)
        async with session.post(url + "/v1/completions", json=body, headers={**headers, "X-Request-Id": rid}) as resp:
            if resp.status != 200:
                raise status_error(resp.status, await resp.read(), resp.headers)
            out = await _read_stream(resp) if stream else loads(await resp.read())
        return self.parse(out, request, url)

    async def healthy(self, session: aiohttp.ClientSession, url: str, *, headers: dict[str, str]) -> bool:
        """Whether ``/v1/models`` answers."""
        return await answers(session, url + self.health_path, headers)

    async def abort(self, session: aiohttp.ClientSession, url: str, rid: str, *, headers: dict[str, str]) -> None:
        """Nothing to send: vLLM stops a request when its client disconnects."""

    def parse(self, out: Any, request: GenerateRequest, url: str) -> Completion:
        """Map a completions answer to a :class:`Completion`; refuse one without token ids or finish reason."""
        try:
            choice = out["choices"][0]
            text = choice["text"]
            usage = out.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise RequestFailed(f"not a completions answer: {str(out)[:200]}", kind="bad_response") from None
        ids = choice.get("token_ids")
        if not isinstance(ids, list):
            raise EngineError(NO_IDS.format(url=url, what="token ids (return_token_ids)"), retryable=False)
        finish = FINISH.get(choice.get("finish_reason"))
        if finish is None:
            raise EngineError(NO_IDS.format(url=url, what="finish reason"), retryable=False)
        matched = choice.get("stop_reason")
        if finish == "stop" and matched is None and ids:
            matched = ids[-1]  # vLLM reports no stop_reason when the model's EOS token ended it
        details = usage.get("prompt_tokens_details") or {}
        return Completion(
            text=text,
            token_ids=list(ids),
            finish_reason=finish,
            matched=matched if finish == "stop" else None,
            prompt_tokens=int(usage.get("prompt_tokens") or len(request.input_ids)),
            cached_tokens=int(details.get("cached_tokens") or 0),
            logprobs=_logprobs(choice.get("logprobs"), len(ids)) if request.logprobs is not None else None,
        )


class OpenAIEngine(HTTPEngine):
    """An engine backed by an OpenAI-compatible ``/v1/completions`` server that accepts token-id prompts."""

    kind = "openai"
    launch_hint = LAUNCH_HINT

    def __init__(
        self,
        name: str,
        url: str,
        model: str,
        tokenizer: str | None = None,
        thinking: bool | None = None,
        max_stop_strings: int | None = 4,
        cache_block: int | None = None,
        stream: bool = False,
        http: HTTPSettings = DEFAULT_HTTP,
    ) -> None:
        """``url``: the server (with or without ``/v1``); ``model``: the served model name, also the
        tokenizer source unless ``tokenizer`` names one (a hub id, a folder or a ``.gguf`` file);
        ``max_stop_strings``: how many stop strings the server accepts (vLLM: 4 unless
        ``VLLM_MAX_STOP_STRINGS`` says otherwise; ``None``: any number), the rest are applied here;
        ``cache_block``: the tokens per prefix-cache block (default: read from vLLM's ``/metrics``);
        ``stream``: receive the answer as server-sent events (``http.timeout_s`` then bounds each gap);
        ``http``: timeouts, retries, connections, API key."""
        base = normalize_url(url)
        self.wire: OpenAIWire = OpenAIWire(model, stream=stream)
        super().__init__(
            name,
            [base.removesuffix("/v1")],
            wire=self.wire,
            tokenizer=tokenizer_for(tokenizer or model, thinking=thinking),
            http=http,
            model=model,
            max_stop_strings=max_stop_strings,
        )
        self.cache_block = cache_block or 1
        self._fixed_block = cache_block is not None

    async def open(self) -> dict[str, Any]:
        """Wait until the server lists its models; describe it (never the API key)."""
        url = self.servers[0].url
        await self.wait_healthy(url + self.wire.health_path, self.launch_hint)
        _, models = await self.get_json(url + self.wire.health_path)
        status, version = await self.get_json(url + "/version")
        served = [m.get("id") for m in (models or {}).get("data", []) if isinstance(m, dict)]
        if not self._fixed_block:
            self.cache_block = await self._metrics_block(url) or 1
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model,
            "tokenizer": self.tokenizer.key,
            "url": url,
            "api_key_env": self.http.api_key_env,
            "served_models": served,
            "version": version.get("version") if status == 200 and isinstance(version, dict) else None,
            "cache_block": self.cache_block,
            "max_stop_strings": self.max_stop_strings,
            "stream": self.wire.stream,
        }

    async def _metrics_block(self, url: str) -> int | None:
        """The prefix cache's block size from vLLM's Prometheus metrics (``vllm:cache_config_info``)."""
        try:
            async with self.session().get(url + "/metrics", headers=self.headers()) as resp:
                text = (await resp.read()).decode("utf-8", "replace") if resp.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return None
        found = VLLM_BLOCK.search(text)
        return int(found.group(1)) if found else None


async def _read_stream(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """An SSE answer (incremental chunks, then a usage chunk) gathered into one completions answer."""
    text: list[str] = []
    ids: list[int] | None = None
    scored: dict[str, list[Any]] = {"token_logprobs": [], "top_logprobs": []}
    last: dict[str, Any] = {}
    usage = None
    async for data in sse_data(resp):
        if data == b"[DONE]":
            break
        chunk = loads(data)
        if not isinstance(chunk, dict):
            raise RequestFailed(f"unexpected stream chunk {str(chunk)[:200]}", kind="bad_response")
        if "error" in chunk:
            raise RequestFailed(f"server error in stream: {error_message(data)}", kind="server_error", retryable=False)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            text.append(choice.get("text") or "")
            if isinstance(choice.get("token_ids"), list):
                ids = (ids or []) + choice["token_ids"]
            for key, values in scored.items():
                values += (choice.get("logprobs") or {}).get(key) or []
            last = choice
    if not last.get("finish_reason"):
        raise RequestFailed("the stream ended before the request finished", kind="torn")
    found = scored if scored["token_logprobs"] else None
    return {"choices": [{**last, "text": "".join(text), "token_ids": ids, "logprobs": found}], "usage": usage}


def _logprobs(found: Any, count: int) -> list[TokenLogprob]:
    """Per-token log-probabilities of a completions choice (``token_logprobs`` and ``top_logprobs``, the
    alternatives keyed by token text; the chosen token may be among them as one more)."""
    try:
        chosen = found["token_logprobs"]
        tops = found.get("top_logprobs") or [None] * len(chosen)
        if len(chosen) != count:
            raise ValueError(f"{len(chosen)} log-probabilities for {count} tokens")
        return [TokenLogprob(float(c), tuple(sorted((float(v) for v in (top or {}).values()), reverse=True)))
                for c, top in zip(chosen, tops, strict=True)]
    except (KeyError, TypeError, ValueError) as error:
        raise RequestFailed(f"malformed logprobs: {error}", kind="bad_response") from None
