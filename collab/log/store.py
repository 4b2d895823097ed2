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
    JudgeValue,
    JudgeVerdict,
    RunEnd,
    RunStart,
    SpanEvent,
    parse_event,
)

EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
SCENARIO = "scenario.yaml"
SUMMARY = "summary.json"
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
    def last_writer(self) -> str | None:
        """The agent of the last generated span (None when no model wrote)."""
        return next((s.agent for s in reversed(self.spans) if s.kind == "generated"), None)


def read_events(path: Path) -> Iterator[AnyEvent]:
    """Events of a log; a torn or garbled line (a killed writer) is skipped."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the `with` below; a missing log reads as empty)
    except FileNotFoundError:
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
    return record


def group_episodes(events: Iterable[AnyEvent]) -> dict[str, EpisodeRecord]:
    """Group episode events by episode (see :func:`add_event`)."""
    episodes: dict[str, EpisodeRecord] = {}
    for event in events:
        add_event(episodes, event)
    return episodes


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


class RunStore:
    """One run folder. Events are appended as whole lines and flushed as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: Any = None

    @classmethod
    def create(cls, root: Path, name: str, run_id: str) -> RunStore:
        """A new, empty run folder named after the run under ``root``."""
        path = Path(root) / f"{safe_name(name)}-{run_id}"
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as error:
            raise StoreError(f"cannot create run folder {path}: {error.strerror or error}") from error
        return cls(path)

    @property
    def events_path(self) -> Path:
        """The event log's path."""
        return self.path / EVENTS

    def write_text(self, name: str, text: str) -> None:
        """Write a file of the run at once (via a temporary file)."""
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror or error}") from error

    def write_json(self, name: str, data: Any) -> None:
        """Write a JSON file of the run at once."""
        self.write_text(name, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        """A JSON file of the run (None when it is not there)."""
        path = self.path / name
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def open_log(self) -> None:
        """Open the event log for appending."""
        try:
            self._handle = open(self.events_path, "ab")  # noqa: SIM115 (held open for the run; see close)
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
            self._handle.write(event.model_dump_json().encode() + b"\n")
            if isinstance(event, FLUSH_ON):
                self._handle.flush()
        except OSError as error:
            raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def close(self) -> None:
        """Close the event log."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

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
            if r.end is not None and (include_failed or r.end.status == "ok")
        }

    def compact(self, keep: set[str]) -> None:
        """Rewrite the log keeping run-level events and the episodes in ``keep`` (used by resume)."""
        self.rewrite(e for e in self.events() if (episode := getattr(e, "episode_id", None)) is None or episode in keep)

    def rewrite(self, events: Iterable[Event]) -> None:
        """Replace the log by ``events`` at once: a reader sees the old log or the new one, never a mix.

        ``events`` may be read lazily from this log: it is closed (flushed) first.
        """
        self.close()
        lines = b"".join(event.model_dump_json().encode() + b"\n" for event in events)
        tmp = self.events_path.with_suffix(".jsonl.tmp")
        try:
            tmp.write_bytes(lines)
            os.replace(tmp, self.events_path)
        except OSError as error:
            raise StoreError(f"cannot rewrite {self.events_path}: {error.strerror or error}") from error
