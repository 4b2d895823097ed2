"""The ``collab`` command line: thin wrappers over the library."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Callable

from rich.console import Console

from collab.data.errors import DataError
from collab.scenario import ScenarioError, load
from collab.store import StoreError

console = Console()
errors = Console(stderr=True)

USAGE_ERROR = 2


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            loaded = load(path, args.set)
        except ScenarioError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            status = USAGE_ERROR
            continue
        points = len(loaded.points)
        console.print(f"{path}: ok ({len(loaded.scenario.agents)} agents, {points} sweep point{'s' * (points != 1)})",
                      markup=False, highlight=False, soft_wrap=True)
    return status


def cmd_graph(args: argparse.Namespace) -> int:
    from collab.scenario.topology import draw

    console.print(draw(load(args.path, args.set).scenario), markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from collab.scenario.templates import write_template

    written = write_template(args.template, Path(args.path))
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from collab.progress import ProgressDisplay
    from collab.runner import RunOptions, simulate

    if args.path is None and args.resume is None:
        errors.print("simulate needs a scenario file or --resume RUN")
        return USAGE_ERROR
    options = RunOptions(
        overrides=args.set, out=Path(args.out), limit=args.limit, samples=args.samples,
        concurrency=args.concurrency, model=args.model, dry_run=args.dry_run,
        resume=Path(args.resume) if args.resume else None, retry_failed=args.retry_failed,
    )
    display = ProgressDisplay(errors, quiet=args.quiet)
    try:
        with display:
            result = asyncio.run(simulate(Path(args.path) if args.path else None, options, [display]))
    except KeyboardInterrupt:
        errors.print("interrupted; finished episodes are saved. Resume with: collab simulate --resume RUN_FOLDER")
        return 130
    summary = result.summary
    accuracy = summary["accuracy"]
    console.print(
        f"{summary['ok']} episodes ok, {summary['failed']} failed, accuracy "
        f"{'-' if accuracy is None else f'{accuracy:.1%}'}", markup=False, highlight=False,
    )
    console.print(f"run: {result.path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    simulate.add_argument("--limit", type=int, help="first N problems only")
    simulate.add_argument("--samples", type=int, help="samples per problem and sweep point")
    simulate.add_argument("--concurrency", type=int, help="episodes in flight at once")
    simulate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a scenario field, e.g. agents.a.temperature=0.8")
    simulate.add_argument("--model", help="point every local engine at this model (hub id, folder or .gguf)")
    simulate.add_argument("--dry-run", action="store_true", help="replace every engine by the scripted engine")
    simulate.add_argument("--resume", metavar="RUN", help="finish an interrupted run folder")
    simulate.add_argument("--retry-failed", action="store_true", help="with --resume: run failed episodes again")
    simulate.add_argument("--quiet", action="store_true", help="log lines instead of a live display")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ScenarioError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return USAGE_ERROR
    except (DataError, StoreError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
