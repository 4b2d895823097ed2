"""The worker thread of one model: loading, prefix lookup, prefill, batched decoding, cache insertion.

One scheduler serves every engine on a model, so one thread is the only user of torch's thread pool
for it (torch runs up to twice slower when several threads have used the pool): the model loads,
warms up and runs there. Requests queue up in arrival order. Between decode steps the worker runs
queued calls and admits every waiting request (up to ``max_batch`` running): it takes the longest
prefix its engine's radix tree holds, copies it into a batch slot, prefills the rest in that slot,
stores the prompt's K/V in the tree at once (so the next request admitted, say another sample of the
same problem, finds the whole prompt) and joins the decoding batch. Each step runs one forward pass
for all rows and samples all rows in one call, each with its own seeded generator; a finished row
leaves the batch and its prompt + output K/V go into its engine's tree.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from collab.engines.base import (
    Completion,
    EngineError,
    FinishType,
    GenerateRequest,
    Tokenizer,
)
from collab.engines.local.batch import Batch, Single
from collab.engines.local.hfcache import Forward, kv_layers, prefix_cacheable
from collab.engines.local.radix import Match, RadixCache
from collab.engines.local.sampling import sample, token_logprobs
from collab.engines.logprobs import TokenLogprob

PREFILL_CHUNK = 512
"""Prompt tokens per forward pass: bounds the attention's working memory on long prompts."""
WARM_UP_TOKENS = 8

T = TypeVar("T")


@dataclass
class LocalStats:
    """Token accounting of one engine since it opened."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens whose K/V came from the radix cache."""
    prefill_tokens: int = 0
    """Prompt tokens run through the model."""
    decode_tokens: int = 0
    """Generated tokens run through the model (the last token of a completion never is)."""
    max_batch: int = 0
    """The most sequences decoded in one step."""
    cache_tokens: int = 0
    cache_bytes: int = 0
    peak_cache_bytes: int = 0
    evictions: int = 0
    evicted_tokens: int = 0

    @property
    def computed_tokens(self) -> int:
        """Every token position the model computed: prefill plus decode."""
        return self.prefill_tokens + self.decode_tokens


@dataclass(eq=False)
class Client:
    """One engine on a shared scheduler: its tokenizer, its radix tree (or none) and its accounting."""

    tokenizer: Tokenizer
    radix: RadixCache | None
    stats: LocalStats = field(default_factory=LocalStats)
    closed: bool = False


@dataclass
class Job:
    """One request on its way through the worker; ``cancelled`` is set from the event loop."""

    request: GenerateRequest
    client: Client
    future: asyncio.Future[Completion]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False

    def resolve(self, result: Completion | BaseException) -> None:
        """Settle the job's future from the worker thread."""
        def settle() -> None:
            if self.future.done():
                return
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(settle)


@dataclass
class Row:
    """A running request: its ids, its output so far, its sampler and stopping rules."""

    job: Job
    ids: list[int]
    limit: int
    cached: int
    generator: torch.Generator
    stop_ids: set[int]
    out: list[int] = field(default_factory=list)
    finish: FinishType = "length"
    matched: int | str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def accept(self, token: int, logprob: TokenLogprob | None = None) -> bool:
        """Append the sampled token (and its log-probabilities, when asked for); returns whether the
        sequence is finished."""
        request = self.job.request
        self.out.append(token)
        if logprob is not None:
            self.logprobs.append(logprob)
        if token in self.stop_ids:
            self.finish, self.matched = "stop", token
            return True
        if request.stop:
            # a stop string this token completed spans at most 4 tokens per character (a token adds
            # at least one UTF-8 byte): decoding only that tail keeps each check short
            window = 4 * max(len(s) for s in request.stop) + 8
            tail = self.job.client.tokenizer.decode(self.out[-window:])
            hit = next((s for s in request.stop if s in tail), None)
            if hit is not None:
                self.finish, self.matched = "stop", hit
                return True
        return len(self.out) >= self.limit


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]


_WAKE = object()
_CLOSED = "engine closed"


