"""Errors in data files, placed at ``file:line``."""

from __future__ import annotations


class DataError(Exception):
    """A dataset or trajectory file that cannot be used, with the place that is wrong."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line = file, line
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
