"""Load scenario YAML safely, keep every value's position, and explain errors by position."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from collab.scenario.errors import (
    Loc,
    Problem,
    ScenarioError,
    dotted,
    fields_at,
    unknown_key_message,
)
from collab.scenario.schema import Scenario


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key `{key}`", key_node.start_mark
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Source:
    """Raw scenario data with the position of every key and value."""

    file: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[tuple[str, ...], str] = field(default_factory=dict)
    """The places ``--set`` overrides wrote, with the override as given."""

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> Problem:
        path = data_path(self.data, loc) if not at_key else loc
        return self.place(path, dotted(path), message, at_key=at_key)

    def place(self, path: Loc, name: str, message: str, *, at_key: bool = False) -> Problem:
        """A problem at ``path``: at the ``--set`` that wrote it, else at its line and column in the file."""
        parts = tuple(str(part) for part in path)
        written = [text for loc, text in self.overrides.items() if parts[:len(loc)] == loc or loc[:len(parts)] == parts]
        if written:
            return Problem(f"--set {written[-1]}", 0, 0, name, message)
        line, column = self.position(path, at_key=at_key)
        return Problem(self.file, line, column, name, message)

    def position(self, path: Loc, *, at_key: bool = False) -> tuple[int, int]:
        if at_key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)


def _marks(node: yaml.Node, path: Loc, source: Source) -> None:
    source.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            source.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _marks(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _marks(item, path + (index,), source)


def parse_yaml(text: str, file: str) -> Source:
    try:
        data = yaml.load(text, Loader=_Loader)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise ScenarioError([Problem(file, line, column, "", f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as error:
        raise ScenarioError([Problem(file, 1, 1, "", f"invalid YAML: {error}")]) from None
    source = Source(file, data)
    if node is not None:
        _marks(node, (), source)
    if not isinstance(data, dict):
        raise ScenarioError([Problem(file, 1, 1, "", "a scenario is a mapping of fields (name, engines, agents, graph, ...)")])
    return source


def data_path(data: Any, loc: Loc) -> Loc:
    """The parts of a pydantic error location that are in the data (drops union tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if (isinstance(current, dict) and part in current) or (isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)):
            current = current[part]
            path.append(part)
    return tuple(path)


def explain(error: ValidationError, source: Source) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc: Loc = tuple(item["loc"])
        path = data_path(source.data, loc)
        if item["type"] == "extra_forbidden":
            key = str(path[-1]) if path else str(loc[-1])
            parent: Any = source.data
            for part in path[:-1]:
                parent = parent[part]
            valid = fields_at(Scenario, path[:-1], parent)
            problems.append(source.problem(path, unknown_key_message(key, valid), at_key=True))
            continue
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            path, message = path + (loc[-1],), "required field is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error") and not isinstance(
            item["input"], (dict, list)
        ):
            message += f" (got {item['input']!r})"
        problems.append(source.place(path, dotted(path), message))
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    return [p for p in problems if not (str(p) in seen or seen.add(str(p)))]


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path (``agents.a.temperature``) in raw scenario data, creating mappings."""
    parts = path.split(".")
    current: Any = data
    for part in parts[:-1]:
        if isinstance(current, list):
            current = current[int(part)]
            continue
        if not isinstance(current.get(part), (dict, list)):
            current[part] = {}
        current = current[part]
    if isinstance(current, list):
        current[int(parts[-1])] = value
    else:
        current[parts[-1]] = value


def validate(data: dict[str, Any], source: Source) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(explain(error, source)) from None


def load_source(path: str | Path) -> Source:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError([Problem(str(path), 1, 1, "", f"cannot read scenario: {error.strerror or error}")]) from None
    return parse_yaml(text, str(path))


def with_overrides(source: Source, overrides: list[str]) -> Source:
    """Apply ``key=value`` overrides (values parsed as YAML) to a copy of the raw data."""
    data = copy.deepcopy(source.data)
    written = dict(source.overrides)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ScenarioError([Problem(f"--set {override}", 0, 0, "", "expected key=value")])
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as error:
            reason = getattr(error, "problem", None) or error
            problem = Problem(f"--set {override}", 0, 0, key, f"the value is not valid YAML: {reason}")
            raise ScenarioError([problem]) from None
        try:
            set_path(data, key.strip(), value)
        except (ValueError, IndexError, AttributeError, TypeError):
            raise ScenarioError([Problem(f"--set {override}", 0, 0, key, "no such place in the scenario")]) from None
        written[tuple(key.strip().split("."))] = override
    return Source(source.file, data, source.values, source.keys, written)
