"""Smaller built HTML pages that render exactly as before.

* Whitespace: the theme's templates indent everything, which costs a page tens of kilobytes. Only runs of spaces and
  newlines at line starts are removed, outside `<pre>`, `<textarea>`, `<script>` and `<style>` (a newline is still
  whitespace between inline elements).
* Code: Pygments wraps every token in a `<span>`. Names (`n`) take the theme's plain code colour, and whitespace
  (`w`) has no style, so inside `<pre>` their spans are dropped and their text kept: about a tenth of a module's
  page."""
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


PRE_BLOCK = re.compile(r"<pre\b.*?</pre>", re.S | re.I)
PLAIN_TOKEN = re.compile(r'<span class="[nw]">([^<]*)</span>')


def unwrap_plain_code_tokens(html: str) -> str:
    """Inside `<pre>` blocks, `<span class="n">x</span>` and `<span class="w"> </span>` become their text."""
    return PRE_BLOCK.sub(lambda block: PLAIN_TOKEN.sub(r"\1", block.group(0)), html)
