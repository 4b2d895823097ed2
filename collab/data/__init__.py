"""Problems from datasets, and pools of trajectories."""

from collab.data.errors import DataError
from collab.data.problems import MathProblem, load_problems
from collab.data.pools import Pool, Trajectory, load_pool

__all__ = ["DataError", "MathProblem", "Pool", "Trajectory", "load_pool", "load_problems"]
