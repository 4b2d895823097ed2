"""Single key presses from a terminal, without waiting for Enter (POSIX terminals only)."""

from __future__ import annotations

import os
import select
import sys
from typing import Any

try:
    import termios
    import tty
except ImportError:  # not a POSIX system: the replay runs without keys
    termios = None  # type: ignore[assignment]

ESCAPES = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left"}


def available() -> bool:
    """Keys work when stdin is a terminal we can put in cbreak mode."""
    return termios is not None and sys.stdin.isatty()


class Keys:
    """A context that puts stdin in cbreak mode (Ctrl-C still interrupts) and restores it after."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self._saved: Any = None

    def __enter__(self) -> Keys:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> list[str]:
        """Keys pressed within ``timeout`` seconds: characters, or up/down/left/right for arrows."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 64).decode(errors="ignore")
        keys: list[str] = []
        while data:
            name = next((n for seq, n in ESCAPES.items() if data.startswith(seq)), None)
            if name is not None:
                keys.append(name)
                data = data[3:]
            else:
                keys.append(data[0])
                data = data[1:]
        return keys
