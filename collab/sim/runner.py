"""Assembling a run: options, the scenario with its overrides, the run folder, engines and schedule
(:mod:`collab.sim.driver` drives the episodes)."""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collab import __version__
from collab.data.files import read_text
from collab.engines import Engine, build_engine
from collab.engines.base import EngineStartError
from collab.log.secrets import Scrubber
from collab.log.store import MANIFEST, SCENARIO, RunStore, StoreError, is_run
from collab.scenario import Loaded, Problem, ScenarioError, load
from collab.scenario.graph import engines_in_use
from collab.scenario.loader import load_source, with_overrides
from collab.scenario.schema import Scenario, ScriptedEngineConfig
from collab.sim.driver import Observer, Runner
from collab.sim.plan import episode_digest
from collab.sim.requests import RequestWatcher
from collab.sim.stages import Schedule


@dataclass
class RunOptions:
    """How to run a scenario; everything that changes what episodes are goes through ``overrides``."""

    overrides: list[str] = field(default_factory=list)
    out: Path = Path("runs")
    limit: int | None = None
    samples: int | None = None
    concurrency: int | None = None
    model: str | None = None
    dry_run: bool = False
    resume: Path | None = None
    retry_failed: bool = False
    watch: RequestWatcher | None = None
    """Told when each request leaves for an engine and when it is back (for progress displays)."""
    generated: dict[str, Callable[[], int | None]] = field(default_factory=dict)
    """Per engine, its count of generated tokens so far, running requests included (for progress displays)."""
    notify: Callable[[str], None] | None = None
    """Told, as one line each, what the run is doing before its first episode (loading models)."""
    warn: Callable[[str], None] | None = None
    """Told, as one line each, what the user should know about how the run was set up."""
    waiting: Counter[str] = field(default_factory=Counter)
    """Requests waiting for a server to come back per engine (every server down), kept current."""
    shard: tuple[int, int] | None = None
    """``(i, n)``: run only the episodes whose id falls in slice i of n (0 <= i < n)."""
    processes: int = 1
    """Client processes the episodes are spread over (this one writes the log; see :mod:`collab.sim.fleet`)."""
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    run_dir: Path | None = None
    """Set by :func:`simulate` once the run folder exists (for an interrupted run's resume hint)."""


def shortcut_overrides(path: Path, options: RunOptions) -> list[str]:
    """``--limit``, ``--samples``, ``--model`` and ``--dry-run`` as ``--set`` overrides."""
    extra: list[str] = []
    if options.limit is not None:
        extra.append(f"dataset.limit={options.limit}")
    if options.samples is not None:
        extra.append(f"samples={options.samples}")
    if options.concurrency is not None:
        extra.append(f"concurrency={options.concurrency}")
    engines = with_overrides(load_source(path), options.overrides).data.get("engines") or {}
    local = {name: config.get("model") for name, config in engines.items()
             if isinstance(config, dict) and config.get("kind") == "local"}
    for name, config in engines.items():
        if options.dry_run:  # scripted settings given with --set (latency_s, script) are kept
            kept = {k: v for k, v in config.items() if k in ScriptedEngineConfig.model_fields} if isinstance(
                config, dict) else {}
            extra.append(f"engines.{name}={json.dumps({**kept, 'kind': 'scripted'})}")
        elif options.model and name in local:
            extra.append(f"engines.{name}.model={json.dumps(options.model)}")
    if options.model and not options.dry_run and len(set(local.values())) > 1 and options.warn is not None:
        options.warn(f"note: --model runs {options.model} for every local engine ({', '.join(sorted(local))}), "
                     "which named different models: their agents now share one model")
    return list(options.overrides) + extra


def build_engines(loaded: Loaded) -> list[dict[str, Engine]]:
    """Per sweep point, the engines it uses by name: one engine per distinct configuration."""
    built: dict[str, Engine] = {}
    per_point: list[dict[str, Engine]] = []
    for point in loaded.points:
        engines: dict[str, Engine] = {}
        used = engines_in_use(point.scenario)
        for name, config in point.scenario.engines.items():
            if name not in used:
                continue
            key = f"{name}:{config.model_dump_json()}"
            if key not in built:
                try:
                    built[key] = build_engine(name, config)
                except Exception as error:  # e.g. a tokenizer that cannot be found
                    raise EngineStartError(f"engine {name} could not be built: {error}") from error
            engines[name] = built[key]
        per_point.append(engines)
    return per_point


def read_inject_files(scenario: Scenario, base: Path) -> dict[str, str]:
    """The texts of the scenario's ``inject: {file: ...}`` sources."""
    files: dict[str, str] = {}
    for agent in scenario.agents.values():
        if agent.inject is not None and agent.inject.file is not None:
            files[agent.inject.file] = read_text(_resolve(base, agent.inject.file))
    return files


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ValueError(f"--shard takes i/n with 0 <= i < n, got {text!r}")
    return int(index), int(count)


