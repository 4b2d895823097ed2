"""Seeds derived from a scenario's seed: stable across machines and Python versions."""

from __future__ import annotations

import hashlib
from typing import Any


def stable_int(*parts: Any) -> int:
    """A 31-bit integer from ``parts``: the same on every machine and Python version."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
