"""Measured results on the experiment pages: what a recorded run printed, the command that reproduces it, the machine
it ran on, and its figures.

A run is recorded with `python -m site_src.record_results <module> <run_dir>`, which copies the run's `result.json`
and figures into `docs/results/<module>/` and writes `record.json` beside them (the command, the machine, the wall
time). The site serves that folder as it is, and `markdown` renders it at the end of the experiment's page. An
experiment without a recorded run has no results section.
"""
from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass
from pathlib import Path

RESULTS = "results"  # folder under docs/, and under the site's root
RESULT_FILE = "result.json"
RECORD_FILE = "record.json"
HEADING = "Measured results"
ANCHOR = "measured-results"  # the heading's id, as the toc extension slugs it
# A dict with more keys than this is a table of its own, one row per key (`accuracy_by_length`: 1, 2, ..., 12).
MAX_COLUMNS = 6
# Strings longer than this (generated samples) go into a collapsed block below the tables.
MAX_INLINE_STRING = 40
MAX_LIST = 8


@dataclass
class Recorded:
    """One recorded run of an experiment, as read from `docs/results/<module>/`."""
    module: str
    result: dict
    command: str
    machine: str
    recorded: str  # the date of the run, `2026-12-05`
    wall_s: float | None
    figures: list[str]  # file names, in the order to show them

    def path(self, name: str) -> str:
        """Path of one of its files under the docs folder (and the site), `results/utils/gradients.png`."""
        return posixpath.join(RESULTS, self.module, name)


def load_all(docs_dir: Path) -> dict[str, Recorded]:
    """Every recorded run under `docs_dir/results`, by module name; a folder without `result.json` is skipped."""
    folder = docs_dir / RESULTS
    if not folder.is_dir():
        return {}
    return {path.name: load(path) for path in sorted(folder.iterdir()) if (path / RESULT_FILE).is_file()}


def load(folder: Path) -> Recorded:
    result = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    record_path = folder / RECORD_FILE
    if not record_path.is_file():
        raise ValueError(f"{folder}: {RESULT_FILE} without {RECORD_FILE}; record runs with "
                         f"`python -m site_src.record_results {folder.name} RUN_DIR`")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    missing = {"command", "machine", "recorded", "figures"} - set(record)
    if missing:
        raise ValueError(f"{record_path}: missing {sorted(missing)}")
    for name in record["figures"]:
        if not (folder / name).is_file():
            raise ValueError(f"{record_path}: lists the figure {name}, which is not in {folder}")
    return Recorded(module=folder.name, result=result, command=record["command"], machine=record["machine"],
                    recorded=record["recorded"], wall_s=record.get("wall_s"), figures=list(record["figures"]))


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def markdown(recorded: Recorded, page: str) -> str:
    """The results section of the experiment page `page` (a docs path, for relative links)."""
    def link(name: str) -> str:
        return posixpath.relpath(recorded.path(name), posixpath.dirname(page) or ".")

    wall = f", {format_seconds(recorded.wall_s)} from start to end" if recorded.wall_s is not None else ""
    out = ['<div class="lnn-results" markdown>', "", f"## {HEADING}", "",
           f"A recorded run ({recorded.recorded}{wall}) on {recorded.machine}. To reproduce it:", "",
           "```text", recorded.command, "```", ""]
    tables, texts = result_tables(recorded.result)
    out += tables
    if recorded.figures:
        out += ['<div class="lnn-results-figures" markdown>', ""]
        for name in recorded.figures:
            # The image links to itself: a click opens it at full size.
            out += [f"[![{name}]({link(name)})]({link(name)} \"{name}, full size\")", "", f"`{name}`", ""]
        out += ["</div>", ""]
    for title, text in texts:
        fence = "`" * max(3, 1 + max((len(r) for r in text.split("\n") if set(r) == {"`"}), default=0))
        out += [f'??? note "{title}"', "", f"    {fence}text"]
        out += [f"    {line}".rstrip() for line in text.split("\n")]
        out += [f"    {fence}", ""]
    out += [f"All of it: [`{RESULT_FILE}`]({link(RESULT_FILE)}).", "", "</div>", ""]
    return "\n".join(out)


