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


class JudgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, le=3_600)
    """Hard timeout of one Math-Verify check (in a worker process)."""
    workers: int = Field(2, ge=1, le=64)
    """Math-Verify worker processes."""
    attribution: AttributionSettings = AttributionSettings(method="none")
