"""Authoring: load a scenario file, apply overrides and sweeps, and check it."""

from collab.scenario.errors import Problem, ScenarioError
from collab.scenario.schema import Scenario
from collab.scenario.sweep import Loaded, Point, load

__all__ = ["Loaded", "Point", "Problem", "Scenario", "ScenarioError", "load"]
