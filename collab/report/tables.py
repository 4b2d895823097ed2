"""``collab report``: tables for one run (or several side by side), ``report.md`` and PNG plots."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from collab.log.store import StoreError, is_run, refuse_run_file
from collab.report.combine import combine, short_names
from collab.report.plot_data import draw_plots
from collab.report.render import markdown_text, to_markdown, to_rich
from collab.report.rundata import RunData
from collab.report.sections import sections

REPORT = "report.md"
PLOTS = "plots"


def report(paths: list[Path], out: Path | None, console: Console) -> int:
    """Print the tables, write ``report.md`` and ``plots/`` (into ``out``, default the first run)."""
    folder = Path(out) if out is not None else Path(paths[0])
    refuse_run_file(folder)
    if is_run(folder) and folder.resolve() != Path(paths[0]).resolve():
        raise StoreError(f"refusing to write the report into {folder}: it is another run's folder")
    runs = [RunData.load(path) for path in paths]
    names = short_names([run.path for run in runs])
    built = combine(names, [[s for s in sections(run) if s is not None] for run in runs])
    for section in built:
        console.print(to_rich(section))
        console.print()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = draw_plots(runs, names, folder / PLOTS)
        heading = f"# Report: {' vs '.join(markdown_text(run.name) for run in runs)}"
        images = [f"![{p.stem}]({PLOTS}/{p.name})" for p in written]
        text = "\n\n".join([heading, *(to_markdown(s) for s in built), "## Plots", *images]) + "\n"
        (folder / REPORT).write_text(text, encoding="utf-8")
    except OSError as error:
        raise StoreError(f"cannot write the report into {folder}: {error.strerror or error}") from error
    console.print(f"wrote {folder / REPORT} and {len(written)} plots in {folder / PLOTS}", markup=False,
                  highlight=False)
    return 0
