"""A loopback server that speaks SGLang's HTTP protocol (and OpenAI ``/v1/completions``, and llama.cpp's
native ``/completion``) for tests.

It generates deterministic text from a real tokenizer's vocabulary (a hash of the input ids and the
seed picks each token), honours ``max_new_tokens``, stop strings, stop token ids and EOS, reports
``cached_tokens`` from a radix tree of every id sequence it has computed, and injects faults on
demand: each attempt of a request (same ids and seed) draws a fault from ``faults`` ({kind: rate})
with a hash of ``fault_seed``, the request and the attempt number, so runs are reproducible.

Fault kinds: ``5xx`` (HTTP 503), ``429`` (with ``Retry-After: 0``), ``reset`` (connection closed, no
answer), ``stall`` (silence until the client gives up; mid-stream when streaming), ``torn`` (the
answer stops before its end), ``garbage`` (broken JSON), ``overlap`` (``output_ids`` start with the
prompt's last ids, a real SGLang bug; the answer is otherwise right; ``/generate`` only), ``error``
(HTTP 400, or an ``{"error": ...}`` event mid-stream). With ``echo_auth`` every error body repeats
the request's ``Authorization`` header, as some proxies do.

Strictness of the real servers, on demand: ``max_stop_strings`` refuses requests with more stop
strings (HTTP 400, as vLLM does beyond 4), ``block_size`` reports ``cached_tokens`` in whole cache
blocks (as vLLM does), and ``openai_token_ids=False`` answers ``/v1/completions`` as llama.cpp's
``llama-server`` does: no token ids, and neither the matched stop string nor EOS in the text.
``/completion`` answers as ``llama-server`` does, quirks included: the stop string cut from
``content`` (never from ``tokens``), the log-probabilities of the stop string's tokens left out of a
non-streamed answer, and with ``partial_utf8`` that share of streamed tokens sent without their id
(as llama-server does for a token that ends inside a UTF-8 character). A client that closes the
connection stops the request (``Attempt.cancelled``).

Usage::

    async with ProtocolServer(tokenizer, faults={"5xx": 0.2}) as server:
        engine = SGLangEngine("e", url=server.url, tokenizer=...)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
import uuid
from array import array
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from collab.engines.base import Tokenizer

FAULTS = ("5xx", "429", "reset", "stall", "torn", "garbage", "overlap", "error")
WORDS = [
    "the", "of", "to", "and", "a", "in", "is", "it", "that", "we", "so", "let", "me", "think", "about",
    "this", "number", "sum", "value", "answer", "first", "then", "next", "square", "root", "equation",
    "solve", "check", "wait", "but", "if", "not", "equal", "more", "less", "two", "three", "four", "five",
    "times", "plus", "minus", "divide", "total", "case", "step", "right", "left", "term", "prime", "factor",
    "integer",
]  # fmt: skip
GENERATE_FIELDS = {
    "text", "input_ids", "input_embeds", "image_data", "audio_data", "sampling_params", "rid",
    "return_logprob", "logprob_start_len", "top_logprobs_num", "token_ids_logprob",
    "return_text_in_logprobs", "stream", "lora_path", "custom_logit_processor", "return_hidden_states",
}  # fmt: skip
SAMPLING_FIELDS = {
    "max_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p", "top_k", "min_p",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens", "n", "json_schema",
    "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
    "no_stop_trim", "custom_params", "stream_interval", "logit_bias", "sampling_seed",
}  # fmt: skip
COMPLETION_FIELDS = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop", "stop_token_ids",
    "stream", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
    "return_token_ids", "ignore_eos", "min_p", "user", "logprobs", "echo", "stream_options",
}  # fmt: skip
LLAMA_FIELDS = {
    "prompt", "n_predict", "temperature", "top_p", "top_k", "min_p", "samplers", "seed", "stop", "stream",
    "cache_prompt", "return_tokens", "n_probs", "post_sampling_probs", "id_slot", "ignore_eos", "n_cache_reuse",
}  # fmt: skip


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid)
    return lo


class RadixTree:
    """Token-id sequences a server has computed, stored as a compressed trie."""

    def __init__(self) -> None:
        self.root: dict[int, tuple[list[int], dict[int, Any]]] = {}
        self.tokens = 0

    def match(self, ids: list[int]) -> int:
        """Length of the longest prefix of ``ids`` already in the tree."""
        node, i = self.root, 0
        while i < len(ids) and ids[i] in node:
            edge, child = node[ids[i]]
            k = common_prefix(edge, ids[i : i + len(edge)])
            i += k
            if k < len(edge):
                break
            node = child
        return i

    def insert(self, ids: list[int]) -> None:
        node, i = self.root, 0
        while i < len(ids):
            if ids[i] not in node:
                node[ids[i]] = (ids[i:], {})
                self.tokens += len(ids) - i
                return
            edge, child = node[ids[i]]
            k = common_prefix(edge, ids[i : i + len(edge)])
            if k < len(edge):  # split the edge where the new sequence leaves it
                middle = {edge[k]: (edge[k:], child)}
                node[ids[i]] = (edge[:k], middle)
                child = middle
            i += k
            node = child


@dataclass
class Attempt:
    """What the server saw of one request attempt."""

    path: str
    rid: str
    input_ids: list[int]
    params: dict[str, Any]
    cached: int
    fault: str | None
    output_ids: list[int] = field(default_factory=list)
    finish: Any = None
    cancelled: bool = False
    """The client went away before the answer was sent."""


class ProtocolServer:
    """SGLang's ``/generate``, ``/health``, ``/server_info``, ``/model_info``, ``/abort_request`` and
    OpenAI's ``/v1/completions`` and ``/v1/models`` on 127.0.0.1."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        faults: Mapping[str, float] | None = None,
        fault_seed: int = 0,
        incremental: bool = False,
        stream_interval: int = 1,
        token_delay_s: float = 0.0,
        eos_rate: float = 0.0,
        paragraph_rate: float = 0.05,
        context_length: int = 32768,
        starting_health_checks: int = 0,
        legacy_info: bool = False,
        api_key: str | None = None,
        deterministic: bool = True,
        openai_token_ids: bool = True,
        max_stop_strings: int | None = None,
        block_size: int = 1,
        keepalive_timeout: float = 75.0,
        model_path: str = "test-org/test-model",
        version: str = "0.0.0-protocol-test",
        echo_auth: bool = False,
        partial_utf8: float = 0.0,
    ) -> None:
        unknown = set(faults or ()) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULTS}")
        self.tokenizer = tokenizer
        self.faults = dict(faults or {})
        self.fault_seed = fault_seed
        self.incremental = incremental
        self.stream_interval = stream_interval
        self.token_delay_s = token_delay_s
        self.eos_rate = eos_rate
        self.paragraph_rate = paragraph_rate
        self.context_length = context_length
        self.starting_health_checks = starting_health_checks
        self.legacy_info = legacy_info
        self.api_key = api_key
        self.deterministic = deterministic
        self.openai_token_ids = openai_token_ids
        self.max_stop_strings = max_stop_strings
        self.block_size = block_size
        self.keepalive_timeout = keepalive_timeout
        self.model_path = model_path
        self.version = version
        self.echo_auth = echo_auth
        self.partial_utf8 = partial_utf8
        self.tree = RadixTree()
        self.attempts: list[Attempt] = []
        self.aborted: set[str] = set()
        self.active = 0
        self.max_active = 0
        self.url = ""
        self.port = 0
        self._tries: Counter[bytes] = Counter()
        self._pieces: dict[int, str] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        encoded = (tokenizer.encode(" " + word) for word in WORDS)
        self._words = sorted({ids[0] for ids in encoded if len(ids) == 1})
        self._period, self._paragraph = self._single("."), self._single("\n\n")
        self.eos = tokenizer.eos_token_ids[0]

    def _single(self, text: str) -> int:
        ids = self.tokenizer.encode(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is not one token for this tokenizer")
        return ids[0]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/health", self._health)
        app.router.add_get("/health_generate", self._health)
        for path in ("/get_server_info",) + (() if self.legacy_info else ("/server_info",)):
            app.router.add_get(path, self._server_info)
        for path in ("/get_model_info",) + (() if self.legacy_info else ("/model_info",)):
            app.router.add_get(path, self._model_info)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/abort_request", self._abort)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/completion", self._llama_completion)
        app.router.add_get("/props", self._props)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, keepalive_timeout=self.keepalive_timeout, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ProtocolServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the model ------------------------------------------------------------------------

    def piece(self, token: int) -> str:
        if token not in self._pieces:
            self._pieces[token] = self.tokenizer.decode([token])
        return self._pieces[token]

    def expected(self, input_ids: list[int], params: Mapping[str, Any]) -> list[int]:
        """The output ids a fault-free ``/generate`` gives for ``input_ids`` and ``sampling_params``."""
        return _last(self._decode("", list(input_ids), params))[0]

    def _decode(self, rid: str, ids: list[int], p: Mapping[str, Any]) -> Any:
        """Yield ``(output_ids, text, finish_reason)`` after every token; ``finish_reason`` ends it."""
        seed = p.get("sampling_seed") if self.deterministic else None  # as SGLang: seeds need that mode
        rng = random.Random(_digest(ids, seed))
        stops = [p["stop"]] if isinstance(p.get("stop"), str) else list(p.get("stop") or [])
        stop_ids = set(p.get("stop_token_ids") or [])
        eos = set() if p.get("ignore_eos") else set(self.tokenizer.eos_token_ids)
        max_new = p.get("max_new_tokens", 128)
        out: list[int] = []
        text = ""
        if max_new == 0:
            yield out, text, {"type": "length", "length": 0}
            return
        while True:
            if rid in self.aborted:
                yield out, text, {"type": "abort", "message": f"Abort request {rid}"}
                return
            r = rng.random()
            if r < self.eos_rate:
                token = self.eos
            elif r < self.eos_rate + self.paragraph_rate:
                token = self._paragraph
            elif r < self.eos_rate + self.paragraph_rate + 0.08:
                token = self._period
            else:
                token = rng.choice(self._words)
            out.append(token)
            before = len(text)
            text += self.piece(token)
            finish = None
            if token in stop_ids or token in eos:
                finish = {"type": "stop", "matched": token}
            else:
                for s in stops:
                    if s in text[max(0, before - len(s) + 1) :]:
                        finish = {"type": "stop", "matched": s}
                        break
            if finish is None and len(out) >= max_new:
                finish = {"type": "length", "length": max_new}
            yield out, text, finish
            if finish is not None:
                return

    def _shown_text(self, text: str, finish: Any, p: Mapping[str, Any]) -> str:
        """The text as the server returns it: stop string trimmed, special tokens skipped, by default."""
        matched = finish.get("matched") if isinstance(finish, dict) else None
        if isinstance(matched, str) and not p.get("no_stop_trim", False):
            text = text[: text.rfind(matched)]
        if p.get("skip_special_tokens", True):
            for token in self.tokenizer.eos_token_ids:
                text = text.replace(self.piece(token), "")
        return text

    def _fault(self, ids: list[int], seed: Any) -> str | None:
        key = _digest(ids, seed)
        attempt = self._tries[key]
        self._tries[key] += 1
        draw = hashlib.blake2b(f"{self.fault_seed}:{attempt}".encode() + key, digest_size=8).digest()
        u = int.from_bytes(draw, "big") / 2**64
        for kind in FAULTS:
            u -= self.faults.get(kind, 0.0)
            if u < 0:
                return kind
        return None

    # -- handlers -------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        if self.starting_health_checks > 0:
            self.starting_health_checks -= 1
            return web.Response(status=503)
        return web.Response(status=200)

    async def _server_info(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        info = {
            "model_path": self.model_path,
            "tokenizer_path": self.model_path,
            "disable_radix_cache": False,
            "schedule_policy": "fcfs",
            "page_size": self.block_size,
            "enable_deterministic_inference": self.deterministic,
            "context_length": self.context_length,
            "incremental_streaming_output": self.incremental,
            "stream_interval": self.stream_interval,
            "api_key": self.api_key,
            "max_total_num_tokens": 1 << 20,
            "internal_states": [{"last_gen_throughput": 0.0}],
            "version": self.version,
        }
        return web.json_response(info)

    async def _model_info(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        return web.json_response(
            {"model_path": self.model_path, "tokenizer_path": self.model_path, "is_generation": True,
             "preferred_sampling_params": None, "weight_version": "default"}
        )

    async def _models(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        return web.json_response({"object": "list", "data": [{"id": self.model_path, "object": "model"}]})

    async def _metrics(self, request: web.Request) -> web.Response:
        """vLLM's cache settings line of its Prometheus metrics."""
        labels = f'block_size="{self.block_size}",enable_prefix_caching="True",engine="0"'
        return web.Response(text=f"# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{{labels}}} 1.0\n")

    async def _props(self, request: web.Request) -> web.Response:
        """llama-server's ``/props`` (a few of its fields)."""
        if denied := self._denied(request):
            return denied
        settings = {"n_ctx": self.context_length, "params": {"n_predict": -1}}
        return web.json_response({"default_generation_settings": settings, "total_slots": 1,
                                  "model_path": self.model_path, "build_info": self.version})

    async def _abort(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.aborted.add(body.get("rid", ""))
        return web.Response(status=200)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        try:
            body = await request.json()
            p = body.get("sampling_params") or {}
            unknown = (set(body) - GENERATE_FIELDS) | (set(p) - SAMPLING_FIELDS)
            ids = body["input_ids"]
            if unknown or not isinstance(ids, list) or not all(isinstance(i, int) and i >= 0 for i in ids):
                raise ValueError(f"bad request fields {sorted(unknown)}" if unknown else "input_ids must be token ids")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return _error(400, f"invalid request: {e}")
        if len(ids) + p.get("max_new_tokens", 128) > self.context_length:
            limit = self.context_length
            message = f"The input ({len(ids)} tokens) is longer than the model's context length ({limit} tokens)."
            return _error(400, message)
        if too_many := self._too_many_stops(p.get("stop")):
            return too_many
        rid = body.get("rid") or uuid.uuid4().hex
        p = {**p, "logprobs": body.get("top_logprobs_num", 0) if body.get("return_logprob") else None}
        return await self._serve(request, "/generate", ids, p, rid, bool(body.get("stream")))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        try:
            body = await request.json()
            unknown = set(body) - COMPLETION_FIELDS
            ids = body["prompt"]
            if unknown or not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError(f"unknown fields {sorted(unknown)}" if unknown else "this server needs token ids")
            if body.get("n", 1) != 1:
                raise ValueError("only n=1")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return _error(400, f"invalid request: {e}")
        p = {
            "max_new_tokens": body.get("max_tokens", 16),
            "stop": body.get("stop"),
            "stop_token_ids": body.get("stop_token_ids"),
            "sampling_seed": body.get("seed"),
            "skip_special_tokens": body.get("skip_special_tokens", True),
            "no_stop_trim": body.get("include_stop_str_in_output", False),
            "ignore_eos": body.get("ignore_eos", False),
            "return_token_ids": body.get("return_token_ids", False),
            "logprobs": body.get("logprobs"),
        }
        if too_many := self._too_many_stops(p["stop"]):
            return too_many
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        return await self._serve(request, "/v1/completions", ids, p, rid, bool(body.get("stream")))

    async def _llama_completion(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        try:
            body = await request.json()
            unknown = set(body) - LLAMA_FIELDS
            ids = body["prompt"]
            if unknown or not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError(f"unknown fields {sorted(unknown)}" if unknown else "this test needs token ids")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return _error(400, f"invalid request: {e}")
        n_probs = body.get("n_probs", 0)
        p = {
            "max_new_tokens": body.get("n_predict", -1) if body.get("n_predict", -1) >= 0 else self.context_length,
            "stop": body.get("stop"),
            "sampling_seed": body.get("seed"),
            "ignore_eos": body.get("ignore_eos", False),
            "return_token_ids": body.get("return_tokens", False),
            "cache_prompt": body.get("cache_prompt", True),
            "logprobs": n_probs if n_probs > 0 else None,
        }
        rid = uuid.uuid4().hex
        return await self._serve(request, "/completion", ids, p, rid, bool(body.get("stream")))

    def _too_many_stops(self, stop: Any) -> web.Response | None:
        count = 1 if isinstance(stop, str) else len(stop or [])
        if self.max_stop_strings is not None and count > self.max_stop_strings:
            message = f"List should have at most {self.max_stop_strings} items after validation, not {count}"
            return _error(400, message)
        return None

    async def _serve(
        self, request: web.Request, path: str, ids: list[int], p: dict[str, Any], rid: str, stream: bool
    ) -> web.StreamResponse:
        fault = self._fault(ids, p.get("sampling_seed"))
        cached = min(self.tree.match(ids), max(0, len(ids) - 1)) // self.block_size * self.block_size
        if not p.get("cache_prompt", True):
            cached = 0
        attempt = Attempt(path, rid, ids, p, cached, fault)
        self.attempts.append(attempt)
        if fault == "5xx":
            return self._fail(request, 503, "Service Unavailable")
        if fault == "429":
            return self._fail(request, 429, "Too many requests", headers={"Retry-After": "0"})
        if fault == "reset":
            request.transport.abort()
            return web.Response()
        if fault == "stall" and not stream:
            await self._closing.wait()
            return self._fail(request, 503, "shutting down")
        if fault == "error" and not stream:
            return self._fail(request, 400, "injected validation error")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.tree.insert(ids)  # SGLang caches the prompt once it is prefilled
        try:
            if stream:
                return await self._stream(request, attempt, p)
            out, text, finish = await _alast(self._paced(rid, ids, p))
            attempt.output_ids, attempt.finish = list(out), finish
            if path == "/v1/completions":
                return web.json_response(self._openai_answer(attempt, text, p))
            if path == "/completion":
                return await self._send_json(request, self._llama_answer(attempt, text, p), fault)
            answer = {
                "text": self._shown_text(text, finish, p),
                "output_ids": (ids[-3:] if fault == "overlap" else []) + out,
                "meta_info": self._meta(attempt, finish),
            }
            return await self._send_json(request, answer, fault)
        except asyncio.CancelledError:
            attempt.cancelled = True
            raise
        finally:
            self.active -= 1
            self.tree.insert(ids + attempt.output_ids[:-1])  # and prompt + output once finished

    async def _paced(self, rid: str, ids: list[int], p: Mapping[str, Any]) -> AsyncIterator[Any]:
        for state in self._decode(rid, ids, p):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield state

    def logprobs(self, context: list[int], token: int, top: int) -> tuple[float, list[float]]:
        """The log-probability this server reports for ``token`` after ``context``, and its ``top`` best:
        a geometric distribution whose ratio (so entropy) a hash of the context picks."""
        digest = _digest(context, "logprobs")
        ratio = 0.05 + 0.9 * digest[0] / 255
        best = [math.log(1 - ratio) + i * math.log(ratio) for i in range(max(top, 1))]
        return best[digest[1] % len(best)], best[:top]

    def _scored(self, attempt: Attempt, since: int) -> dict[str, Any]:
        """``meta_info`` log-probabilities of output positions ``since`` onwards, when asked for."""
        top = attempt.params.get("logprobs")
        if top is None:
            return {}
        ids, out = attempt.input_ids, attempt.output_ids
        found = [self.logprobs(ids + out[:i], out[i], top) for i in range(since, len(out))]
        return {
            "output_token_logprobs": [[lp, out[since + i], None] for i, (lp, _) in enumerate(found)],
            "output_top_logprobs": [[[v, 0, None] for v in best] for _, best in found],
        }

    def _meta(self, attempt: Attempt, finish: Any, since: int = 0) -> dict[str, Any]:
        return {
            **self._scored(attempt, since),
            "id": attempt.rid,
            "finish_reason": finish,
            "prompt_tokens": len(attempt.input_ids),
            "completion_tokens": len(attempt.output_ids),
            "cached_tokens": attempt.cached,
            "weight_version": "default",
            **({"e2e_latency": 0.001} if finish is not None else {}),
        }

    def _openai_answer(self, attempt: Attempt, text: str, p: Mapping[str, Any]) -> dict[str, Any]:
        finish = attempt.finish
        matched = finish.get("matched")
        shown = p if self.openai_token_ids else {"no_stop_trim": False, "skip_special_tokens": True}
        choice: dict[str, Any] = {
            "index": 0,
            "text": self._shown_text(text, finish, shown),
            "logprobs": None,
            "finish_reason": finish["type"],
            "stop_reason": None if matched in self.tokenizer.eos_token_ids else matched,
        }
        if p["logprobs"] is not None:
            choice["logprobs"] = self._openai_logprobs(attempt, 0, p["logprobs"])
        if p["return_token_ids"] and self.openai_token_ids:
            choice["token_ids"] = attempt.output_ids
            choice["prompt_token_ids"] = attempt.input_ids
        n_in, n_out = len(attempt.input_ids), len(attempt.output_ids)
        return {
            "id": f"cmpl-{attempt.rid}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_path,
            "choices": [choice],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out,
                      "prompt_tokens_details": {"cached_tokens": attempt.cached}},
        }

    async def _send_json(self, request: web.Request, answer: Any, fault: str | None) -> web.StreamResponse:
        body = json.dumps(answer).encode()
        if fault == "garbage":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        if fault != "torn":
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        request.transport.abort()
        return resp

    async def _stream(self, request: web.Request, attempt: Attempt, p: Mapping[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        ids, fault = attempt.input_ids, attempt.fault
        sent_ids, sent_text, chunks = 0, 0, 0
        async for out, text, finish in self._paced(attempt.rid, ids, p):
            attempt.output_ids, attempt.finish = list(out), finish
            if finish is None and len(out) % self.stream_interval:
                continue
            chunks += 1
            if fault in ("stall", "torn", "garbage", "error") and (chunks >= 2 or finish is not None):
                if fault == "stall":
                    await self._closing.wait()
                    return resp
                if fault == "torn":
                    request.transport.abort()
                    return resp
                event = b'{"text": "' if fault == "garbage" else json.dumps(
                    {"error": {"message": self._echoed(request, "injected error")}}).encode()
                await resp.write(b"data: " + event + b"\n\ndata: [DONE]\n\n")
                return resp
            shown = self._shown_text(text, finish, p) if finish is not None else text
            chunk_start = sent_ids
            if attempt.path == "/completion":
                held = finish is None and _unit(_digest(out, "utf8")) < self.partial_utf8
                if held:  # as if this token ended inside a UTF-8 character: never sent alone
                    continue
                event = self._llama_chunk(attempt, shown[sent_text:], out[sent_ids:])
                await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                sent_ids, sent_text = len(out), len(shown)
                continue
            if attempt.path == "/v1/completions":
                event = self._openai_chunk(attempt, shown[sent_text:], out[sent_ids:], p)
                await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                sent_ids, sent_text = len(out), len(shown)
                continue
            if self.incremental:
                chunk = {"text": shown[sent_text:], "output_ids": out[sent_ids:]}
            else:
                chunk = {"text": shown, "output_ids": (ids[-3:] if fault == "overlap" else []) + out}
            sent_ids, sent_text = len(out), len(shown)
            chunk["meta_info"] = self._meta(attempt, finish, since=chunk_start if self.incremental else 0)
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if attempt.path == "/v1/completions":
            usage = self._openai_answer(attempt, "", p)["usage"]
            await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        if attempt.path == "/completion":  # the final answer, without content or tokens, and no [DONE]
            final = {**self._llama_answer(attempt, "", p), "content": "", "tokens": []}
            final.pop("completion_probabilities", None)
            await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            return resp
        await resp.write(b"data: [DONE]\n\n")
        return resp

    def _llama_probs(self, attempt: Attempt, since: int, until: int) -> list[dict[str, Any]]:
        """llama.cpp's ``completion_probabilities`` of output positions ``since`` to ``until``."""
        top = attempt.params["logprobs"]
        ids, out = attempt.input_ids, attempt.output_ids
        found = []
        for i in range(since, until):
            lp, best = self.logprobs(ids + out[:i], out[i], top)
            alternatives = [{"id": j, "token": f"alt{j}", "bytes": [], "logprob": v} for j, v in enumerate(best)]
            piece = self.piece(out[i])
            found.append({"id": out[i], "token": piece, "bytes": list(piece.encode()), "logprob": lp,
                          "top_logprobs": alternatives})
        return found

    def _llama_answer(self, attempt: Attempt, text: str, p: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed ``/completion`` answer (``return_tokens``, ``stop_type``, ``timings``)."""
        finish, out = attempt.finish, attempt.output_ids
        matched = finish.get("matched")
        stop_type = "limit" if finish["type"] == "length" else "word" if isinstance(matched, str) else "eos"
        answer: dict[str, Any] = {
            "index": 0, "content": self._shown_text(text, finish, {}), "tokens": out if p["return_token_ids"] else [],
            "id_slot": 0, "stop": True, "model": self.model_path, "tokens_predicted": len(out),
            "tokens_evaluated": len(attempt.input_ids), "stop_type": stop_type,
            "stopping_word": matched if stop_type == "word" else "",
            "tokens_cached": len(attempt.input_ids) + len(out) - 1,
            "timings": {"cache_n": attempt.cached, "prompt_n": len(attempt.input_ids) - attempt.cached,
                        "predicted_n": len(out)},
        }  # fmt: skip
        if p["logprobs"] is not None:  # without the stop string's tokens, as llama-server does
            dropped = len(self.tokenizer.encode(matched)) if stop_type == "word" else 0
            answer["completion_probabilities"] = self._llama_probs(attempt, 0, max(0, len(out) - dropped))
        return answer

    def _llama_chunk(self, attempt: Attempt, text: str, new: list[int]) -> dict[str, Any]:
        """One event of a streamed ``/completion`` answer: the new text and the last token's id and log-probability."""
        out = attempt.output_ids
        chunk: dict[str, Any] = {
            "index": 0, "content": text, "tokens": new[-1:], "stop": False, "id_slot": 0,
            "tokens_predicted": len(out), "tokens_evaluated": len(attempt.input_ids),
        }  # fmt: skip
        if attempt.params["logprobs"] is not None:
            chunk["completion_probabilities"] = self._llama_probs(attempt, len(out) - 1, len(out))
        return chunk

    def _openai_logprobs(self, attempt: Attempt, since: int, top: int) -> dict[str, Any]:
        """A completions ``logprobs`` object for output positions ``since`` onwards."""
        ids, out = attempt.input_ids, attempt.output_ids
        found = [self.logprobs(ids + out[:i], out[i], top) for i in range(since, len(out))]
        return {
            "tokens": [self.piece(t) for t in out[since:]], "token_logprobs": [lp for lp, _ in found],
            "top_logprobs": [{f"alt{j}": v for j, v in enumerate(best)} for _, best in found],
        }

    def _openai_chunk(self, attempt: Attempt, text: str, new: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
        """One event of a streamed ``/v1/completions`` answer: the new text and ids (vLLM's form)."""
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": None,
                                  "stop_reason": None}
        if p["logprobs"] is not None:
            choice["logprobs"] = self._openai_logprobs(attempt, len(attempt.output_ids) - len(new), p["logprobs"])
        if attempt.finish is not None:
            final = self._openai_answer(attempt, "", p)["choices"][0]
            choice.update(finish_reason=final["finish_reason"], stop_reason=final["stop_reason"])
        if p["return_token_ids"] and self.openai_token_ids:
            choice["token_ids"] = new
        return {"id": f"cmpl-{attempt.rid}", "object": "text_completion", "model": self.model_path, "choices": [choice]}

    def _echoed(self, request: web.Request, message: str) -> str:
        """``message``, repeating the request's Authorization header when ``echo_auth`` is set."""
        if self.echo_auth:
            message += f" (request had Authorization: {request.headers.get('Authorization')})"
        return message

    def _fail(self, request: web.Request, status: int, message: str,
              headers: Mapping[str, str] | None = None) -> web.Response:
        return _error(status, self._echoed(request, message), headers)

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._fail(request, 401, "Unauthorized")
        return None


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"object": "error", "message": message, "type": str(status), "code": status}
    if status == 400:
        body = {"error": {"message": message}}
    return web.json_response(body, status=status, headers=headers)


def _digest(ids: list[int], seed: Any) -> bytes:
    return hashlib.blake2b(array("q", ids).tobytes() + repr(seed).encode(), digest_size=16).digest()


def _unit(digest: bytes) -> float:
    """A number in [0, 1) from a digest."""
    return int.from_bytes(digest[:8], "big") / 2**64


def _last(states: Any) -> Any:
    return deque(states, maxlen=1).pop()


async def _alast(states: AsyncIterator[Any]) -> Any:
    last = None
    async for state in states:
        last = state
    return last
