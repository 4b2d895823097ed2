"""Scenario errors that point at ``file:line:column``."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario, already placed in its file."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file  # line 0: a --set override
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ScenarioError(Exception):
    """A scenario that cannot run; ``problems`` says every place that is wrong."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def dotted(loc: Loc) -> str:
    """A location as ``a.b[0].c``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types behind Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def fields_at(root: type[BaseModel], path: Loc, mapping: Any = None) -> set[str]:
    """Field names valid in ``mapping`` at ``path`` (data path, union tags already removed)."""
    candidates: list[Any] = [root]
    for part in path:
        following: list[Any] = []
        for candidate in candidates:
            for kind in _unwrap(candidate):
                origin = typing.get_origin(kind)
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    field = kind.model_fields.get(str(part)) or next(
                        (f for f in kind.model_fields.values() if f.alias == part), None
                    )
                    if field is not None:
                        following.append(field.annotation)
                elif origin is dict:
                    following.append(typing.get_args(kind)[1])
                elif origin is list and isinstance(part, int):
                    following.append(typing.get_args(kind)[0])
        candidates = following
    models = [
        kind for candidate in candidates for kind in _unwrap(candidate)
        if isinstance(kind, type) and issubclass(kind, BaseModel)
    ]
    tag = mapping.get("kind") if isinstance(mapping, dict) else None
    tagged = [m for m in models
              if "kind" in m.model_fields and tag in typing.get_args(m.model_fields["kind"].annotation)]
    return {f.alias or n for m in (tagged or models) for n, f in m.model_fields.items()}


def unknown_key_message(key: str, valid: set[str]) -> str:
    """Says a key is unknown, suggesting the closest valid ones."""
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    expected = ", ".join(sorted(valid)) if valid else "no keys here"
    return f"unknown key `{key}`{hint}; expected one of: {expected}"
