"""Problems from datasets, and pools of trajectories."""

from collab.data.errors import DataError
from collab.data.pools import Pool, Trajectory, load_pool
from collab.data.problems import MathProblem, load_problems

__all__ = ["DataError", "MathProblem", "Pool", "Trajectory", "load_pool", "load_problems"]
