"""Reading JSONL and Parquet rows with their line numbers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collab.data.errors import DataError


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` for each record of a ``.jsonl`` or ``.parquet`` file (row number for Parquet)."""
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(str(path), None, "reading Parquet needs pyarrow: pip install 'collab[parquet]'") from None
        for index, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield index, row
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(str(path), number, f"invalid JSON: {error.msg} (column {error.colno})") from None
            if not isinstance(row, dict):
                raise DataError(str(path), number, "expected a JSON object per line")
            yield number, row


def require(row: dict[str, Any], fields: list[str], path: Path, line: int) -> None:
    """Fail with the file and line when ``row`` lacks one of ``fields``."""
    missing = [f for f in fields if row.get(f) in (None, "")]
    if missing:
        have = ", ".join(sorted(row)) or "none"
        raise DataError(str(path), line, f"missing field(s) {', '.join(missing)}; have {have}")
