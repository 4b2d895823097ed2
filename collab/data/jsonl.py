"""Reading JSONL and Parquet rows with their line numbers, and typed fields of those rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collab.data.errors import DataError
from collab.data.files import clean_text, decode_line, regular_file


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` for each record of a ``.jsonl`` or ``.parquet`` file (row number for Parquet)."""
    regular_file(path)
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = decode_line(raw, path, number)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(str(path), number, f"invalid JSON: {error.msg} (column {error.colno})") from None
            except RecursionError:
                raise DataError(str(path), number, "invalid JSON: nested too deeply") from None
            except ValueError as error:  # e.g. an integer of thousands of digits
                raise DataError(str(path), number, f"invalid JSON: {str(error)[:120]}") from None
            if not isinstance(row, dict):
                raise DataError(str(path), number, "expected a JSON object per line")
            yield number, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(str(path), None, "reading Parquet needs pyarrow: pip install 'collab[parquet]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several kinds for a corrupt or foreign file
        raise DataError(str(path), None, f"cannot read as Parquet: {str(error)[:200]}") from None
    yield from enumerate(rows, start=1)


def require(row: dict[str, Any], fields: list[str], path: Path, line: int) -> None:
    """Fail with the file and line when ``row`` lacks one of ``fields``."""
    missing = [f for f in fields if row.get(f) in (None, "")]
    if missing:
        have = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(str(path), line, f"missing field(s) {', '.join(missing)}; have {have}")


def text_field(row: dict[str, Any], key: str, path: Path, line: int, *, numbers: bool = False) -> str | None:
    """``row[key]`` as text: a string (or, with ``numbers``, an integer or a number); None when absent.

    Anything else (a boolean, a list, an object) is a :class:`DataError` at ``file:line``.
    """
    value = row.get(key)
    if value is None or isinstance(value, str):
        return None if value is None else clean_text(value)
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    expected = "a string or a number" if numbers else "a string"
    raise DataError(str(path), line, f"field `{key}` must be {expected}, got {_shown(value)}")


def bool_field(row: dict[str, Any], key: str, path: Path, line: int) -> bool | None:
    """``row[key]`` as true, false or None (absent or null); anything else is a :class:`DataError`."""
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise DataError(str(path), line, f"field `{key}` must be true, false or null, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
