"""The ``runs/<run-id>/`` folder: manifest, append-only event log, resume and read-back."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collab.events import (
    AnyEvent,
    EpisodeEnd,
    EpisodeStart,
    Event,
    ForkEvent,
    JudgeValue,
    JudgeVerdict,
    RunEnd,
    RunStart,
    SpanEvent,
    TurnEvent,
    parse_event,
)
from collab.log.lock import LOCK, LockHeld, RunLock
from collab.log.secrets import Scrubber

EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
SCENARIO = "scenario.yaml"
SUMMARY = "summary.json"
OWN_FILES = frozenset({EVENTS, MANIFEST, SCENARIO, SUMMARY, LOCK, "judge.json", "selection.json"})
"""What a run writes for itself; exports and reports never overwrite these."""
FLUSH_ON = (EpisodeEnd, RunStart, RunEnd, JudgeVerdict)
"""Events after which the log is flushed: episode and run boundaries."""


class StoreError(Exception):
    """The run folder cannot be written or read."""


def safe_name(name: str) -> str:
    """A run name reduced to a safe single path component."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned[:80] or "run"


@dataclass
class EpisodeRecord:
    """Everything the log holds about one finished (or in-flight) episode."""

    start: EpisodeStart
    spans: list[SpanEvent] = field(default_factory=list)
    end: EpisodeEnd | None = None
    values: list[JudgeValue] = field(default_factory=list)
    verdicts: list[JudgeVerdict] = field(default_factory=list)
    forks: list[ForkEvent] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The episode id."""
        return self.start.episode_id

    @property
    def final(self) -> EpisodeEnd:
        """The ``episode.end`` of a finished episode (a :class:`StoreError` for one still running)."""
        if self.end is None:
            raise StoreError(f"episode {self.id} has not ended")
        return self.end

    @property
    def turns(self) -> list[TurnEvent]:
        """The spans models wrote, in trace order."""
        return [span for span in self.spans if isinstance(span, TurnEvent)]

    @property
    def last_writer(self) -> str | None:
        """The agent of the last generated span (None when no model wrote)."""
        return next((s.agent for s in reversed(self.spans) if s.kind == "generated"), None)


def read_events(path: Path) -> Iterator[AnyEvent]:
    """Events of a log; a torn or garbled line (a killed writer) is skipped. Only a regular file is
    read: a device or a pipe in its place (``/dev/zero``) would never end."""
    if not path.is_file():
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 (a generator: closed by the with below)
    except (FileNotFoundError, IsADirectoryError):
        return
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                yield parse_event(line)
            except ValueError:
                continue


def add_event(episodes: dict[str, EpisodeRecord], event: AnyEvent) -> EpisodeRecord | None:
    """File ``event`` under its episode; returns the record it went to (None: not an episode's event).

    An ``episode.start`` opens a new record: a restarted episode's earlier attempt is replaced.
    """
    if isinstance(event, EpisodeStart):
        episodes[event.episode_id] = EpisodeRecord(event)
        return episodes[event.episode_id]
    record = episodes.get(getattr(event, "episode_id", ""))
    if record is None:
        return None
    if isinstance(event, SpanEvent):
        record.spans.append(event)
    elif isinstance(event, EpisodeEnd):
        record.end = event
    elif isinstance(event, JudgeValue):
        record.values.append(event)
    elif isinstance(event, JudgeVerdict):
        record.verdicts.append(event)
    elif isinstance(event, ForkEvent):
        record.forks.append(event)
    return record


def group_episodes(events: Iterable[AnyEvent]) -> dict[str, EpisodeRecord]:
    """Group episode events by episode (see :func:`add_event`)."""
    episodes: dict[str, EpisodeRecord] = {}
    for event in events:
        add_event(episodes, event)
    for record in episodes.values():  # judge events about spans the episode does not have (a hand edit)
        record.values = [v for v in record.values if v.boundary <= len(record.spans)]
        record.verdicts = [v for v in record.verdicts if v.span is None or v.span < len(record.spans)]
    return episodes


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run folder (a folder with a manifest)."""
    return (Path(path) / MANIFEST).is_file()


def open_run(path: Path, *, live: bool = False, needs: tuple[str, ...] = ()) -> RunStore:
    """The run at ``path`` (its folder, or its ``events.jsonl``); the one check of "is this a run folder".

    A run folder holds an event log (``live``: or will soon, a run just starting) and the files in
    ``needs``; anything else is a :class:`StoreError` naming what is missing.
    """
    path = Path(path)
    folder = path.parent if path.name == EVENTS else path
    required = needs if live else (EVENTS, *needs)
    missing = [name for name in required if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        raise StoreError(f"{path} is not a run folder (no {(missing or [EVENTS])[0]})")
    return RunStore(folder)


def refuse_run_file(path: Path) -> None:
    """Raise :class:`StoreError` when ``path`` is one of a run folder's own files (never overwritten)."""
    path = Path(path)
    if is_run(path.parent) and (path.name in OWN_FILES or path.name.endswith(".tmp")):
        raise StoreError(f"refusing to overwrite {path}: it belongs to the run in {path.parent}")


class RunStore:
    """One run folder. Events are appended as whole lines and flushed as they happen.

    Writers call :meth:`lock` first (one writer per folder); readers never lock. Everything
    written passes through ``scrubber``, which blanks secret values (API keys).
    """

    def __init__(self, path: Path, scrubber: Scrubber | None = None) -> None:
        self.path = Path(path)
        self.scrubber = scrubber or Scrubber()
        self._handle: Any = None
        self._lock = RunLock(self.path)

    @classmethod
    def create(cls, root: Path, name: str, run_id: str, scrubber: Scrubber | None = None) -> RunStore:
        """A new, locked run folder ``<root>/<name>-<run_id>``."""
        return cls.create_at(Path(root) / f"{safe_name(name)}-{run_id}", scrubber)

    @classmethod
    def create_at(cls, path: Path, scrubber: Scrubber | None = None) -> RunStore:
        """A new, locked run folder at ``path`` (which must not exist)."""
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as error:
            raise StoreError(f"cannot create run folder {path}: {error.strerror or error}") from error
        store = cls(path, scrubber)
        store.lock()
        return store

    def lock(self, command: str | None = None) -> None:
        """Become the folder's only writer, or raise :class:`StoreError` naming the writer there is."""
        try:
            self._lock.acquire(command)
        except LockHeld as error:
            raise StoreError(str(error)) from None
        except OSError as error:
            raise StoreError(f"cannot lock {self.path}: {error.strerror or error}") from error

    def unlock(self) -> None:
        """Close the log and let another writer in."""
        try:
            self.close()
        finally:
            self._lock.release()

    @property
    def events_path(self) -> Path:
        """The event log's path."""
        return self.path / EVENTS

    def replace(self, name: str, data: bytes) -> None:
        """Rewrite one file atomically: write beside it, fsync, rename over it."""
        target = self.path / name
        tmp = target.with_name(target.name + ".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror or error}") from error

    def write_text(self, name: str, text: str) -> None:
        """Write a text file of the run at once (secrets blanked)."""
        self.replace(name, self.scrubber.text(text).encode("utf-8", "surrogatepass"))

    def write_json(self, name: str, data: Any) -> None:
        """Write a JSON file of the run at once."""
        self.write_text(name, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        """A JSON file of the folder (None when absent); unreadable or corrupt is a :class:`StoreError`."""
        path = self.path / name
        if not path.exists():
            return None
        try:
            return json.loads(path.read_bytes())
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror or error}") from error
        except (ValueError, RecursionError) as error:
            raise StoreError(f"{path} is corrupt: {str(error)[:200]}") from None

    def open_log(self) -> None:
        """Open the event log for appending."""
        try:
            self._handle = open(self.events_path, "ab")  # noqa: SIM115 (held open while the run writes)
        except OSError as error:
            raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def emit(self, event: Event) -> None:
        """Append one event as one line; the log is flushed at every episode and run boundary.

        A kill therefore loses at most the events of episodes still in flight, and tears at most
        the last line.
        """
        if self._handle is None:
            self.open_log()
        try:
            self._handle.write(self.scrubber.line(event))
            if isinstance(event, FLUSH_ON):
                self._handle.flush()
        except OSError as error:
            raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def append(self, lines: bytes) -> None:
        """Append whole event lines another process encoded (and scrubbed), then flush them."""
        if self._handle is None:
            self.open_log()
        try:
            self._handle.write(lines)
            self._handle.flush()
        except OSError as error:
            raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def close(self) -> None:
        """Flush and close the log; a failed flush is a :class:`StoreError` (the handle is gone either way)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as error:
                raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def events(self) -> Iterator[AnyEvent]:
        """The events of the log, in order."""
        return read_events(self.events_path)

    def episodes(self) -> dict[str, EpisodeRecord]:
        """The log's events grouped by episode."""
        return group_episodes(self.events())

    def finished(self, *, include_failed: bool = True) -> dict[str, EpisodeRecord]:
        """Ended episodes (only the ok ones unless ``include_failed``)."""
        return {
            k: r for k, r in self.episodes().items()
            if r.end is not None and (include_failed or r.end.status != "failed")
        }

    def compact(self, keep: set[str]) -> None:
        """Rewrite the log keeping run-level events and the episodes in ``keep`` (used by resume)."""
        self.rewrite(e for e in self.events() if (episode := getattr(e, "episode_id", None)) is None or episode in keep)

    def rewrite(self, events: Iterable[Event]) -> None:
        """Replace the log by ``events`` at once: a reader sees the old log or the new one, never a mix.

        ``events`` may be read lazily from this log: it is closed (flushed) first.
        """
        self.close()
        self.replace(EVENTS, b"".join(self.scrubber.line(event) for event in events))
