"""The judge: final answers (Math-Verify in worker processes), values at span boundaries, attribution."""

from collab.judge.answers import AnswerChecker, Grade, extract_answer, response_text
from collab.judge.attribution import summarize_verdicts
from collab.judge.episode import Judgement, judge_episode
from collab.judge.rejudge import judge_run
from collab.judge.settings import AttributionSettings, JudgeSettings
from collab.judge.values import Probe

__all__ = [
    "AnswerChecker", "AttributionSettings", "Grade", "JudgeSettings", "Judgement", "Probe", "extract_answer",
    "judge_episode", "judge_run", "response_text", "summarize_verdicts",
]