def result_tables(result: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Markdown tables of a `result.json`, and its long strings (samples) as `(title, text)`.

    Scalars make one table of `quantity | value`. Dicts with the same keys (the variants of a comparison:
    `val_loss: {causal: ..., unmasked: ...}`) make one table with a column per key and a row per quantity; a dict
    with many keys makes a table of its own, a row per key; a list of rows of numbers too.
    """
    scalars: list[tuple[str, object]] = []
    groups: dict[tuple[str, ...], list[tuple[str, dict]]] = {}
    texts: list[tuple[str, str]] = []
    matrices: list[tuple[str, list]] = []
    for key, value in _flatten(result):
        if isinstance(value, str) and (len(value) > MAX_INLINE_STRING or "\n" in value):
            texts.append((key, value))
        elif isinstance(value, dict):
            long = {k: v for k, v in value.items() if isinstance(v, str) and (len(v) > MAX_INLINE_STRING or "\n" in v)}
            texts += [(f"{key}: {k}", v) for k, v in long.items()]
            rest = {k: v for k, v in value.items() if k not in long}
            if rest:
                groups.setdefault(tuple(rest), []).append((key, rest))
        elif _is_matrix(value):
            matrices.append((key, value))
        else:
            scalars.append((key, value))

    out: list[str] = []
    if scalars:
        out += ["| quantity | value |", "| --- | --- |"]
        out += [f"| `{_cell(key)}` | {format_value(value, key)} |" for key, value in scalars]
        out.append("")
    for columns, rows in groups.items():
        if len(columns) <= MAX_COLUMNS:
            out += ["| | " + " | ".join(f"`{_cell(c)}`" for c in columns) + " |",
                    "| --- | " + " | ".join("---" for _ in columns) + " |"]
            out += [f"| `{_cell(key)}` | " + " | ".join(format_value(row[c], key) for c in columns) + " |"
                    for key, row in rows]
        else:
            out += ["| | " + " | ".join(f"`{_cell(key)}`" for key, _ in rows) + " |",
                    "| --- | " + " | ".join("---" for _ in rows) + " |"]
            out += [f"| {_cell(c)} | " + " | ".join(format_value(row[c], key) for key, row in rows) + " |"
                    for c in columns]
        out.append("")
    for key, rows in matrices:
        # A table of numbers (per layer and head, say): rows and columns by index.
        out += [f"| `{_cell(key)}` | " + " | ".join(str(j) for j in range(len(rows[0]))) + " |",
                "| --- | " + " | ".join("---" for _ in rows[0]) + " |"]
        out += [f"| {i} | " + " | ".join(format_value(v, key) for v in row) + " |" for i, row in enumerate(rows)]
        out.append("")
    return out, texts


def _is_matrix(value) -> bool:
    """A list of rows of the same length of at most `MAX_LIST` numbers."""
    return (isinstance(value, list) and bool(value) and all(isinstance(row, list) for row in value)
            and 0 < len(value[0]) <= MAX_LIST and all(len(row) == len(value[0]) for row in value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for row in value for v in row))


def _flatten(result: dict, prefix: str = ""):
    """`(key, value)` pairs, where a value is a scalar, a list, or a dict of non-dict values; deeper dicts are
    flattened into `outer.inner` keys."""
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            if flat:
                yield name, flat
            for k, v in value.items():
                if isinstance(v, dict):
                    yield from _flatten({k: v}, prefix=f"{name}.")
        else:
            yield name, value


def format_value(value, key: str = "") -> str:
    """A number as a reader compares them: four significant digits, thousands separated, small ones in powers of
    ten; seconds (a key ending in `_s`) with their unit."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if key.endswith("_s") and not key.endswith("per_s") and value >= 1:
            return format_seconds(value)
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) < 1e-3:
            mantissa, exponent = f"{value:.1e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) <= MAX_LIST and all(not isinstance(v, (list, dict)) for v in value):
            return ", ".join(format_value(v, key) for v in value)
        return f"{len(value)} values (in {RESULT_FILE})"
    return _cell(str(value))


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
