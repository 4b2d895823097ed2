"""The embedded engine: a transformers model in-process, with a radix prefix KV cache.

One worker thread per model loads and runs it (the event loop never waits on it; engines naming the
same model share its weights and its thread): requests reuse the longest prefix any earlier request
of the engine left in its radix tree, prefill the rest, and decode together in one batch (see
:mod:`collab.engines.local.scheduler`). K samples of one problem compute their shared prompt once;
every turn of an episode extends what the previous turn left in the cache.

Each request yields one completion: ``n`` must be 1 (the runner sends one request per sample).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from collab.engines.base import Completion, EngineError, EngineLifecycle, GenerateRequest, Tokenizer
from collab.engines.local.hfcache import prefix_cacheable
from collab.engines.local.loading import check_hub, no_progress_bars, pick_threads
from collab.engines.local.radix import RadixCache
from collab.engines.local.scheduler import Client, Job, LocalStats, Scheduler
from collab.engines.tokenizers import load_tokenizer, locate

__all__ = ["LocalEngine", "LocalStats"]

T = TypeVar("T")

MAX_BATCH = 16
_LOADING = threading.Lock()
_SHARING = threading.Lock()
_SCHEDULERS: dict[int, Scheduler] = {}
"""The scheduler serving each model, by the model's id."""


@functools.lru_cache(maxsize=8)
def load_model(path: str, gguf: str | None, device: Any, dtype: Any) -> Any:
    """Weights, loaded once per process: engines naming the same model share them."""
    from transformers import AutoModelForCausalLM

    extra = {"gguf_file": gguf} if gguf else {}
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)
    return model.to(device=device, dtype=dtype).eval()
"""Sequences decoded together at most (more wait for a row to free up)."""


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(name: str, device: torch.device, gguf: bool = False) -> torch.dtype:
    """The requested dtype, or for ``auto`` the fastest correct one on ``device``.

    On a CPU that is bfloat16 where it computes bfloat16 natively, float32 otherwise, and float32
    for GGUF files (transformers dequantizes them to float32; in bfloat16 every matmul casts).
    """
    if name != "auto":
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise EngineError(f"unknown dtype {name!r} (expected e.g. float32, bfloat16, float16)", retryable=False)
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if native_bfloat16() and not gguf else torch.float32


def native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX512-BF16, AMX, Arm BF16): then bfloat16 runs
    faster than float32 (half the bytes to stream per token); emulated, it runs slower."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return any(capabilities.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


