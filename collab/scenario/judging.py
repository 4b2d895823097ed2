"""The scenario's ``judge:`` block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AttributionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["answers", "rollouts", "none"] = "answers"
    """answers: cheap, follows the answers spans commit to; rollouts: K continuations per boundary."""
    probe: str | None = None
    """Agent whose rollouts estimate values; default the episode's last writer."""
    samples: int = Field(4, ge=1, le=1_000)
    """Rollouts per span boundary."""
    max_tokens: int = Field(1024, ge=1)
    """Token budget of one rollout."""
    answer_tokens: int = Field(32, ge=1)
    """Tokens a rollout that ran out of budget gets to finish ``The final answer is $\\boxed{``."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Value change that makes a span derail or rescue the trajectory."""


class ForkSettings(BaseModel):
    """Counterfactual forks: from the exact prefix at handoff boundaries, other agents continue to the end."""

    model_config = ConfigDict(extra="forbid")
    at: Literal["all"] | list[str] = "all"
    """Boundaries to fork at: before every span but the first (``all``), or before the named turns."""
    alternatives: list[str] = ["same"]
    """Who continues in a fork: agent names, or ``same`` (the writer before the boundary, no handoff)."""
    samples: int = Field(4, ge=1)
    """Continuations per alternative and boundary."""
    max_tokens: int = Field(1024, ge=1)
    """Token budget of one continuation (then it is made to answer, as rollouts are)."""
    answer_tokens: int = Field(32, ge=1)
    concurrency: int = Field(16, ge=1)
    """Continuations in flight at once per episode."""


class JudgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, le=3_600)
    """Hard timeout of one Math-Verify check (in a worker process)."""
    workers: int = Field(2, ge=1, le=64)
    """Math-Verify worker processes."""
    attribution: AttributionSettings = AttributionSettings(method="none")
    forks: ForkSettings | None = None
    """Counterfactual forks at handoff boundaries (none by default; ``collab judge RUN --forks`` adds them)."""
