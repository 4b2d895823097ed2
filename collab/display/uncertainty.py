"""The strip under a span written with an uncertainty trigger: per-token entropy as a sparkline."""

from __future__ import annotations

from typing import Any

from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 64
"""Strip cells at most; longer spans show each cell as the highest entropy of its tokens."""
QUANTUM = 10
"""Recorded figures are tenths (see the ``uncertainty`` field of turn events)."""


def uncertainty_strip(profile: dict[str, Any] | None, width: int = WIDTH) -> Text | None:
    """A sparkline of the span's entropy (scaled to the rule's threshold: red at or above it) and a caption
    saying where the trigger fired; ``None`` for a span without a profile."""
    if not profile or not profile.get("entropy"):
        return None
    entropy = [h / QUANTUM for h in profile["entropy"]]
    threshold = profile.get("rule", {}).get("entropy")
    top = max(threshold or 0.0, *entropy) or 1.0
    per = -(-len(entropy) // max(1, width))  # tokens per cell
    line = Text("  ")
    for start in range(0, len(entropy), per):
        level = max(entropy[start : start + per])
        style = "red" if threshold is not None and level >= threshold else ("yellow" if level >= top / 2 else "green")
        line.append(BARS[min(len(BARS) - 1, int(level / top * len(BARS)))], style)
    at = profile.get("at")
    if at is not None:
        line.append("▶", "bold red")
    line.append(f"  entropy mean {profile.get('mean_entropy') or 0:.2f} max {profile.get('max_entropy') or 0:.2f}",
                "dim")
    if at is not None:
        crossed = profile.get("crossed")
        rule = " ".join(f"{k} {v}" for k, v in profile.get("rule", {}).items())
        line.append(f" · handed off at token {at} ({crossed:.2f}; {rule})", "red")
        if profile.get("discarded"):
            line.append(f" · {profile['discarded']} tok discarded", "dim")
    return line
