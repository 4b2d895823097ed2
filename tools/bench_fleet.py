"""Client throughput of ``collab simulate --processes N`` against minimal loopback SGLang servers.

Each server is a separate process answering ``POST /generate`` with a fixed 8-token completion (a raw
asyncio protocol, so that it costs the shared cores as little as possible). Each client is the real
command line (``collab simulate ... --processes N``) in a subprocess, on a one-agent scenario of
``--turns`` requests per episode. Over the steady state (10 % to 90 % of the requests, start-up and
tail excluded) it prints, side by side:

- requests per second the servers answered;
- client CPU (the client's whole process tree from /proc: the writer, its workers, judge workers);
- requests per client core-second: what one client core sustains, the figure that scales with cores;
- client CPU per request (ms) and the client cores ``--target`` requests/s would take at that rate;

plus the same for a plain aiohttp loop posting the same body on the same event loop (uvloop when
installed): the floor of the HTTP stack. With ``--variants`` it repeats each count of processes with
uvloop and orjson hidden from the client.

    python tools/bench_fleet.py --processes 1 2 --episodes 2000 --turns 16 --concurrency 500 --servers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _name in filter(None, os.environ.get("BENCH_HIDE", "").split(",")):  # hidden from spawned workers too
    sys.modules[_name] = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COLLAB_SHARED", ROOT.parent / "shared"))
OUTPUT = list(range(1000, 1008))
ANSWER = json.dumps({"text": " and so we add the two numbers", "output_ids": OUTPUT, "meta_info": {
    "prompt_tokens": 200, "completion_tokens": len(OUTPUT), "cached_tokens": 192,
    "finish_reason": {"type": "length"}}}).encode()
SCENARIO = """\
name: bench-fleet
samples: {samples}
concurrency: {concurrency}
dataset: {{file: {data}}}
engines: {{e: {{kind: sglang, urls: {urls}, tokenizer: {tokenizer}, retries: 0}}}}
agents: {{a: {{engine: e}}}}
graph:
  start: a
  turns: {{a: {{until: {{tokens: 8, align: token}}}}}}
  edges: [a->a]
limits: {{max_turns: {turns}}}
judge: {{attribution: {{method: none}}, workers: 1}}
"""


def reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


GENERATE, EMPTY = reply(ANSWER), reply(b"{}")


class Handler(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every request answered at once, ``/generate`` counted."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.buf = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            generate = head.startswith(b"post /generate ")
            del self.buf[:end + 4 + length]
            if generate:
                self.counter.value += 1
            self.transport.write(GENERATE if generate else EMPTY)


def serve(port: int, counter: Any, ready: Any) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: Handler(counter), "127.0.0.1", port,
                                                                backlog=4096)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its living descendants (from /proc; exited ones are gone)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        here = todo.pop()
        try:
            fields = Path(f"/proc/{here}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{here}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_client(args: argparse.Namespace, root: Path, urls: list[str], counters: list[Any], processes: int,
               hide: str) -> dict[str, float]:
    """One ``collab simulate`` run; the steady state's requests/s, client CPU and requests per client core-s."""
    problems = max(1, args.episodes // 10)
    (root / "bench.yaml").write_text(SCENARIO.format(
        samples=10, concurrency=args.concurrency, data=root / "problems.jsonl", urls=json.dumps(urls),
        tokenizer=json.dumps(str(args.tokenizer)), turns=args.turns))
    expected = problems * 10 * args.turns
    before = sum(c.value for c in counters)
    env = {**os.environ, "BENCH_HIDE": hide, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    command = [sys.executable, __file__, "--client", "simulate", str(root / "bench.yaml"), "--quiet",
               "--out", str(root / "runs"), "--processes", str(processes)]
    client = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marks: list[tuple[float, int, float]] = []
    while client.poll() is None:
        time.sleep(0.1)
        done = sum(c.value for c in counters) - before
        marks.append((time.perf_counter(), done, tree_cpu(client.pid)))
    if client.returncode:
        raise SystemExit(f"client failed: {client.stderr.read() if client.stderr else ''}")
    steady = [m for m in marks if 0.1 * expected <= m[1] <= 0.9 * expected]
    if len(steady) < 2:
        raise SystemExit("run too short to measure: raise --episodes")
    (t0, n0, c0), (t1, n1, c1) = steady[0], steady[-1]
    return {"rps": (n1 - n0) / (t1 - t0), "cores": (c1 - c0) / (t1 - t0), "per_core": (n1 - n0) / max(c1 - c0, 1e-9),
            "requests": marks[-1][1]}


def run(main: Any) -> Any:
    """``main`` on the event loop collab runs on: uvloop's when installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def plain_aiohttp(url: str, total: int, concurrency: int) -> dict[str, float]:
    """The floor: one process posting the same body with aiohttp as fast as the server answers."""
    import aiohttp

    body = {"input_ids": list(range(200)), "sampling_params": {"max_new_tokens": 8, "temperature": 1.0},
            "rid": "x", "stream": False}
    left = total
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url + "/generate", json=body) as resp:
                    json.loads(await resp.read())

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rps": total / wall, "cores": cpu / wall, "per_core": total / cpu, "requests": total}


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        from collab.cli import main as cli

        raise SystemExit(cli(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=16, help="requests per episode")
    parser.add_argument("--concurrency", type=int, default=500, help="episodes in flight per server")
    parser.add_argument("--servers", type=int, default=2, help="loopback server processes")
    parser.add_argument("--variants", action="store_true", help="also run without uvloop, orjson, or both")
    parser.add_argument("--tokenizer", type=Path, default=SHARED / "tokenizers" / "qwen2.5")
    parser.add_argument("--port", type=int, default=38100)
    parser.add_argument("--target", type=int, default=15000, help="requests/s to project client cores for")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    counters = [context.Value("q", 0, lock=False) for _ in range(args.servers)]
    readies = [context.Event() for _ in range(args.servers)]
    servers = [context.Process(target=serve, args=(args.port + i, counters[i], readies[i]), daemon=True)
               for i in range(args.servers)]
    for server in servers:
        server.start()
    for ready in readies:
        ready.wait(30)
    urls = [f"http://127.0.0.1:{args.port + i}" for i in range(args.servers)]
    hides = [("", "uvloop+orjson")]
    if args.variants:
        hides += [("uvloop", "orjson only"), ("orjson", "uvloop only"), ("uvloop,orjson", "stdlib")]
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            with open(root / "problems.jsonl", "w") as handle:
                for i in range(max(1, args.episodes // 10)):
                    handle.write(json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)})
                                 + "\n")
            for hide, label in hides:
                for processes in args.processes:
                    rows.append((f"collab --processes {processes} ({label})",
                                 run_client(args, root, urls, counters, processes, hide)))
                    print(f"{rows[-1][0]:<44} done", file=sys.stderr)
        rows.append(("plain aiohttp, 1 process", run(plain_aiohttp(urls[0], 20000, args.concurrency))))
    finally:
        for server in servers:
            server.terminate()
    print(f"{os.cpu_count()} cores; {args.servers} server processes; {args.turns} requests per episode; "
          f"{args.concurrency} episodes in flight per server")
    print(f"{'client':<44} {'req/s':>8} {'client cores':>13} {'req/s per client core':>22} "
          f"{'client CPU ms/req':>18} {f'cores for {args.target:,} req/s':>24}")
    for label, row in rows:
        print(f"{label:<44} {row['rps']:>8,.0f} {row['cores']:>13.2f} {row['per_core']:>22,.0f} "
              f"{1000 / row['per_core']:>18.3f} {args.target / row['per_core']:>24.1f}")


if __name__ == "__main__":
    main()
