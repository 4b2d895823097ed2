"""The ``collab`` command line: thin wrappers over the library."""

from __future__ import annotations

import sys

try:  # a Ctrl-C while the command line loads ends it quietly (exit 130, no traceback)
    import argparse
    import asyncio
    import shlex
    from collections import Counter
    from collections.abc import Callable
    from pathlib import Path

    from rich.console import Console

    from collab.data.errors import DataError
    from collab.engines.base import EngineStartError
    from collab.log.store import StoreError
    from collab.scenario import Loaded, ScenarioError, load
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

console = Console()
errors = Console(stderr=True)

USAGE_ERROR = 2
INTERRUPTED = 130


def cmd_validate(args: argparse.Namespace) -> int:
    """``collab validate``: check scenarios, print their problems."""
    status = 0
    for path in args.paths:
        try:
            loaded = load(path, args.set)
        except ScenarioError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            status = USAGE_ERROR
            continue
        named = unreadable_files(loaded, Path(path).resolve().parent)
        if named:
            print(*named, sep="\n", file=sys.stderr)
            status = USAGE_ERROR
            continue
        points = len(loaded.points)
        console.print(f"{path}: ok ({len(loaded.scenario.agents)} agents, {points} sweep point{'s' * (points != 1)})",
                      markup=False, highlight=False, soft_wrap=True)
    return status


def unreadable_files(loaded: Loaded, base: Path) -> list[str]:
    """One line per file the scenario (at any sweep point) names that is missing or unreadable."""
    from collab.data.check import check_files

    lines = [str(loaded.source.problem(loc, str(error)))
             for point in loaded.points for loc, error in check_files(point.scenario, base)]
    return list(dict.fromkeys(lines))


