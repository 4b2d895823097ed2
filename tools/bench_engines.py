"""Decode speed of the local engine against a bare transformers loop and llama.cpp, side by side.

For each batch size B, B different prompts of ``--prompt-tokens`` tokens each generate
``--new-tokens`` tokens greedily (end of sequence ignored) on:

- collab local: the ``local`` engine (cache off, so every prompt is computed, like the others);
- bare loop: the same loaded model called in a plain loop with transformers' own cache, on the
  engine's worker thread (the only thread that uses torch's pool);
- llama.cpp: given ``--llama-server PATH``, its ``llama-server`` on the same GGUF, B requests at once
  on B slots of its native ``/completion`` endpoint.

Contenders alternate within every repetition; each figure is the median of ``--repeats``. Each dtype
of ``--dtypes`` loads the model once, in turn. The memory-bandwidth bound on batch-1 decode is the
measured copy bandwidth over the bytes of weights streamed per token. On a loaded machine the
tokens per CPU second of the thread that ran the model (engine thread, bare loop) compare better
than wall-clock rates.

Usage: python tools/bench_engines.py [--model PATH.gguf] [--dtypes auto float32] [--batches 1 4 16]
           [--prompt-tokens 80] [--new-tokens 96] [--repeats 3] [--threads 2] [--llama-server PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab.engines.base import GenerateRequest  # noqa: E402
from collab.engines.local.engine import LocalEngine  # noqa: E402


class NoEndOfSequence:
    """A tokenizer that ends no sequence, so every request generates its whole budget."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.eos_token_ids: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def prompts(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(length)] for _ in range(batch)]


async def collab_local(engine: LocalEngine, batch: list[list[int]], new: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of the engine's worker thread)``."""
    cpu = await engine.call(time.thread_time)
    started = time.perf_counter()
    done = await asyncio.gather(*(engine.generate(GenerateRequest(p, new, temperature=0.0)) for p in batch))
    elapsed = time.perf_counter() - started
    assert all(len(c.token_ids) == new for c in done)
    return elapsed, await engine.call(time.thread_time) - cpu


def bare_loop(model: Any, batch: list[list[int]], new: int) -> tuple[float, float]:
    """Prefill all prompts in one pass, then one forward pass per token, greedy, transformers' cache."""
    import inspect

    from transformers import DynamicCache

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cpu, started = time.thread_time(), time.perf_counter()
    with torch.inference_mode():
        cache = DynamicCache()
        ids = torch.tensor(batch)
        for _ in range(new):
            logits = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_kw: cache}).logits
            ids = logits[:, -1].argmax(-1, keepdim=True)
    return time.perf_counter() - started, time.thread_time() - cpu


@contextlib.contextmanager
def llama_server(binary: str, gguf: str, threads: int, slots: int, context: int) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
               "-np", str(slots), "-c", str(context * slots)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


