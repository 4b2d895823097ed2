"""The Off-Trajectory Reasoning paper's twin tests (recoverability, guidability): metrics and tables."""