def in_shard(episode_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether an episode falls in shard ``(i, n)`` (every episode without shards)."""
    return shard is None or int(episode_id, 16) % shard[1] == shard[0]


def _resolve(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


@dataclass
class RunResult:
    """A finished run: its folder and summary."""

    path: Path
    summary: dict[str, Any]


def prepare(path: Path, options: RunOptions) -> tuple[Loaded, Path]:
    """The loaded scenario (with overrides) and the folder its relative paths start from."""
    if options.resume is not None:
        manifest = resumable(options.resume)
        return load(options.resume / SCENARIO, files=False), Path(manifest["base_dir"])
    return load(path, shortcut_overrides(path, options)), path.resolve().parent


def resumable(folder: Path) -> dict[str, Any]:
    """The manifest of a run folder that can be resumed, or a :class:`StoreError` saying why not."""
    if not folder.is_dir():
        raise StoreError(f"{folder}: no such run folder")
    if not is_run(folder):
        raise StoreError(f"{folder} is not a run folder (no {MANIFEST})")
    manifest = RunStore(folder).read_json(MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("base_dir"), str):
        raise StoreError(f"{folder / MANIFEST} is corrupt (no base_dir)")
    return manifest


def check_processes(loaded: Loaded, processes: int) -> None:
    """Refuse more than one client process for local engines: each process would load its own model."""
    local = sorted({name for point in loaded.points for name, engine in point.scenario.engines.items()
                    if engine.kind == "local" and name in engines_in_use(point.scenario)})
    if processes > 1 and local:
        raise ScenarioError([Problem("--processes", 1, 1, "engines", f"local engines ({', '.join(local)}) run "
                                     "in this process: each client process would load its own model. Use "
                                     "--processes 1, or serve the model (collab serve) and use an HTTP engine")])


def secret_names(loaded: Loaded) -> set[str]:
    """The environment variables that hold the scenario's API keys."""
    return {name for point in loaded.points for engine in point.scenario.engines.values()
            if (name := getattr(engine, "api_key_env", None))}


async def simulate(path: Path | None, options: RunOptions, observers: list[Observer] | None = None) -> RunResult:
    """Run (or resume) a scenario; returns the run folder and its summary.

    The run folder is locked for the whole run. A new run that ends (by an error or an interrupt)
    before any episode finished leaves no folder behind.
    """
    if options.resume is not None:
        loaded, base = prepare(options.resume, options)
        check_processes(loaded, options.processes)
        store = RunStore(options.resume, Scrubber.from_env(secret_names(loaded)))
        store.lock()
        shard = (store.read_json(MANIFEST) or {}).get("shard")
        options.shard = tuple(shard) if shard else None
        keep = set(store.finished(include_failed=not options.retry_failed))
        store.compact(keep)
    else:
        assert path is not None
        loaded, base = prepare(path, options)
        check_processes(loaded, options.processes)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        name = loaded.scenario.name + (f"-shard{options.shard[0]}of{options.shard[1]}" if options.shard else "")
        store = RunStore.create(options.out, name, run_id, Scrubber.from_env(secret_names(loaded)))
        keep = set()
    options.run_dir = store.path
    try:
        if options.resume is None:
            _write_new_run(store, loaded, path, base, options)
        schedule = Schedule(loaded, base, lambda i: i not in keep and in_shard(i, options.shard),
                            sharded=options.shard is not None)
        runner = Runner(loaded, store, options.concurrency, options.watch, observers, waiting=options.waiting,
                        generated=options.generated, notify=options.notify)
        processes = min(options.processes, runner.concurrency)
        if processes > 1:
            from collab.sim.fleet import Job, run_fleet, split

            jobs = [Job(store.path, base, share, tuple(secret_names(loaded)))
                    for share in split(runner.concurrency, processes)]
            summary = await run_fleet(runner, schedule, jobs, resumed=options.resume is not None)
        else:
            summary = await runner.run(schedule, build_engines(loaded), read_inject_files(loaded.scenario, base),
                                       resumed=options.resume is not None)
    except BaseException:
        if options.resume is None and not store.finished():
            with sigint_held():  # a second Ctrl-C must not leave half a folder, or a hint to a removed one
                with contextlib.suppress(StoreError):
                    store.unlock()
                shutil.rmtree(store.path, ignore_errors=True)
                options.run_dir = None
        raise
    finally:
        store.unlock()
    return RunResult(store.path, summary)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Hold off Ctrl-C (delivered on leaving) in the main thread; elsewhere nothing to hold."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _write_new_run(store: RunStore, loaded: Loaded, path: Path | None, base: Path, options: RunOptions) -> None:
    store.write_text(SCENARIO, yaml.safe_dump(loaded.source.data, sort_keys=False, allow_unicode=True))
    store.write_json(MANIFEST, {
        "collab": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "argv": options.argv, "scenario": str(path), "base_dir": str(base), "seed": loaded.scenario.seed,
        "digest": episode_digest(loaded), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "shard": list(options.shard) if options.shard else None,
    })
