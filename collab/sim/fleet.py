"""A run's episodes over several client processes (``--processes N``).

The parent holds the run folder's lock and is the only writer of its log; it hands each worker
its share of every phase and writes the event lines the workers send back. Each worker loads the
scenario from the run folder, opens its own engines on its own event loop and walks its episodes
under its share of the concurrency. HTTP routing depends on the episode id alone, so an episode's
requests reach the same server whichever process sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from collab.engines import Engine
from collab.engines.base import EngineStartError, generated_tokens
from collab.events import Event, PhaseStart, RunStart, parse_event
from collab.judge import AnswerChecker
from collab.log.secrets import Scrubber
from collab.log.store import MANIFEST, SCENARIO, RunStore
from collab.scenario import load
from collab.sim.driver import Runner, add_counters, open_engine
from collab.sim.loop import run_loop
from collab.sim.plan import EpisodeSpec, episode_digest
from collab.sim.stages import Schedule

STATUS_S = 0.25
"""How often a worker reports its requests in flight and tokens generated (for progress displays)."""
STOP_GRACE_S = 10.0
"""How long stopping workers may take to close their engines and report before they are terminated."""


class WorkerLost(Exception):
    """A client process ended without finishing its share (killed, out of memory, a bug)."""


@dataclass(frozen=True)
class Job:
    """One worker's part: the run folder it reads its scenario from, the folder relative paths
    start from, its share of the concurrency and the environment variables that hold secrets."""

    run_dir: Path
    base: Path
    concurrency: int
    secrets: tuple[str, ...] = ()


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that differ by at most one."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def partition(specs: list[EpisodeSpec], parts: int) -> list[list[str]]:
    """Episode ids per worker: whole problems round robin (their samples share a prompt), or single
    episodes when there are fewer problems than workers."""
    problems: dict[str, list[str]] = {}
    for spec in specs:
        problems.setdefault(spec.problem.id, []).append(spec.id)
    units = list(problems.values()) if len(problems) >= parts else [[spec.id] for spec in specs]
    shares: list[list[str]] = [[] for _ in range(parts)]
    for index, unit in enumerate(units):
        shares[index % parts].extend(unit)
    return shares


class Channel:
    """Pickled messages, each prefixed by its length, over one end of a socket pair on the running loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, conn: Connection) -> Channel:
        """A channel on ``conn``'s socket (``conn`` itself is closed)."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        return cls(*await asyncio.open_connection(sock=sock))

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue one message (:meth:`drain` waits until the other end has taken enough of them)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(len(data).to_bytes(8, "little") + data)

    async def drain(self) -> None:
        """Wait while too much is queued for the other end."""
        await self.writer.drain()

    async def recv(self) -> tuple[Any, ...]:
        """The next message; ``("lost",)`` once the other end is gone."""
        try:
            size = int.from_bytes(await self.reader.readexactly(8), "little")
            return pickle.loads(await self.reader.readexactly(size))
        except (asyncio.IncompleteReadError, OSError):
            return ("lost",)

    def close(self) -> None:
        """Close this end."""
        self.writer.close()


# -- the parent ---------------------------------------------------------------------------


async def run_fleet(runner: Runner, schedule: Schedule, jobs: list[Job], resumed: bool) -> dict[str, Any]:
    """Run ``schedule`` on one worker per job, writing through ``runner``; returns the summary."""
    return await Fleet(runner, jobs).run(schedule, resumed)


class Fleet:
    """The parent's side: starts the workers, hands out the phases, writes and shows what comes back."""

    def __init__(self, runner: Runner, jobs: list[Job]) -> None:
        self.runner = runner
        self.jobs = jobs
        self.conns: list[Channel] = []
        self.readers: list[asyncio.Task[None]] = []
        self.procs: list[BaseProcess] = []
        self.inbox: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        self.seen: list[dict[str, tuple[int, int, int]]] = [{} for _ in jobs]
        """Each worker's last status per engine: requests in flight, tokens generated, requests waiting."""
        self.lost: set[int] = set()

    async def run(self, schedule: Schedule, resumed: bool) -> dict[str, Any]:
        """Run every phase, then stop the workers and write the summary (also when interrupted)."""
        runner, store = self.runner, self.runner.store
        runner.resumed = resumed
        status, counters = "interrupted", {}
        runner.emit(RunStart(run_id=store.path.name, scenario=runner.scenario.name,
                             digest=episode_digest(runner.loaded), episodes=schedule.planned, resumed=resumed))
        try:
            started = time.perf_counter()
            runner.notify(f"starting {len(self.jobs)} client processes, each opening the engines")
            await self._start()
            described = await self._collect("ready")
            manifest = store.read_json(MANIFEST) or {}
            manifest["engines"], manifest["processes"] = described[0], len(self.jobs)
            store.write_json(MANIFEST, manifest)
            runner.generated.update({name: functools.partial(self.generated, name) for name in described[0]})
            runner.notify(f"engines ready in {time.perf_counter() - started:.1f} s in {len(self.jobs)} processes")
            for index, specs in enumerate(schedule.phases(store)):  # a phase ends in every worker before the next
                if index:
                    runner.emit(PhaseStart(episodes=len(specs)))
                for conn, ids in zip(self.conns, partition(specs, len(self.jobs)), strict=True):
                    conn.send(("phase", ids))
                await self._collect("done")
            status = "ok"
        finally:
            counters = await self._stop()
            summary = runner.finish(status, counters)
        return summary

    def generated(self, engine: str) -> int:
        """Tokens ``engine`` generated in every worker, as last reported."""
        return sum(seen.get(engine, (0, 0, 0))[1] for seen in self.seen)

    async def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # workers start deaf to Ctrl-C: it is ours
        try:
            for index, job in enumerate(self.jobs):
                here, there = context.Pipe()
                proc = context.Process(target=work, args=(there, job), name=f"collab-client-{index}", daemon=True)
                proc.start()
                there.close()
                self.procs.append(proc)
                self.conns.append(await Channel.open(here))
                self.readers.append(asyncio.create_task(self._read(index)))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    async def _read(self, index: int) -> None:
        while True:
            message = await self.conns[index].recv()
            self.inbox.put_nowait((index, message))
            if message[0] == "lost":
                return

    async def _next(self) -> tuple[int, tuple[Any, ...]]:
        """The next message that is not events or a status (those are handled here)."""
        while True:
            index, message = await self.inbox.get()
            kind = message[0]
            if kind == "events":
                self._write(message[1])
            elif kind == "status":
                self._status(index, message[1])
            else:
                return index, message

    async def _collect(self, kind: str, *, tolerant: bool = False) -> dict[int, Any]:
        """One ``kind`` message from every worker; a worker that fails raises (``tolerant``: is skipped)."""
        got: dict[int, Any] = {}
        while len(got.keys() | self.lost) < len(self.jobs):  # a worker may answer, then leave
            index, message = await self._next()
            if message[0] == kind:
                got[index] = message[1] if len(message) > 1 else None
            elif message[0] in ("lost", "error"):
                self.lost.add(index)
                self._status(index, {name: (0, generated, 0) for name, (_, generated, _) in self.seen[index].items()})
                if not tolerant:
                    raise self._failure(index, message)
        return got

    def _failure(self, index: int, message: tuple[Any, ...]) -> Exception:
        if message[0] == "error" and message[2]:
            return EngineStartError(message[1])
        if message[0] == "error":
            return WorkerLost(f"client process {index} failed: {message[1]}")
        self.procs[index].join(timeout=1.0)
        return WorkerLost(f"client process {index} ended unexpectedly (exit code {self.procs[index].exitcode})")

    def _write(self, lines: bytes) -> None:
        """Append a worker's event lines to the log and show them to the observers."""
        self.runner.store.append(lines)
        if self.runner.observers:
            for line in lines.split(b"\n")[:-1]:
                event = parse_event(line)
                for observer in self.runner.observers:
                    observer(event)

    def _status(self, index: int, now: dict[str, tuple[int, int, int]]) -> None:
        """Pass a worker's change in requests in flight and waiting on to the displays."""
        before, self.seen[index] = self.seen[index], now
        watch, waiting = self.runner.watch, self.runner.waiting
        for name, (flight, _, wait) in now.items():
            old_flight, _, old_wait = before.get(name, (0, 0, 0))
            if watch is not None and flight != old_flight:
                watch(name, flight - old_flight)
            if waiting is not None and wait != old_wait:
                waiting[name] += wait - old_wait

    async def _stop(self) -> dict[str, dict[str, Any]]:
        """Tell every worker to stop, write what they still send, sum their engines' counters."""
        for index, conn in enumerate(self.conns):
            if index not in self.lost:
                conn.send(("stop",))
        counters: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE_S):
                for share in (await self._collect("counters", tolerant=True)).values():
                    for name, stats in share.items():
                        counters[name] = add_counters(counters.get(name, {}), stats)
        for proc in self.procs:
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn, reader in zip(self.conns, self.readers, strict=True):
            reader.cancel()
            conn.close()
        return counters


