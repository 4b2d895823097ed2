"""`collab report` renders whatever the simulator can produce: every proportion, every sweep shape."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from runlog import end_run, start_run, write_episode

from collab.report.figures import point_order
from collab.report.intervals import wilson
from collab.report.plots import AccuracyPoint, accuracy_plot
from collab.report.tables import report


def test_wilson_holds_the_proportion_for_every_count_up_to_1000() -> None:
    for n in range(1, 1001):
        for k in range(n + 1):
            low, high = wilson(k, n)  # type: ignore[misc]
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n)


counts = st.integers(1, 1000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.lists(counts, max_size=8), max_size=4), numeric=st.booleans())
def test_accuracy_plot_draws_any_counts(tmp_path: Path, runs: list[list[tuple[int, int]]], numeric: bool) -> None:
    series = {}
    for r, points in enumerate(runs):
        series[f"run {r}"] = [
            AccuracyPoint(str(i), float(i) if numeric else None, k / n, *wilson(k, n))  # type: ignore[misc]
            for i, (k, n) in enumerate(points)
        ]
    assert accuracy_plot(series, None, tmp_path / "accuracy.png").stat().st_size > 0


def test_sweep_points_sort_by_number() -> None:
    points = [{"tokens": 128}, {"tokens": 16}, {"tokens": 64}, {"tokens": "all"}]
    assert [p["tokens"] for p in sorted(points, key=point_order)] == [16, 64, 128, "all"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(episodes=st.lists(st.tuples(st.sampled_from([16, 64, 128, 0.5]), st.sampled_from([True, False, None])),
                         max_size=12))
def test_report_renders_empty_one_point_and_many_point_sweeps(
        tmp_path_factory, episodes: list[tuple[float, bool | None]]) -> None:
    path = tmp_path_factory.mktemp("run")
    store = start_run(path, episodes=len(episodes))
    for i, (tokens, correct) in enumerate(episodes):
        write_episode(store, f"ep{i}", point={"graph.turns.a.until.tokens": tokens}, correct=correct,
                      values=[1.0, 0.0, 0.0, 1.0, float(bool(correct))], t=1000.0 * (i + 1))
    end_run(store)
    console = Console(file=io.StringIO(), width=140)
    assert report([path], None, console) == 0
    assert (path / "report.md").exists()
