"""Whitespace removal for the built HTML pages: the theme's templates indent everything, which costs a page tens of
kilobytes. Only runs of spaces and newlines at line starts are removed, outside `<pre>`, `<textarea>`, `<script>`
and `<style>`, so the page renders exactly as before (a newline is still whitespace between inline elements)."""
from __future__ import annotations

import re

PROTECTED = re.compile(r"(<(pre|textarea|script|style)\b.*?</\2>)", re.S | re.I)
LINE_INDENT = re.compile(r"\n[ \t]+")
BLANK_LINES = re.compile(r"\n{2,}")


def collapse_whitespace(html: str) -> str:
    pieces = PROTECTED.split(html)
    out = []
    # `split` with two groups yields: text, protected block, tag name, text, ...
    for i in range(0, len(pieces), 3):
        text = pieces[i]
        text = BLANK_LINES.sub("\n", LINE_INDENT.sub("\n", text))
        out.append(text)
        if i + 1 < len(pieces):
            out.append(pieces[i + 1])
    return "".join(out)
