"""``collab show``: one episode printed whole, or as a self-contained HTML page for sharing."""

from __future__ import annotations

import html
import io
from pathlib import Path

from rich.console import Console

from collab.display.context import RunContext
from collab.display.episode import EpisodeView
from collab.display.math import with_math
from collab.display.replay import run_folder
from collab.display.style import EXPORT_THEME
from collab.log.select import SelectError, find
from collab.log.store import EpisodeRecord, RunStore, StoreError, refuse_run_file

HTML_WIDTH = 140
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<title>{title}</title>
<style>
{{stylesheet}}
body {{{{
    color: {{foreground}};
    background-color: {{background}};
}}}}
</style>
</head>
<body>
<pre style="font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace"><code style="font-family:inherit">{{code}}</code></pre>
</body>
</html>
"""


def episode_html(record: EpisodeRecord, context: RunContext) -> str:
    """The episode's static view as HTML with inline colours and typeset mathematics; no external files."""
    console = Console(record=True, width=HTML_WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(EpisodeView(record, context))
    title = html.escape(f"collab · {context.name} · episode {record.id}").replace("{", "{{").replace("}", "}}")
    return with_math(console.export_html(theme=EXPORT_THEME, code_format=PAGE.format(title=title), inline_styles=True))


def show(path: Path, episode: str, html_path: Path | None, console: Console) -> int:
    """Print one episode whole, or write it as an HTML page; returns the exit status."""
    if html_path is not None:
        refuse_run_file(html_path)
    folder = run_folder(path, follow=False)
    records = list(RunStore(folder).episodes().values())
    record = find(records, episode)
    if record is None:
        raise SelectError(f"no episode {episode!r} in {folder}")
    context = RunContext.load(folder, records)
    if html_path is None:
        console.print(EpisodeView(record, context))
        return 0
    try:
        Path(html_path).write_text(episode_html(record, context), encoding="utf-8")
    except OSError as error:
        raise StoreError(f"cannot write {html_path}: {error.strerror or error}") from error
    console.print(f"wrote {html_path}", markup=False, highlight=False)
    return 0
