"""The uncertainty trigger on the scripted engine: where it fires, what the trace keeps, the edge back."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.cli import main
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """\
name: uncertain
dataset: {{file: {data}, limit: 1}}
engines:
  e:
    kind: scripted
    uncertain: ["Wait"]
    script:
      small: ["We add 2 and 3 to get 5. Wait, maybe 6.", " So it is 5.</think>\\n\\nThe answer is $\\\\boxed{{5}}$."]
      big: "Check: 2 + 3 = 5. "
agents:
  small: {{engine: e}}
  big: {{engine: e}}
graph:
  start: small
  turns:
    small: {{until: {{uncertain: {rule}, align: {align}}}}}
    big: {{until: {{tokens: 6, align: token}}}}
  edges:
    - {{from: small, to: big, when: uncertain}}
    - {{from: big, to: small, repeat: 3}}
"""


def simulate(tmp_path: Path, rule: str, align: str = "token"):
    (tmp_path / "s.yaml").write_text(SCENARIO.format(data=ROOT / "scenarios/data/demo.jsonl", rule=rule, align=align))
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    (record,) = RunStore(run).episodes().values()
    return record


def test_hands_off_just_before_the_uncertain_token(tmp_path: Path) -> None:
    record = simulate(tmp_path, "{entropy: 1.0, chunk: 16}")
    spans = [(s.agent, s.text, s.trigger) for s in record.spans]
    assert spans == [
        ("small", "We add 2 and 3 to get 5. ", "uncertain"),  # "Wait" is the writer's uncertain moment
        ("big", "Check:", "tokens"),
        ("small", " So it is 5.</think>\n\nThe answer is $\\boxed{5}$.", "eos"),
    ]
    first = record.spans[0]
    profile = first.uncertainty
    assert profile["at"] == 25 and profile["discarded"] == 32 - 25  # the second chunk ran 7 tokens past it
    assert profile["entropy"] == [4] * 25 and profile["crossed"] == pytest.approx(2.079, abs=1e-3)
    assert first.requests == 2 and first.ids[next(iter(first.ids))] == list(b"We add 2 and 3 to get 5. ")
    assert record.spans[1].uncertainty is None
    assert record.end.answer == "5"
    # the next request of the episode extends the kept tokens, not the discarded ones
    assert all(s.extends for s in record.spans if s.type == "turn")


def test_window_and_alignment(tmp_path: Path) -> None:
    """Over a window of 3, the mean crosses 1.0 at the second uncertain token; then on to the sentence end."""
    record = simulate(tmp_path, "{entropy: 1.0, window: 3}", align="sentence")
    first = record.spans[0]
    assert first.text == "We add 2 and 3 to get 5. Wait, maybe 6." and first.trigger == "uncertain"
    assert first.uncertainty["at"] == 26 and len(first.uncertainty["entropy"]) == len(first.text)
    assert record.spans[1].agent == "big"


def test_logprob_floor(tmp_path: Path) -> None:
    record = simulate(tmp_path, "{logprob: -1.0}")
    assert record.spans[0].text == "We add 2 and 3 to get 5. " and record.spans[0].uncertainty["logprob"][0] == -1


def test_no_crossing_no_handoff(tmp_path: Path) -> None:
    record = simulate(tmp_path, "{entropy: 2.5}")  # above ln 8: never crosses
    assert [s.agent for s in record.spans] == ["small"] and record.spans[0].trigger == "yield"
    assert record.spans[0].uncertainty["at"] is None and record.end.end_reason == "graph_end"


def test_uncertain_needs_a_threshold(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO.format(data=ROOT / "scenarios/data/demo.jsonl", rule="{window: 2}",
                                                     align="token"))
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
