"""Opening the files a scenario names: regular files only, text as UTF-8, sizes bounded."""

from __future__ import annotations

import re
from pathlib import Path

from collab.data.errors import DataError

MAX_TEXT_BYTES = 1 << 20
"""Largest inject file (1 MiB)."""
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def regular_file(path: Path) -> Path:
    """``path`` when it is a readable regular file; else a :class:`DataError` saying what it is."""
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise DataError(str(path), None, f"{kind}; expected a data file")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise DataError(str(path), None, f"cannot read: {error.strerror or error}") from None
    return path


def decode_line(raw: bytes, path: Path, line: int) -> str:
    """One line of a UTF-8 text file, or a :class:`DataError` at ``file:line`` naming the column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(str(path), line, f"not UTF-8 text at column {error.start + 1} "
                        "(save the file as UTF-8)") from None


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """A whole UTF-8 text file of at most ``limit`` bytes."""
    with open(regular_file(path), "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise DataError(str(path), None, f"larger than the {limit >> 10} KiB allowed")
    if b"\0" in raw:
        raise DataError(str(path), raw.count(b"\n", 0, raw.index(b"\0")) + 1, "not text (holds NUL bytes)")
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        decode_line(line, path, number)
    return raw.decode("utf-8")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 file can hold) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)
