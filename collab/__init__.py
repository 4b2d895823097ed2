"""collab: a multi-agent collaboration simulator for LLM reasoning on one shared trace."""

__version__ = "0.1.0"