async def wait_ready(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise SystemExit(f"llama-server at {url} did not become ready")


async def llama_cpp(url: str, batch: list[list[int]], new: int) -> tuple[float, float]:
    """``(wall seconds, nan)``: the server's CPU time is not measured."""
    body = {"n_predict": new, "temperature": 0.0, "ignore_eos": True, "cache_prompt": False}
    async with aiohttp.ClientSession() as session:
        async def one(prompt: list[int]) -> int:
            async with session.post(f"{url}/completion", json=body | {"prompt": prompt}) as response:
                response.raise_for_status()
                return int((await response.json())["tokens_predicted"])

        started = time.perf_counter()
        counts = await asyncio.gather(*(one(p) for p in batch))
        elapsed = time.perf_counter() - started
    assert all(c == new for c in counts), counts
    return elapsed, float("nan")


def copy_bandwidth() -> float:
    """Bytes per second moved (read + write) by a large single-threaded memory copy."""
    a = np.ones(64 * 2**20, dtype=np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - started)
    return 2 * a.nbytes / min(times)


async def measure(args: argparse.Namespace) -> None:
    results: dict[tuple[str, int], list[float]] = defaultdict(list)
    per_cpu: dict[tuple[str, int], list[float]] = defaultdict(list)
    """Tokens per CPU second of the thread that ran the model (robust on a loaded machine)."""
    weights: dict[str, int] = {}
    labels: list[str] = []
    bandwidth = copy_bandwidth()
    server = llama_server(args.llama_server, args.model, args.threads, max(args.batches),
                          args.prompt_tokens + args.new_tokens + 8) if args.llama_server else contextlib.nullcontext()
    with server as url:
        if url:
            await wait_ready(url)
        for dtype in args.dtypes:
            base = LocalEngine("bench", args.model, dtype=dtype, threads=args.threads)
            info = await base.open()
            engine = LocalEngine("bench", args.model, cache=False)
            engine.attach(base.model, NoEndOfSequence(base.tokenizer))  # type: ignore[arg-type]
            threads = info["threads"]
            local, bare = f"collab local {info['dtype']}", f"bare loop {info['dtype']}"
            labels += [local, bare]
            weights[info["dtype"]] = sum(p.numel() * p.element_size() for p in base.model.parameters())
            vocab = int(base.model.config.vocab_size)
            for repeat in range(args.repeats):
                for batch in args.batches:
                    work = prompts(batch, args.prompt_tokens, vocab, seed=repeat * 1000 + batch)
                    timed = [(local, collab_local(engine, work, args.new_tokens)),
                             (bare, base.call(functools.partial(bare_loop, base.model, work, args.new_tokens)))]
                    if url:
                        timed.append(("llama.cpp", llama_cpp(url, work, args.new_tokens)))
                    for label, run in timed:
                        wall, cpu = await run
                        results[label, batch].append(batch * args.new_tokens / wall)
                        per_cpu[label, batch].append(batch * args.new_tokens / cpu)
                        print(f"  repeat {repeat + 1}, batch {batch}: {label} {results[label, batch][-1]:.1f} tok/s, "
                              f"{per_cpu[label, batch][-1]:.1f} tok per CPU second", file=sys.stderr)
            await engine.aclose()
            await base.aclose()
    if args.llama_server:
        labels.append("llama.cpp")
    report(args, results, per_cpu, labels, weights, bandwidth, threads)


def report(args: argparse.Namespace, results: dict[tuple[str, int], list[float]],
           per_cpu: dict[tuple[str, int], list[float]], labels: list[str], weights: dict[str, int],
           bandwidth: float, threads: int) -> None:
    median = {key: statistics.median(values) for key, values in results.items()}
    cpu = {key: statistics.median(values) for key, values in per_cpu.items()}
    print(f"{Path(args.model).name}: {args.prompt_tokens}-token prompts, {args.new_tokens} new tokens greedy, "
          f"{threads} torch thread(s) on the engine thread, {args.threads} for llama.cpp, median of {args.repeats}")
    gguf = Path(args.model).stat().st_size if args.model.endswith(".gguf") else 0
    bounds = [f"{dtype} weights {size / 1e6:.0f} MB -> {bandwidth / size:.0f} tok/s" for dtype, size in weights.items()]
    if gguf:
        bounds.append(f"GGUF {gguf / 1e6:.0f} MB -> {bandwidth / gguf:.0f} tok/s")
    print(f"memory copy bandwidth {bandwidth / 1e9:.1f} GB/s; batch-1 decode bound: " + "; ".join(bounds))
    header = "".join(f"{f'batch {b}':>10}" for b in args.batches)
    print(f"{'generated tok/s':34}{header}")
    for label in labels:
        print(f"{label:34}" + "".join(f"{median[label, b]:>10.1f}" for b in args.batches))
    for dtype in weights:
        local, bare = f"collab local {dtype}", f"bare loop {dtype}"
        print(f"{f'{local} / bare loop':34}" + "".join(f"{median[local, b] / median[bare, b]:>10.2f}"
                                                       for b in args.batches))
        print(f"{'  same, per CPU second':34}" + "".join(f"{cpu[local, b] / cpu[bare, b]:>10.2f}"
                                                         for b in args.batches))
        if args.llama_server:
            print(f"{f'{local} / llama.cpp':34}" + "".join(
                f"{median[local, b] / median['llama.cpp', b]:>10.2f}" for b in args.batches))


def parse() -> argparse.Namespace:
    default_model = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model), help="model (default: %(default)s)")
    parser.add_argument("--dtypes", nargs="+", default=["auto"], help="local engine dtypes, in turn (default: auto)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--prompt-tokens", type=int, default=80)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads")
    parser.add_argument("--llama-server", help="path of a llama-server binary: adds llama.cpp on the same GGUF")
    return parser.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
