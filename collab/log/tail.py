"""Reading a run's event log as it grows (``collab replay --follow``)."""

from __future__ import annotations

import os
from pathlib import Path

from collab.events import AnyEvent, EpisodeEnd, EpisodeStart, RunEnd, RunStart, parse_event
from collab.log.store import EVENTS, EpisodeRecord, add_event


class LogTail:
    """Episodes of ``events.jsonl`` kept up to date by ``poll()``; only whole lines are read.

    ``finished`` lists ended episodes in the order they ended; ``ended`` says the writer has
    logged ``run.end`` (a resumed run starts again with ``run.start``).
    """

    def __init__(self, run: Path) -> None:
        self.path = Path(run) / EVENTS
        self._reset()

    def _reset(self) -> None:
        self.episodes: dict[str, EpisodeRecord] = {}
        self.finished: list[str] = []
        self.ended = False
        self._offset = 0

    def poll(self) -> bool:
        """Read what was appended since the last poll; returns whether anything was."""
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._offset:  # rewritten (a resume compacts the log)
                    self._reset()
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return False
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(whole)
        for line in whole.splitlines():
            try:
                self._add(parse_event(line))
            except ValueError:
                continue
        return bool(whole)

    def _add(self, event: AnyEvent) -> None:
        if isinstance(event, (RunStart, RunEnd)):
            self.ended = isinstance(event, RunEnd)
            return
        record = add_event(self.episodes, event)
        if isinstance(event, EpisodeStart) and event.episode_id in self.finished:
            self.finished.remove(event.episode_id)  # restarted: it ends again later
        elif isinstance(event, EpisodeEnd) and record is not None:
            self.finished.append(record.id)

    def records(self, in_flight: bool = False) -> list[EpisodeRecord]:
        """Finished episodes in the order they ended; with ``in_flight``, then the running ones in the
        order they started (their records grow as their spans are logged)."""
        done = [self.episodes[key] for key in self.finished]
        running = [record for record in self.episodes.values() if record.end is None] if in_flight else []
        return done + running
