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

MAX_BYTES = 1 << 20
"""Largest scenario file read (1 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in a scenario."""
MAX_NODES = 100_000
"""Most values a scenario may hold once every alias is expanded (bounds YAML alias bombs)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate and complex keys and bounds nesting."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name or number, not a list or mapping", key_node.start_mark
            )
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
        """A problem at the place of ``loc`` in the file."""
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
        """The line and column of ``path`` (of its key when ``at_key``)."""
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
            child = (*path, key_node.value)
            source.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _marks(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _marks(item, (*path, index), source)


def expanded_size(node: yaml.Node, sizes: dict[int, int] | None = None) -> int:
    """How many values ``node`` holds with every alias expanded (linear in the composed graph)."""
    sizes = {} if sizes is None else sizes
    if id(node) not in sizes:
        sizes[id(node)] = MAX_NODES + 1  # an alias cycle counts as too large
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += expanded_size(child, sizes)
            if total > MAX_NODES:
                break
        sizes[id(node)] = total
    return sizes[id(node)]


def _compose(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node) > MAX_NODES:
            raise ScenarioError([Problem(file, 1, 1, "", f"over {MAX_NODES:,} values once aliases are expanded")])
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str) -> Source:
    """Parse YAML keeping every node's place; duplicate keys and bad YAML are problems."""
    try:
        data, node = _compose(text, file)
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
        raise ScenarioError([Problem(file, 1, 1, "",
                                     "a scenario is a mapping of fields (name, engines, agents, graph, ...)")])
    return source


def data_path(data: Any, loc: Loc) -> Loc:
    """The parts of a pydantic error location that are in the data (drops union tags)."""
    path: list[str | int] = []
    current: Any = data
    for part in loc:
        if isinstance(current, dict) and part in current:  # noqa: SIM114 (one branch per type keeps mypy exact)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def explain(error: ValidationError, source: Source) -> list[Problem]:
    """Validation errors as problems at their places in the file."""
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
            path, message = (*path, loc[-1]), "required field is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error") and not isinstance(
            item["input"], (dict, list)
        ):
            message += f" (got {item['input']!r})"
        problems.append(source.place(path, dotted(path), message))
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(str(problem), problem)
    return list(unique.values())


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
    """The scenario of ``data``, or a :class:`ScenarioError` placed in ``source``."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(explain(error, source)) from None


def load_source(path: str | Path) -> Source:
    """Read and parse a scenario file."""
    path = Path(path)
    return parse_yaml(read_text(path), str(path))


def read_text(path: Path) -> str:
    """A scenario file's text: a regular UTF-8 text file of at most ``MAX_BYTES``."""
    def fail(message: str, line: int = 1, column: int = 1) -> ScenarioError:
        return ScenarioError([Problem(str(path), line, column, "", message)])

    try:
        if not path.is_file():
            raise fail("cannot read scenario: " + ("not a regular file" if path.exists() else "no such file"))
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise fail(f"cannot read scenario: {error.strerror or error}") from None
    if len(raw) > MAX_BYTES:
        raise fail(f"scenario file larger than {MAX_BYTES >> 20} MiB")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise fail("the file is UTF-16; save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise fail("not UTF-8 text (a binary file?)", line, column) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise fail("not text: holds NUL characters (a binary file?)", line)
    return text


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
