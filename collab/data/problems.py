"""Problems: local JSONL/Parquet files, Hugging Face datasets, known benchmark names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collab.data.errors import DataError
from collab.data.jsonl import read_rows, require, text_field
from collab.scenario.schema import DatasetConfig

if TYPE_CHECKING:
    from collab.data.pools import Pool

# Benchmark names for `dataset: {source: NAME}`: a Hugging Face dataset, its split and field names.
KNOWN: dict[str, dict[str, Any]] = {
    "math500": {"hf": "HuggingFaceH4/MATH-500", "split": "test", "fields": {"id": "unique_id"}},
    "aime24": {"hf": "HuggingFaceH4/aime_2024", "split": "train"},
    "aime25": {"hf": "yentinglin/aime_2025", "split": "train"},
    "gsm8k": {"hf": "openai/gsm8k", "config": "main", "split": "test", "fields": {"problem": "question"}},
}


@dataclass(frozen=True)
class MathProblem:
    """A math problem with its reference answer."""

    id: str
    problem: str
    answer: str
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _rows_to_problems(rows: Iterable[tuple[int, dict[str, Any]]], fields: dict[str, str], name: str,
                      path: Path) -> list[MathProblem]:
    key = {k: fields.get(k, k) for k in ("id", "problem", "answer", "source")}
    problems: list[MathProblem] = []
    for line, row in rows:
        require(row, [key["problem"], key["answer"]], path, line)
        ident = text_field(row, key["id"], path, line, numbers=True)
        problems.append(MathProblem(
            id=ident or f"{name}-{line}",
            problem=text_field(row, key["problem"], path, line) or "",
            answer=text_field(row, key["answer"], path, line, numbers=True) or "",
            source=text_field(row, key["source"], path, line) or name,
            extra={k: v for k, v in row.items() if k not in key.values()},
        ))
    return problems


def _hf_rows(name: str, config: str | None, split: str) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise DataError(name, None, "Hugging Face datasets need: pip install 'collab[hf]'") from None
    try:
        table = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # network, auth, missing split: all end the same way
        raise DataError(name, None, f"cannot load Hugging Face dataset: {error}") from None
    return enumerate(table, start=1)


def load_problems(config: DatasetConfig, base: Path, pools: Mapping[str, Pool] | None = None) -> list[MathProblem]:
    """The problems a scenario's ``dataset:`` names, with ``ids`` and ``limit`` applied (``pools``: the
    loaded pools, for ``dataset: {pool: NAME}``)."""
    if config.pool:
        if pools is None or config.pool not in pools:
            raise DataError(f"pool {config.pool}", None, "the dataset's pool is not loaded")
        problems = pools[config.pool].problems()
    elif config.file:
        path = Path(config.file) if Path(config.file).is_absolute() else base / config.file
        problems = _rows_to_problems(read_rows(path), config.fields, path.stem, path)
    else:
        known = KNOWN.get(config.source or "", {})
        if config.source and not known:
            known_names = ", ".join(sorted(KNOWN))
            raise DataError(config.source, None, f"unknown benchmark; known: {known_names} (or use file:/hf:)")
        name = config.hf or known["hf"]
        fields = {**known.get("fields", {}), **config.fields}
        split = known.get("split", config.split) if config.source else config.split
        rows = _hf_rows(name, config.config or known.get("config"), split)
        problems = _rows_to_problems(rows, fields, name.split("/")[-1], Path(name))
    if config.ids is not None:
        wanted = set(config.ids)
        problems = [p for p in problems if p.id in wanted]
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise DataError(config.file or config.hf or config.pool or str(config.source), None,
                            f"duplicate problem id {problem.id!r}")
        seen.add(problem.id)
    return problems[: config.limit] if config.limit else problems