# -- a worker -----------------------------------------------------------------------------


def work(conn: Connection, job: Job) -> None:
    """A worker process: walk the shares the parent sends until it says stop; Ctrl-C is the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    run_loop(_serve(conn, job))


class Outbox:
    """A worker's event lines, sent to the parent as one message per turn of the event loop."""

    def __init__(self, conn: Channel) -> None:
        self.conn = conn
        self.lines: list[bytes] = []

    def add(self, line: bytes) -> None:
        """Queue one line; the batch leaves once the loop has run what is ready."""
        if not self.lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        """Send the queued lines now."""
        if self.lines:
            lines, self.lines = self.lines, []
            self.conn.send(("events", b"".join(lines)))


class WorkerRunner(Runner):
    """A runner whose events go to the parent as encoded, scrubbed lines instead of into the log."""

    def __init__(self, loaded: Any, store: RunStore, concurrency: int, outbox: Outbox) -> None:
        self.in_flight: Counter[str] = Counter()
        super().__init__(loaded, store, concurrency, lambda engine, change: self.in_flight.update({engine: change}),
                         waiting=Counter())
        self.outbox = outbox

    def emit(self, event: Event) -> None:
        """Queue ``event`` for the parent (secrets blanked)."""
        self.outbox.add(self.store.scrubber.line(event))