def cmd_graph(args: argparse.Namespace) -> int:
    """``collab graph``: draw a scenario's turn graph."""
    from collab.scenario.drawing import draw

    console.print(draw(load(args.path, args.set).scenario), markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    """``collab new``: write a scenario from a template."""
    from collab.scenario.templates import write_template

    written = write_template(args.template, Path(args.path))
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """``collab simulate``: run or resume a scenario with a progress display."""
    from collab.display.progress import ProgressDisplay
    from collab.sim.fleet import WorkerLost
    from collab.sim.loop import run_loop
    from collab.sim.runner import RunOptions, parse_shard, simulate

    if args.path is None and args.resume is None:
        print("simulate needs a scenario file or --resume RUN", file=sys.stderr)
        return USAGE_ERROR
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    options = RunOptions(
        overrides=args.set, out=Path(args.out), limit=args.limit, samples=args.samples,
        concurrency=args.concurrency, model=args.model, dry_run=args.dry_run,
        resume=Path(args.resume) if args.resume else None, retry_failed=args.retry_failed, shard=shard,
        processes=args.processes,
    )
    in_flight: Counter[str] = Counter()
    options.watch = lambda engine, change: in_flight.update({engine: change})
    display = ProgressDisplay(errors, quiet=args.quiet, in_flight=in_flight, generated=options.generated,
                              waiting=options.waiting)
    options.notify, options.warn = display.notice, display.warn
    try:
        with display:
            result = run_loop(simulate(Path(args.path) if args.path else None, options, [display]))
    except WorkerLost as error:
        saved = "no episode had finished: nothing was saved" if options.run_dir is None else (
            f"finished episodes are saved. Resume with: collab simulate --resume {shlex.quote(str(options.run_dir))}")
        print(f"error: {error}; {saved}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.unraisablehook = lambda _: None  # objects closed mid-way by the interrupt may complain as they go
        if options.run_dir is None:
            print("interrupted before any episode finished: nothing was saved", file=sys.stderr)
        else:
            print("interrupted: finished episodes are saved. Resume with: collab simulate --resume "
                  f"{shlex.quote(str(options.run_dir))}", file=sys.stderr)
        return INTERRUPTED
    summary = result.summary
    accuracy = summary["accuracy"]
    staged = sum(a["episodes"] for stage in summary.get("stages", {}).values() for a in stage.values())
    console.print(
        (f"{staged} stage episodes; " if staged else "")
        + f"{summary['ok']} episodes ok, {summary['failed']} failed, "
        + (f"{summary['skipped']} skipped, " if summary.get("skipped") else "") + "accuracy "
        f"{'-' if accuracy is None else f'{accuracy:.1%}'}", markup=False, highlight=False,
    )
    if staged and not summary["episodes"]:
        console.print("no problem was selected for the main episodes: see selection.json in the run folder",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"run: {result.path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """``collab judge``: re-judge a finished run."""
    from rich.progress import Progress

    from collab.display.judgement import judgement_view
    from collab.sim.rejudge import rejudge

    with Progress(console=errors, transient=True) as bar:
        task = bar.add_task("judging episodes", total=None)
        summary = asyncio.run(rejudge(Path(args.run), method=args.method, samples=args.samples, replace=args.replace,
                                      forks=args.forks,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total)))
    if args.json:
        console.print_json(data=summary)
    else:
        console.print(judgement_view(summary), soft_wrap=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``collab serve``: launch the servers a scenario's engines need."""
    from collab.engines.http.serve import main as serve

    return serve(load(args.path, args.set).scenario.engines)


def cmd_merge(args: argparse.Namespace) -> int:
    """``collab merge``: merge the shards of a run into one run."""
    from collab.log.merge import merge

    path = merge([Path(run) for run in args.runs], Path(args.out))
    console.print(f"run: {path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """``collab replay``: play a run's episodes in the terminal."""
    from collab.display.replay import ReplayOptions, replay
    from collab.log.select import SelectError

    options = ReplayOptions(episode=args.episode, speed=args.speed, follow=args.follow, static=args.static,
                            where=args.where)
    try:
        return replay(Path(args.run), options, console)
    except SelectError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return USAGE_ERROR


def cmd_report(args: argparse.Namespace) -> int:
    """``collab report``: tables, report.md and plots of runs."""
    from collab.report.tables import report

    return report([Path(args.run), *map(Path, args.compare)], Path(args.out) if args.out else None, console)


def cmd_show(args: argparse.Namespace) -> int:
    """``collab show``: one episode, whole or as HTML."""
    from collab.display.show import show
    from collab.log.select import SelectError

    try:
        return show(Path(args.run), args.episode, Path(args.html) if args.html else None, console)
    except SelectError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return USAGE_ERROR


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="collab", description="Multi-agent collaboration on one reasoning trace.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help, description=help)
        command.set_defaults(handler=handler)
        return command

    validate = add("validate", cmd_validate, "check scenario files")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    graph = add("graph", cmd_graph, "draw a scenario's turn graph")
    graph.add_argument("path")
    graph.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    new = add("new", cmd_new, "write a commented starter scenario")
    new.add_argument("template", choices=["relay", "weak-then-strong", "interjector"])
    new.add_argument("path")

    simulate = add("simulate", cmd_simulate, "run a scenario into a run folder")
    simulate.add_argument("path", nargs="?")
    simulate.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    simulate.add_argument("--limit", type=positive, help="first N problems only")
    simulate.add_argument("--samples", type=positive, help="samples per problem and sweep point")
    simulate.add_argument("--concurrency", type=positive, help="episodes in flight at once")
    simulate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a scenario field, e.g. agents.a.temperature=0.8")
    simulate.add_argument("--model", help="point every local engine at this model (hub id, folder or .gguf)")
    simulate.add_argument("--dry-run", action="store_true", help="replace every engine by the scripted engine")
    simulate.add_argument("--resume", metavar="RUN", help="finish an interrupted run folder")
    simulate.add_argument("--retry-failed", action="store_true", help="with --resume: run failed episodes again")
    simulate.add_argument("--quiet", action="store_true", help="log lines instead of a live display")
    simulate.add_argument("--shard", metavar="I/N", help="run only slice I of N (0 <= I < N) of the episodes")
    simulate.add_argument("--processes", type=positive, default=1, metavar="N",
                          help="client processes sending requests (HTTP engines; default 1): add some when one "
                               "core is busy before the servers are")

    judge = add("judge", cmd_judge, "re-judge a finished run from its log, without re-simulating")
    judge.add_argument("run")
    judge.add_argument("--method", choices=["probe", "answers", "rollouts"], help="default: the scenario's judge block")
    judge.add_argument("--samples", type=positive, help="probes or rollouts per span boundary")
    judge.add_argument("--replace", action="store_true",
                       help="make this the run's judgement (default: keep the earlier one, write this one beside it)")
    judge.add_argument("--json", action="store_true", help="print the judge summary as JSON")
    judge.add_argument("--forks", action="store_true",
                       help="also fork the handoff boundaries (the scenario's judge.forks, else all, with `same` "
                            "and every writer)")

    serve = add("serve", cmd_serve, "launch an SGLang server for every sglang engine with model and port")
    serve.add_argument("path")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    merge = add("merge", cmd_merge, "combine shard runs into one run")
    merge.add_argument("runs", nargs="+")
    merge.add_argument("--out", default="runs", help="folder for the merged run (default: runs)")

    replay = add("replay", cmd_replay, "watch a run's episodes grow span by span (keys: n p space s q)")
    replay.add_argument("run", help="run folder")
    replay.add_argument("--episode", metavar="ID", help="episode id (or prefix) to show or start from")
    replay.add_argument("--speed", type=float, default=150.0, metavar="TOK_S",
                        help="tokens per second (default 150; 0 shows each episode whole)")
    replay.add_argument("--follow", action="store_true",
                        help="attach to a run being written; play running episodes as their turns are logged")
    replay.add_argument("--static", action="store_true", help="print the episodes once, without animation")
    replay.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="filter, e.g. correct=false, verdict=derailed, agent=b, tokens=32 (repeat to AND)")

    report = add("report", cmd_report, "tables, report.md and plots for one run or runs side by side")
    report.add_argument("run", help="run folder")
    report.add_argument("--compare", nargs="+", default=[], metavar="RUN", help="more run folders to set beside it")
    report.add_argument("--out", metavar="DIR", help="folder for report.md and plots/ (default: the run folder)")

    show = add("show", cmd_show, "print one episode, or export it as a self-contained HTML page")
    show.add_argument("run", help="run folder")
    show.add_argument("--episode", required=True, metavar="ID", help="episode id (or prefix)")
    show.add_argument("--html", metavar="FILE", help="write the episode as HTML here instead of printing it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except ScenarioError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return USAGE_ERROR
    except (DataError, StoreError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except EngineStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