class LocalEngine(EngineLifecycle):
    """A transformers causal LM loaded in-process; see the module docstring for scheduling."""

    def __init__(self, name: str, model: str, tokenizer: str | None = None, device: str = "auto",
                 dtype: str = "auto", thinking: bool | None = None, cache: bool = True,
                 cache_budget_mb: float = 512, threads: int | None = None) -> None:
        self.name = name
        self.model_id = model
        self.tokenizer_id = tokenizer
        self.device_name = device
        self.dtype_name = dtype
        self.thinking = thinking
        self.cache_enabled = cache
        self.cache_budget_mb = cache_budget_mb
        self.threads = threads
        self.threads_note = ""
        self._tokenizer: Tokenizer | None = None
        self._model: Any = None
        self._scheduler: Scheduler | None = None
        self._client: Client | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (an error before :meth:`open`)."""
        if self._tokenizer is None:
            raise EngineError(f"engine {self.name!r} is not open", retryable=False)
        return self._tokenizer

    @property
    def stats(self) -> LocalStats:
        """A snapshot of the token accounting and of the radix cache's size."""
        if self._client is None:
            return LocalStats()
        stats, radix = self._client.stats, self._client.radix
        if radix is None:
            return replace(stats)
        return replace(stats, cache_tokens=radix.tokens, cache_bytes=radix.bytes, peak_cache_bytes=radix.peak_bytes,
                       evictions=radix.evicted_nodes, evicted_tokens=radix.evicted_tokens)

    @property
    def replicas(self) -> int:
        """One: the model runs in this process."""
        return 1

    def counters(self) -> dict[str, Any]:
        """:attr:`stats` as a dict."""
        return asdict(self.stats)

    @property
    def generated_tokens(self) -> int:
        """Tokens sampled so far, running requests included: one per admitted request, one per decode step."""
        return self.stats.requests + self.stats.decode_tokens

    @property
    def model(self) -> Any:
        """The loaded transformers model (``None`` before :meth:`open`)."""
        return self._model

    @property
    def radix(self) -> RadixCache | None:
        """The engine's prefix cache (``None`` when disabled or unsupported by the model)."""
        return self._client.radix if self._client is not None else None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> dict[str, Any]:
        """Load the weights (once, on the model's worker thread), warm up and describe the engine."""
        if self._client is None:
            worker = Scheduler(self.name)  # torch's first user: the model loads and warms up on its thread
            try:
                model, tokenizer = await asyncio.wrap_future(worker.call(self._load))
            except BaseException:
                await asyncio.to_thread(worker.stop)
                raise
            scheduler = self.attach(model, tokenizer, worker)
            await asyncio.wrap_future(scheduler.call(scheduler.warm_up))
        return self.describe()

    def _load(self) -> tuple[Any, Tokenizer]:
        path, gguf = locate(self.model_id)
        tok_path, tok_gguf = locate(self.tokenizer_id) if self.tokenizer_id else (path, gguf)
        device = pick_device(self.device_name)
        if device.type == "cpu":
            threads, why = pick_threads(self.threads)
            torch.set_num_threads(threads)
            self.threads_note = f"{threads} CPU thread{'s' * (threads != 1)} ({why})"
        for repo, file in {(path, gguf), (tok_path, tok_gguf)}:
            if not Path(repo).exists():
                check_hub(repo, file)
        with _LOADING, no_progress_bars():  # engines opened together must not load at once
            tokenizer = load_tokenizer(tok_path, gguf_file=tok_gguf, thinking=self.thinking)
            model = load_model(path, gguf, device, pick_dtype(self.dtype_name, device, gguf is not None))
        return model, tokenizer

    def attach(self, model: Any, tokenizer: Tokenizer, worker: Scheduler | None = None) -> Scheduler:
        """Serve an already loaded model (``open()`` loads one; tests and tools share one model).

        The model's scheduler is shared with every engine on it; ``worker``, the thread that loaded
        the model, becomes that scheduler unless the model already has one.
        """
        with _SHARING:
            scheduler = _SCHEDULERS.get(id(model))
            spare = worker if scheduler is not None else None
            if scheduler is None:
                scheduler = worker or Scheduler(self.name)
                scheduler.serve(model, MAX_BATCH)
                _SCHEDULERS[id(model)] = scheduler
            scheduler.users += 1
        if spare is not None:
            spare.stop()
        plain = prefix_cacheable(model.config)
        radix = RadixCache(int(self.cache_budget_mb * 2**20)) if self.cache_enabled and plain else None
        self._model, self._tokenizer, self._scheduler = model, tokenizer, scheduler
        self._client = Client(tokenizer, radix)
        return scheduler

    def describe(self) -> dict[str, Any]:
        """The run manifest's entry for this engine."""
        import transformers

        config = self._model.config
        parameter = next(self._model.parameters())
        return {
            "kind": "local",
            "model": self.model_id,
            "tokenizer": self.tokenizer.key,
            "architecture": getattr(config, "model_type", None),
            "parameters": sum(p.numel() for p in self._model.parameters()),
            "device": str(parameter.device),
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "dtype_requested": self.dtype_name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "cache": {
                "enabled": self.radix is not None,
                "requested": self.cache_enabled,
                "supported": prefix_cacheable(config),
                "budget_mb": self.cache_budget_mb,
            },
            "max_batch": self._scheduler.max_batch if self._scheduler else None,
            "threads": torch.get_num_threads() if parameter.device.type == "cpu" else None,
            "note": f"{self.model_id} on {parameter.device} in {str(parameter.dtype).removeprefix('torch.')}"
                    + (f", {self.threads_note}" if self.threads_note else ""),
        }

    async def aclose(self) -> None:
        """Detach from the model's worker (stopped with its last engine); drop the cache and the model."""
        scheduler, client = self._scheduler, self._client
        if scheduler is not None and client is not None:
            self._scheduler = self._client = None
            with _SHARING:
                scheduler.users -= 1
                last = scheduler.users == 0
                if last:
                    del _SCHEDULERS[id(self._model)]
            await asyncio.wrap_future(scheduler.call(lambda: scheduler.detach(client)))
            if last:
                await asyncio.to_thread(scheduler.stop)
            if client.radix is not None:
                client.radix.clear()
        on_gpu = self._model is not None and next(self._model.parameters()).device.type == "cuda"
        self._model = None
        if on_gpu:
            torch.cuda.empty_cache()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the model's worker thread, between decode steps (for tools that use torch)."""
        if self._scheduler is None:
            raise EngineError(f"engine {self.name!r} is not open", retryable=False)
        return await asyncio.wrap_future(self._scheduler.call(fn))

    async def generate(self, request: GenerateRequest) -> Completion:
        """Queue the request for the worker and wait for its completion."""
        if request.n != 1:
            raise EngineError(f"engine {self.name!r}: n must be 1 (send one request per sample)", retryable=False)
        if not request.input_ids:
            raise EngineError(f"engine {self.name!r}: empty input_ids", retryable=False)
        if self._scheduler is None or self._client is None:
            raise EngineError(f"engine {self.name!r} is not open", retryable=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = Job(request, self._client, loop.create_future(), loop)
        self._scheduler.submit(job)
        try:
            completion = await job.future
        except asyncio.CancelledError:
            job.cancelled = True  # a running request stops at its next token; a queued one never starts
            raise
        except EngineError as error:
            raise EngineError(f"engine {self.name!r}: {error}", retryable=error.retryable) from error
        completion.latency_s = loop.time() - started
        return completion