class Scheduler:
    """Owns one model's forward passes, its decoding batch and the requests of every engine on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.users = 0
        """Engines on this scheduler (kept by the engines)."""
        self.max_batch = 0
        self.max_positions = 0
        self.forward: Forward | None = None
        self.warm = False
        self._batch: Batch | Single | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._rows: list[Row] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"collab-local-{name}", daemon=True)
        self._thread.start()

    def serve(self, model: Any, max_batch: int) -> None:
        """Start serving ``model``: plain-attention models batch up to ``max_batch`` rows, others one."""
        self.forward = Forward(model)
        config = model.config
        self.max_positions = int(getattr(config, "max_position_embeddings", None) or 1 << 30)
        if prefix_cacheable(config):
            self.max_batch, self._batch = max_batch, Batch(self.forward, kv_layers(config), max_batch)
        else:
            self.max_batch, self._batch = 1, Single(self.forward, config)

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the worker thread between decode steps."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put(_Call(fn, future))
        self._queue.put(_WAKE)
        return future

    def submit(self, job: Job) -> None:
        """Queue a job for the worker."""
        self._queue.put(job)

    def warm_up(self) -> None:
        """Pay first-call costs (kernel selection, allocations) now, on the worker thread."""
        if self.warm or self._batch is None or len(self._batch):
            return
        slot = self._batch.open([])
        try:
            self._batch.prefill(slot, [0] * WARM_UP_TOKENS)
            self._batch.decode([0])
        finally:
            self._batch.remove(slot)
        self.warm = True

    def detach(self, client: Client) -> None:
        """Fail the client's running requests (on the worker thread); its queued ones fail when reached."""
        client.closed = True
        for index in reversed(range(len(self._rows))):
            if self._rows[index].job.client is client:
                self._retire(index, EngineError(_CLOSED, retryable=True))

    def stop(self) -> None:
        """End the thread after the current step; running and waiting requests fail as closed."""
        self._closing.set()
        self._queue.put(_WAKE)
        self._thread.join()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._closing.is_set():
                self._run_calls()
                while (not self._rows or len(self._rows) < self.max_batch) and not self._closing.is_set():
                    item = self._queue.get() if not self._rows else self._next()  # idle: wait for work (or a call)
                    if item is None or item is _WAKE:
                        break
                    self._admit(item)
                if self._rows:
                    self._step()
        self._shutdown()

    def _run_calls(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                call.future.set_result(call.fn())
            except BaseException as error:  # handed to the caller
                call.future.set_exception(error)

    def _next(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _shutdown(self) -> None:
        closed = EngineError(_CLOSED, retryable=True)
        for row in self._rows:
            row.job.resolve(closed)
        while (item := self._next()) is not None:
            if item is not _WAKE:
                item.resolve(closed)
        self._run_calls()
        self._rows = []
        if self._batch is not None:
            self._batch.clear()

    def _admit(self, job: Job) -> None:
        if job.cancelled:
            return
        if job.client.closed:
            job.resolve(EngineError(_CLOSED, retryable=True))
            return
        try:
            row, logits = self._prefill(job)
        except Exception as error:
            job.resolve(_engine_error(error))
            return
        self._rows.append(row)
        try:
            if row.limit <= 0 or row.accept(*self._sampled(logits[None], [row])[0]):
                self._retire(len(self._rows) - 1)
                return
        except Exception as error:
            self._retire(len(self._rows) - 1, _engine_error(error))
            return
        job.client.stats.max_batch = max(job.client.stats.max_batch, len(self._rows))

    def _prefill(self, job: Job) -> tuple[Row, torch.Tensor]:
        """Copy the longest cached prefix into a new slot, compute the rest there, store the prompt's K/V."""
        assert self._batch is not None and self.forward is not None
        request, client = job.request, job.client
        ids = list(request.input_ids)
        if len(ids) > self.max_positions:
            raise EngineError(f"prompt of {len(ids)} tokens exceeds the model's context", retryable=False)
        radix = client.radix
        match = radix.match(ids[:-1]) if radix is not None else Match(0)
        try:
            slot = self._batch.open(match.parts)
        finally:
            if radix is not None:
                radix.release(match)
        try:
            for start in range(match.length, len(ids), PREFILL_CHUNK):
                logits = self._batch.prefill(slot, ids[start : start + PREFILL_CHUNK])
            if radix is not None:
                radix.insert(ids, self._batch.kv(slot))
        except BaseException:
            self._batch.remove(slot)
            raise
        stats = client.stats
        stats.requests += 1
        stats.prompt_tokens += len(ids)
        stats.cached_tokens += match.length
        stats.prefill_tokens += len(ids) - match.length
        generator = torch.Generator(device=self.forward.device)
        if request.seed is None:
            generator.seed()
        else:
            generator.manual_seed(request.seed)
        row = Row(job, ids, min(request.max_new_tokens, self.max_positions - len(ids)), match.length, generator,
                  set(request.stop_token_ids) | set(client.tokenizer.eos_token_ids))
        return row, logits

    @staticmethod
    def _sampled(logits: torch.Tensor, rows: list[Row]) -> list[tuple[int, TokenLogprob | None]]:
        """Per row: the sampled token, with its log-probabilities when the row's request asks for them."""
        requests = [row.job.request for row in rows]
        tokens = sample(logits, requests, [row.generator for row in rows])
        return list(zip(tokens, token_logprobs(logits, requests, tokens), strict=True))

    def _step(self) -> None:
        """One decode step for every row, then retire the finished and cancelled rows."""
        assert self._batch is not None
        try:
            logits = self._batch.decode([row.out[-1] for row in self._rows])
            for row in self._rows:
                row.job.client.stats.decode_tokens += 1
            picks = self._sampled(logits, self._rows)
        except Exception as error:
            for row in self._rows:
                row.job.resolve(_engine_error(error))
            self._rows = []
            self._batch.clear()
            return
        rows = zip(self._rows, picks, strict=True)
        done = [i for i, (row, pick) in enumerate(rows) if row.job.cancelled or row.accept(*pick)]
        for index in reversed(done):  # the last row moves into a freed slot: retire from the end
            self._retire(index)

    def _retire(self, index: int, error: EngineError | None = None) -> None:
        """Store the row's K/V in its engine's tree, free its slot and answer its request."""
        assert self._batch is not None
        row = self._rows[index]
        radix = row.job.client.radix
        if radix is not None and error is None:
            computed = self._batch.lengths[index]  # type: ignore[union-attr]
            radix.insert((row.ids + row.out)[:computed], self._batch.kv(index))
        self._batch.remove(index)
        last = self._rows.pop()
        if index < len(self._rows):
            self._rows[index] = last
        if error is not None:
            row.job.resolve(error)
        elif not row.job.cancelled:
            row.job.resolve(Completion(
                text=row.job.client.tokenizer.decode(row.out), token_ids=row.out, finish_reason=row.finish,
                matched=row.matched, prompt_tokens=len(row.ids), cached_tokens=row.cached,
                logprobs=row.logprobs if row.job.request.logprobs is not None else None,
            ))


def _engine_error(error: Exception) -> EngineError:
    if isinstance(error, EngineError):
        return error
    return EngineError(str(error), retryable=isinstance(error, torch.OutOfMemoryError))
