"""The scenario's ``judge:`` block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AttributionSettings(BaseModel):
    """How the judge attributes derails and rescues (``judge.attribution``)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["probe", "answers", "rollouts", "none"] = "probe"
    """probe: the probe agent's final answer at each boundary (thinking closed, a few tokens); rollouts: K
    continuations per boundary; answers: no model calls, follows the answers spans commit to."""
    probe: str | None = None
    """Agent whose answers or rollouts estimate values; default the episode's last writer."""
    samples: int = Field(4, ge=1, le=1_000)
    """Answers (probe) or rollouts per span boundary; greedy probes send one."""
    temperature: float | None = Field(None, ge=0)
    """Sampling temperature of probes and rollouts; default 0 (greedy) for probe, the agent's for rollouts."""
    max_tokens: int = Field(1024, ge=1)
    """Token budget of one rollout."""
    answer_tokens: int = Field(16, ge=1)
    """Tokens a probe (or a rollout that ran out of budget) gets to finish ``The final answer is $\\boxed{``."""
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
    """The ``judge:`` block: grading workers, timeout and attribution."""

    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, le=3_600)
    """Hard timeout of one Math-Verify check (in a worker process)."""
    workers: int = Field(2, ge=1, le=64)
    """Math-Verify worker processes."""
    attribution: AttributionSettings = AttributionSettings(method="none")
    forks: ForkSettings | None = None
    """Counterfactual forks at handoff boundaries (none by default; ``collab judge RUN --forks`` adds them)."""
