"""The judge: final answers (Math-Verify in worker processes), values at span boundaries, attribution.

Pure functions of traces: nothing here reads or writes a run folder.
"""

from collab.judge.answers import AnswerChecker, Grade, extract_answer, response_text
from collab.judge.episode import Judgement, judge_episode
from collab.judge.values import Probe

__all__ = ["AnswerChecker", "Grade", "Judgement", "Probe", "extract_answer", "judge_episode", "response_text"]
