"""Mathematics in HTML exports, offline: the vendored KaTeX (``katex/``), fonts and all, inlined in the page."""

from __future__ import annotations

import base64
import functools
import re
from importlib import resources

DELIMITERS = (
    '[{left: "$$", right: "$$", display: true}, {left: "\\\\[", right: "\\\\]", display: true},'
    ' {left: "$", right: "$", display: false}, {left: "\\\\(", right: "\\\\)", display: false}]'
)
_FONT = re.compile(r"src:url\(fonts/([\w-]+\.woff2)\) format\(\"woff2\"\)[^;}]*")


def _asset(name: str) -> bytes:
    return resources.files("collab.display").joinpath("katex", name).read_bytes()


@functools.cache
def katex_head() -> str:
    """KaTeX's stylesheet (fonts as data URIs) and scripts, for a page's ``<head>``."""
    css = _asset("katex.min.css").decode()
    css = _FONT.sub(lambda m: "src:url(data:font/woff2;base64," + base64.b64encode(_asset(f"fonts/{m[1]}")).decode()
                    + ') format("woff2")', css)
    scripts = "".join(f"<script>{_asset(name).decode()}</script>" for name in ("katex.min.js", "auto-render.min.js"))
    return f"<style>{css}</style>{scripts}"


RENDER = ("<script>renderMathInElement(document.body, {delimiters: " + DELIMITERS
          + ", ignoredTags: ['script', 'noscript', 'style', 'textarea'], throwOnError: false});</script>")
"""Typesets every delimited formula of the page (inside ``<pre>`` too); a formula KaTeX cannot read stays as text."""


def with_math(page: str) -> str:
    """An HTML page whose ``$...$``, ``$$...$$``, ``\\(...\\)`` and ``\\[...\\]`` render as mathematics, offline."""
    head, sep, rest = page.partition("</head>")
    body, end, tail = rest.rpartition("</body>")
    if not sep or not end:
        raise ValueError("not an HTML page with <head> and <body>")
    return head + katex_head() + sep + body + RENDER + end + tail
