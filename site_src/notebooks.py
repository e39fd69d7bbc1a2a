"""An experiment script as a Jupyter notebook, converted by jupytext.

The notes of the script's top-level sections become Markdown cells, and the code between them code cells. Cells
break only between top-level statements (a comment inside a function stays in its code cell), so every cell runs on
its own, in order. The script's `if __name__ == "__main__": main()` becomes `main([])`: in a notebook `sys.argv`
holds the kernel's own arguments, which the experiment's command line would reject.
"""
from __future__ import annotations

import re

from site_src.splitter import split

MAIN_GUARD = re.compile(r'\nif __name__ == "__main__":\s*\n\s+main\(\)\s*$')
RUN_NOTES = ('## Run it\n\nThe options of the command line go in the list, for example `main(["--device", "cpu"])`; '
             '`main(["--help"])` lists them all.')


def cells(source: str) -> list[tuple[str, str]]:
    """`(kind, text)` cells, kind `markdown` or `code`, of a script."""
    lines = source.split("\n")
    module = split(source)
    # Sections that start at the top level: their notes are not inside a function or class.
    top = [s for s in module.sections
           if s.code_line is None or not lines[s.code_line - 1][:1].isspace()]
    starts = [min(line for line in (s.notes_line, s.code_line) if line is not None) for s in top]
    # A comment block's notes start at their first line; a section's code runs up to where the next one starts.
    result: list[tuple[str, str]] = []
    for i, section in enumerate(top):
        if section.notes:
            result.append(("markdown", section.notes))
        if section.code_line is None:
            continue
        end = _notes_start(lines, starts[i + 1]) if i + 1 < len(top) else len(lines) + 1
        code = "\n".join(lines[section.code_line - 1:end - 1]).rstrip()
        if code:
            result.append(("code", code))
    if result and result[-1][0] == "code" and MAIN_GUARD.search("\n" + result[-1][1]):
        rest = MAIN_GUARD.sub("", "\n" + result[-1][1]).strip("\n")
        result[-1:] = ([("code", rest)] if rest else []) + [("markdown", RUN_NOTES), ("code", "main([])")]
    return result


def _notes_start(lines: list[str], line: int) -> int:
    """The first line of the comment block (or docstring) whose text starts at `line`: the code before it ends there."""
    while line > 1 and lines[line - 2].lstrip().startswith("#"):
        line -= 1
    return line


def notebook(source: str) -> str:
    """The `.ipynb` text of a script."""
    import jupytext

    percent = []
    for kind, text in cells(source):
        if kind == "markdown":
            percent.append("# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in text.split("\n")))
        else:
            percent.append("# %%\n" + text)
    document = jupytext.reads("\n\n".join(percent) + "\n", fmt="py:percent")
    document.metadata.pop("jupytext", None)
    document.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return jupytext.writes(document, fmt="ipynb")
