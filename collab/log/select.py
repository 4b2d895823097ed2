"""Picking episodes of a run: ``--episode`` id prefixes and ``--where key=value`` filters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collab.log.store import EpisodeRecord


class SelectError(ValueError):
    """A filter or episode id that cannot be used."""


def _correct(record: EpisodeRecord) -> set[str]:
    return {"none" if record.end is None or record.end.correct is None else str(record.end.correct).lower()}


FIELDS: dict[str, Callable[[EpisodeRecord], set[str]]] = {
    "correct": _correct,
    "status": lambda r: {r.end.status if r.end else "running"},
    "verdict": lambda r: {v.verdict for v in r.verdicts},
    "agent": lambda r: {s.agent for s in r.spans},
    "problem": lambda r: {r.start.problem_id},
    "sample": lambda r: {str(r.start.sample)},
    "end": lambda r: {r.end.end_reason if r.end else ""},
    "stage": lambda r: {r.start.stage or "none"},
}
"""Episode facts a filter can test; any other key names a sweep key (or its last parts)."""


@dataclass(frozen=True)
class Where:
    """``key=value`` (some value matches) or ``key!=value`` (none does); case-insensitive."""

    key: str
    value: str
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> Where:
        """A ``KEY=VALUE`` filter."""
        negate = "!=" in text
        key, sep, value = text.partition("!=" if negate else "=")
        if not sep or not key.strip():
            raise SelectError(f"bad filter {text!r}: expected key=value or key!=value")
        return cls(key.strip(), value.strip().lower(), negate)

    def facts(self, record: EpisodeRecord) -> set[str]:
        """What a record says about the filter's key."""
        if self.key in FIELDS:
            return {f.lower() for f in FIELDS[self.key](record)}
        return {str(v).lower() for k, v in record.start.point.items() if k == self.key or k.endswith("." + self.key)}

    def __call__(self, record: EpisodeRecord) -> bool:
        """Whether the record passes."""
        return (self.value in self.facts(record)) != self.negate


def select(records: list[EpisodeRecord], wheres: list[Where]) -> list[EpisodeRecord]:
    """The records that pass every filter."""
    return [r for r in records if all(where(r) for where in wheres)]


def find(records: list[EpisodeRecord], prefix: str) -> EpisodeRecord | None:
    """The episode whose id starts with ``prefix``; ``None`` when there is none yet."""
    found = [r for r in records if r.id == prefix] or [r for r in records if r.id.startswith(prefix)]
    if len(found) > 1:
        raise SelectError(f"episode id {prefix!r} is ambiguous: {', '.join(r.id for r in found[:5])}")
    return found[0] if found else None


def describe_fields() -> str:
    """The keys ``--where`` knows, for help texts."""
    return ", ".join(FIELDS) + " or a sweep key"
