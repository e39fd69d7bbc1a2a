"""An experiment script as a Jupyter notebook, converted by jupytext.

The notes of the script's top-level sections become Markdown cells, and the code between them code cells. Cells
break only between top-level statements (a comment inside a function stays in its code cell), so every cell runs on
its own, in order. The script's `if __name__ == "__main__": main()` becomes `main([])`: in a notebook `sys.argv`
holds the kernel's own arguments, which the experiment's command line would reject. Where the default preset is
sized for a GPU and the experiment has a preset for a CPU (`CPU_PRESETS`), the last cell runs the default on a GPU
and the CPU preset elsewhere, and says how to run the full one.
"""
from __future__ import annotations

import re

from site_src.splitter import split

MAIN_GUARD = re.compile(r'\nif __name__ == "__main__":\s*\n\s+main\(\)\s*$')
RUN_NOTES = ('## Run it\n\nThe options of the command line go in the list, for example `main(["--device", "cpu"])`; '
             '`main(["--help"])` lists them all.')
# Names of the preset sized for a CPU, in an experiment whose first (default) preset is sized for a GPU.
CPU_PRESETS = ("cpu", "baby", "small")
RUN_NOTES_CPU = ('## Run it\n\nThe default preset is sized for a GPU. Without one, this cell runs the `{preset}` preset, '
                 'which a CPU trains in minutes; `main([])` runs the full experiment anyway. The options of the '
                 'command line go in the list, for example `main(["--preset", "{preset}", "--max-steps", "100"])`; '
                 '`main(["--help"])` lists them all.')
RUN_CELL_CPU = ('import torch\n\n'
                'main([] if torch.cuda.is_available() else ["--preset", "{preset}"])')


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
        preset = cpu_preset(source)
        run = ([("markdown", RUN_NOTES), ("code", "main([])")] if preset is None else
               [("markdown", RUN_NOTES_CPU.format(preset=preset)), ("code", RUN_CELL_CPU.format(preset=preset))])
        result[-1:] = ([("code", rest)] if rest else []) + run
    return result


def cpu_preset(source: str) -> str | None:
    """The preset for a machine without a GPU: one named in `CPU_PRESETS` among the keys of the `presets={...}`
    that the experiment passes to `run_experiment`; None when it has none (its default preset suits a CPU)."""
    import ast

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "run_experiment":
            for keyword in node.keywords:
                if keyword.arg == "presets" and isinstance(keyword.value, ast.Dict):
                    names = [k.value for k in keyword.value.keys if isinstance(k, ast.Constant)]
                    return next((name for name in CPU_PRESETS if name in names[1:]), None)
    return None


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
