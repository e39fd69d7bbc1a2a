"""Split a Python module into sections: notes (comments and docstrings, as Markdown) beside the code they explain.

A section is a block of notes followed by the code up to the next notes. Notes are

* a run of standalone `#` comment lines (a comment alone on its line; a trailing comment stays in the code), or
* a docstring: the first statement of a module, class or function when it is a string.

Comment runs separated only by blank lines are one block of notes. A run of bare `#` lines gives a section with
empty notes, so that authors can start a new section without writing anything. Code keeps the lines of the file
exactly, so that a code block can show the file's own line numbers.

The module docstring may start with front matter (`title:`, `summary:`) between `---` lines; it becomes the page's
title and description and is removed from the notes.

Nothing here depends on mkdocs: the module can be unit-tested and reused by another site generator.
"""
from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from dataclasses import dataclass, field

# Standalone comments that are instructions to tools, not prose: they stay in the code.
TOOL_COMMENT = re.compile(r"#(!|\s*(noqa|type:|fmt:|pragma|pylint:|mypy:|ruff:|isort:|-\*-))")

# Google-style section headers in docstrings, turned into Markdown for the notes column.
DOC_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Attributes|Shapes?|Example|Examples"
                         r"|Note|Notes):\s*$")
NAMED_ENTRY_SECTIONS = {"Args", "Arguments", "Parameters", "Raises", "Attributes", "Shape", "Shapes"}


@dataclass
class CodeBlock:
    """Consecutive source lines starting at line `line` (1-based), joined by `\\n`."""
    line: int
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @property
    def end(self) -> int:
        return self.line + len(self.lines) - 1


@dataclass
class Section:
    """Notes (Markdown) and the code they explain.

    `notes_line` is the source line where the notes start (`None` without notes). `code` holds one block of
    consecutive source lines, or two when the notes are a docstring: the `def`/`class` header above the docstring,
    then the body below it, so that the header sits beside its docstring and every line keeps its number.
    """
    notes: str = ""
    notes_line: int | None = None
    code: list[CodeBlock] = field(default_factory=list)

    @property
    def code_line(self) -> int | None:
        return self.code[0].line if self.code else None


@dataclass
class Module:
    """A split module: page title and description from the front matter, and the sections in source order."""
    title: str | None
    summary: str | None
    sections: list[Section] = field(default_factory=list)