async def _serve(conn: Connection, job: Job) -> None:
    """Work on ``job`` over ``conn``; a failure goes to the parent as an ``error`` message."""
    channel = await Channel.open(conn)
    try:
        await _work(channel, job)
    except Exception as error:
        start = isinstance(error, EngineStartError)
        channel.send(("error", str(error) if start else f"{type(error).__name__}: {error}", start))
    with contextlib.suppress(OSError):
        await channel.drain()
    channel.close()


async def _work(channel: Channel, job: Job) -> None:
    from collab.sim.runner import build_engines, read_inject_files  # the runner starts the fleet

    loop = asyncio.get_running_loop()
    loaded = load(job.run_dir / SCENARIO, files=False)
    store = RunStore(job.run_dir, Scrubber.from_env(job.secrets))  # read only: the parent writes
    outbox = Outbox(channel)
    runner = WorkerRunner(loaded, store, job.concurrency, outbox)
    schedule = Schedule(loaded, job.base)
    per_point = build_engines(loaded)
    engines = list({id(engine): engine for point in per_point for engine in point.values()}.values())
    for engine in engines:
        if isinstance(getattr(engine, "waiting", None), Counter):
            engine.waiting = runner.waiting  # type: ignore[attr-defined]
    files = read_inject_files(loaded.scenario, job.base)
    counters: dict[str, dict[str, Any]] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            described = {engine.name: await open_engine(stack, engine, store.scrubber) for engine in engines}
            channel.send(("ready", described))
            stack.callback(lambda: counters.update({engine.name: engine.counters() for engine in engines}))
            settings = loaded.scenario.judge
            checker = await stack.enter_async_context(
                AnswerChecker(workers=settings.workers, timeout_s=settings.timeout_s))
            gate = runner.gate(engines)
            reporter = loop.create_task(_report(channel, outbox, runner, engines))
            stack.callback(reporter.cancel)
            inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
            listener = loop.create_task(_listen(channel, inbox))
            stack.callback(listener.cancel)
            phases = schedule.phases(store, record=False)
            while (message := await inbox.get())[0] == "phase":
                wanted = set(message[1])
                specs = [spec for spec in next(phases) if spec.id in wanted]
                if len(specs) != len(wanted):
                    raise RuntimeError(f"planned {len(specs)} of the {len(wanted)} episodes the parent handed out")
                walk = loop.create_task(runner.walk(specs, per_point, schedule.pools, files, checker, gate))
                heard = loop.create_task(inbox.get())
                await asyncio.wait({walk, heard}, return_when=asyncio.FIRST_COMPLETED)
                if heard.done():  # told to stop in the middle of a phase
                    walk.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await walk
                    break
                heard.cancel()
                walk.result()
                outbox.flush()
                channel.send(("done",))
    finally:
        outbox.flush()
    channel.send(("counters", counters))


async def _listen(channel: Channel, inbox: asyncio.Queue[tuple[Any, ...]]) -> None:
    """The parent's messages into ``inbox``; a lost parent reads as ``stop``."""
    while (message := await channel.recv())[0] != "lost":
        inbox.put_nowait(message)
    inbox.put_nowait(("stop",))


async def _report(conn: Channel, outbox: Outbox, runner: WorkerRunner, engines: list[Engine]) -> None:
    """Every :data:`STATUS_S`, the engines' requests in flight, tokens generated and requests waiting."""
    while True:
        await asyncio.sleep(STATUS_S)
        outbox.flush()  # events first: the display counts an episode's turns before its end
        waiting = runner.waiting or Counter()
        conn.send(("status", {engine.name: (runner.in_flight[engine.name], generated_tokens(engine) or 0,
                                            waiting[engine.name]) for engine in engines}))
        await conn.drain()
