"""OpenAI-compatible completion servers (vLLM and similar) through ``POST /v1/completions``.

The prompt is sent as token ids; vLLM's extensions keep the output exact (``return_token_ids``,
``skip_special_tokens: false``, ``include_stop_str_in_output``) and report prefix-cache hits in
``usage.prompt_tokens_details.cached_tokens`` (vLLM: ``--enable-prompt-tokens-details``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from collab.engines.base import Completion, GenerateRequest
from collab.engines.http.client import (
    OUTAGE_WAIT_S,
    HTTPEngine,
    RequestFailed,
    Server,
    loads,
    normalize_url,
    status_error,
    transport_error,
)
from collab.engines.tokenizers import load_tokenizer

LAUNCH_HINT = "Start it, e.g. `vllm serve MODEL --port PORT`."


class OpenAIEngine(HTTPEngine):
    """An engine backed by an OpenAI-compatible ``/v1/completions`` server that accepts token-id prompts."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        url: str,
        model: str,
        tokenizer: str | None = None,
        api_key_env: str | None = None,
        thinking: bool | None = None,
        timeout_s: float = 600,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_connections: int = 4096,
        health_timeout_s: float = 300,
        outage_wait_s: float = OUTAGE_WAIT_S,
    ) -> None:
        """``url``: the server (with or without ``/v1``); ``model``: the served model name, also the
        tokenizer source unless ``tokenizer`` names a local folder; ``api_key_env``: the environment
        variable that holds the API key, read at each request and never recorded."""
        base = normalize_url(url)
        super().__init__(
            name,
            [base.removesuffix("/v1")],
            tokenizer=load_tokenizer(tokenizer or model, thinking=thinking),
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            max_connections=max_connections,
            health_timeout_s=health_timeout_s,
            api_key_env=api_key_env,
            outage_wait_s=outage_wait_s,
        )
        self.model = model

    async def open(self) -> dict[str, Any]:
        """Wait until the server lists its models; describe it (never the API key)."""
        url = self.servers[0].url
        await self.wait_healthy(url + self._health_path(), LAUNCH_HINT)
        _, models = await self.get_json(url + self._health_path())
        status, version = await self.get_json(url + "/version")
        served = [m.get("id") for m in (models or {}).get("data", []) if isinstance(m, dict)]
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model,
            "tokenizer": self.tokenizer.key,
            "url": url,
            "api_key_env": self.api_key_env,
            "served_models": served,
            "version": version.get("version") if status == 200 and isinstance(version, dict) else None,
        }

    def _health_path(self) -> str:
        return "/v1/models"

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        """The ``/v1/completions`` body for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(request.input_ids),
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
        return body

    async def _attempt(self, server: Server, request: GenerateRequest, rid: str, *, warmup: bool) -> Completion:
        headers = {**self.headers(), "X-Request-Id": rid}
        try:
            url = server.url + "/v1/completions"
            async with self.session().post(url, json=self.payload(request), headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise status_error(resp.status, body, resp.headers)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise transport_error(e, self.timeout_s) from None
        return self._completion(loads(body), request)

    def _completion(self, out: Any, request: GenerateRequest) -> Completion:
        try:
            choice = out["choices"][0]
            text = choice["text"]
            usage = out.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise RequestFailed(f"not a completions answer: {str(out)[:200]}", kind="bad_response") from None
        ids = choice.get("token_ids")
        if ids is None:
            ids = self.tokenizer.encode(text)
            self.stats.retokenized += 1
        reason = choice.get("finish_reason")
        finish = reason if reason in ("stop", "length") else "abort"
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
        )