def parse_front_matter(text: str) -> tuple[dict[str, str], str, int]:
    """Split `---`-delimited front matter off the start of `text`.

    The front matter is `key: value` lines; a value is the rest of its line (colons included, as authors write
    them), continued by indented lines. Returns the front matter, the remaining text, and how many lines were
    removed from the start.
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text, 0
    for end in range(1, len(lines)):
        if lines[end].strip() != "---":
            continue
        meta: dict[str, str] = {}
        key = None
        for line in lines[1:end]:
            if key is not None and line[:1].isspace() and line.strip():
                meta[key] = f"{meta[key]} {line.strip()}".strip()
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip() or " " in name.strip():
                if line.strip():
                    raise ValueError(f"front matter lines must be `key: value`, got {line!r}")
                continue
            key = name.strip()
            meta[key] = _unquote(value.strip())
        rest = lines[end + 1:]
        removed = end + 1
        while rest and not rest[0].strip():
            rest.pop(0)
            removed += 1
        return meta, "\n".join(rest), removed
    return {}, text, 0


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def docstring_to_markdown(text: str) -> str:
    """Turn Google-style docstring sections (`Arguments:` with indented `name: description` entries) into Markdown.

    Left as they are, the indented entries would be read as a Markdown code block. Everything else is Markdown already.
    """
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = DOC_SECTION.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        name = match.group(1)
        out.extend([f"**{name}**", ""])
        i += 1
        entries: list[list[str]] = []
        base_indent = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                if entries:
                    entries[-1].append("")
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if indent == 0:
                break
            if base_indent is None:
                base_indent = indent
            if indent <= base_indent:
                entries.append([line.strip()])
            else:
                entries[-1].append(line[base_indent:].rstrip())
            i += 1
        for entry in entries:
            while entry and not entry[-1]:
                entry.pop()
            head, rest = entry[0], entry[1:]
            if name in NAMED_ENTRY_SECTIONS and ":" in head:
                key, description = head.split(":", 1)
                if not key.startswith("`"):
                    key = ", ".join(f"`{k.strip()}`" for k in key.split(","))
                head = f"{key}: {description.strip()}"
            out.append(f"* {head}")
            out.extend(f"    {line.strip()}" if line.strip() else "" for line in rest)
        out.append("")
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


@dataclass
class _Docstring:
    last: int  # last source line of the string
    text: str  # cleaned text
    text_line: int  # source line of the first line of `text`
    header: int | None  # first line of the `def`/`class` statement (decorators included); None for a module


def _docstrings(tree: ast.Module, lines: list[str]) -> dict[int, _Docstring]:
    """Docstrings by their first source line.

    Only docstrings that stand alone on their lines (nothing but the string and perhaps a comment) are notes.
    """
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if not node.body or not isinstance(node.body[0], ast.Expr):
            continue
        value = node.body[0].value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            continue
        first, last = value.lineno, value.end_lineno
        if lines[first - 1][:value.col_offset].strip():
            continue
        tail = lines[last - 1][value.end_col_offset:].strip()
        if tail and not tail.startswith("#"):
            continue
        raw_lines = value.value.split("\n")
        leading = 0
        while leading < len(raw_lines) and not raw_lines[leading].strip():
            leading += 1
        header = None
        if not isinstance(node, ast.Module):
            header = min([node.lineno] + [d.lineno for d in node.decorator_list])
        found[first] = _Docstring(last, inspect.cleandoc(value.value), first + leading, header)
    return found


def _standalone_comments(source: str, lines: list[str]) -> dict[int, str]:
    """Standalone comment lines: `line -> text without the '#' and one space`."""
    comments = {}
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        if lines[row - 1][:col].strip():
            continue
        if TOOL_COMMENT.match(tok.string) and tok.string.strip() != "#":
            continue
        text = tok.string[1:]
        comments[row] = text[1:] if text.startswith(" ") else text
    return comments


def split(source: str) -> Module:
    """Split Python `source` into a `Module` of sections. Raises `SyntaxError` for invalid Python."""
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tree = ast.parse(source)
    docstrings = _docstrings(tree, lines)
    comments = _standalone_comments(source, lines)

    meta: dict = {}
    sections: list[Section] = []
    current: Section | None = None
    pending_blank: list[str] = []
    i = 1
    while i <= len(lines):
        if i in docstrings or i in comments:
            header: CodeBlock | None = None
            if i in docstrings:
                doc = docstrings[i]
                text, text_line = doc.text, doc.text_line
                if doc.header is None:
                    meta, text, removed = parse_front_matter(text)
                    text_line += removed
                text = docstring_to_markdown(text)
                next_line = doc.last + 1
                header = _take_header(current, doc.header)
            else:
                run = []
                text_line = next_line = i
                while next_line in comments:
                    run.append(comments[next_line])
                    next_line += 1
                text = "\n".join(run).strip("\n")
                if not text.strip():
                    text = ""
            if current is not None and not current.code:
                # Notes after notes, with only blank lines between: one block of notes.
                if text:
                    current.notes = f"{current.notes}\n\n{text}" if current.notes else text
                    current.notes_line = current.notes_line or text_line
            else:
                current = Section(notes=text, notes_line=text_line if text else None)
                sections.append(current)
            if header is not None:
                current.code.append(header)
                # The body starts a new block: the docstring's lines are not code.
                current.code.append(CodeBlock(0, ""))
            pending_blank = []
            i = next_line
            continue
        line = lines[i - 1]
        i += 1
        if not line.strip():
            if current is not None and current.code and current.code[-1].text:
                pending_blank.append(line)
            continue
        if current is None:
            current = Section()
            sections.append(current)
        if not current.code:
            current.code.append(CodeBlock(i - 1, line))
        elif not current.code[-1].text:
            current.code[-1] = CodeBlock(i - 1, line)
        else:
            last = current.code[-1]
            current.code[-1] = CodeBlock(last.line, "\n".join([last.text, *pending_blank, line]))
        pending_blank = []

    for section in sections:
        section.code = [block for block in section.code if block.text]
    title = meta.get("title")
    summary = meta.get("summary")
    return Module(title=str(title) if title is not None else None,
                  summary=str(summary) if summary is not None else None,
                  sections=sections)


def _take_header(section: Section | None, header_line: int | None) -> CodeBlock | None:
    """Remove the `def`/`class` header (from `header_line` on) from the end of `section`'s code and return it.

    The header moves to the docstring's section, beside the docstring that explains it. If the header is not the
    tail of one code block (a comment splits it), it stays where it is.
    """
    if header_line is None or section is None or not section.code:
        return None
    last = section.code[-1]
    if not last.line <= header_line <= last.end:
        return None
    keep = last.lines[:header_line - last.line]
    while keep and not keep[-1].strip():
        keep.pop()
    moved = CodeBlock(header_line, "\n".join(last.lines[header_line - last.line:]))
    if keep:
        section.code[-1] = CodeBlock(last.line, "\n".join(keep))
    else:
        section.code.pop()
    return moved
