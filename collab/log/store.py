"""The ``runs/<run-id>/`` folder: manifest, append-only event log, resume and read-back."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
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
    SpanEvent,
    TurnEvent,
    parse_event,
)

EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
SCENARIO = "scenario.yaml"
SUMMARY = "summary.json"
FLUSH_ON = frozenset({"episode.end", "run.start", "run.end", "judge.verdict"})


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
        return self.start.episode_id

    @property
    def turns(self) -> list[TurnEvent]:
        """The spans models wrote, in trace order."""
        return [span for span in self.spans if isinstance(span, TurnEvent)]

    @property
    def last_writer(self) -> str | None:
        """The agent of the last generated span (None when no model wrote)."""
        return next((s.agent for s in reversed(self.spans) if s.kind == "generated"), None)


def read_events(path: Path) -> Iterator[AnyEvent]:
    """Events of a log; a torn or garbled line (a killed writer) is skipped."""
    try:
        handle = open(path, "rb")
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


def group_episodes(events: Iterator[AnyEvent] | list[AnyEvent]) -> dict[str, EpisodeRecord]:
    """Group episode events; a restarted episode's earlier attempt is replaced by the later one."""
    episodes: dict[str, EpisodeRecord] = {}
    for event in events:
        if isinstance(event, EpisodeStart):
            episodes[event.episode_id] = EpisodeRecord(event)
            continue
        record = episodes.get(getattr(event, "episode_id", ""))
        if record is None:
            continue
        if isinstance(event, SpanEvent):
            record.spans.append(event)
        elif isinstance(event, EpisodeEnd):
            record.end = event
        elif isinstance(event, JudgeValue):
            record.values.append(event)
        elif isinstance(event, JudgeVerdict):
            record.verdicts.append(event)
    return episodes


class RunStore:
    """One run folder. Events are appended as whole lines and flushed as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: Any = None

    @classmethod
    def create(cls, root: Path, name: str, run_id: str) -> RunStore:
        path = Path(root) / f"{safe_name(name)}-{run_id}"
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as error:
            raise StoreError(f"cannot create run folder {path}: {error.strerror or error}") from error
        return cls(path)

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    def write_text(self, name: str, text: str) -> None:
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror or error}") from error

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def open_log(self) -> None:
        try:
            self._handle = open(self.events_path, "ab")
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
            if event.type in FLUSH_ON:
                self._handle.flush()
        except OSError as error:
            raise StoreError(f"cannot write {self.events_path}: {error.strerror or error}") from error

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        """Remove the run folder (a run that never started an episode leaves nothing behind)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def events(self) -> Iterator[AnyEvent]:
        return read_events(self.events_path)

    def episodes(self) -> dict[str, EpisodeRecord]:
        return group_episodes(self.events())

    def finished(self, *, include_failed: bool = True) -> dict[str, EpisodeRecord]:
        return {
            k: r for k, r in self.episodes().items()
            if r.end is not None and (include_failed or r.end.status == "ok")
        }

    def compact(self, keep: set[str]) -> None:
        """Rewrite the log keeping run-level events and the episodes in ``keep`` (used by resume)."""
        self.close()
        lines: list[bytes] = []
        for event in self.events():
            episode = getattr(event, "episode_id", None)
            if episode is None or episode in keep:
                lines.append(event.model_dump_json().encode() + b"\n")
        tmp = self.events_path.with_suffix(".jsonl.tmp")
        try:
            tmp.write_bytes(b"".join(lines))
            os.replace(tmp, self.events_path)
        except OSError as error:
            raise StoreError(f"cannot rewrite {self.events_path}: {error.strerror or error}") from error
