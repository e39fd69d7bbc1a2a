"""The site's pages generated from the `labml_nn` package: one annotated page and one API page per module.

This module knows nothing of mkdocs: it turns the package's sources into Markdown pages, their navigation and the
post-processing of their HTML (code links and anchors). `site_src/hook.py` hands the results to mkdocs.

Page paths (fixed by the project's site conventions):

* `labml_nn/transformers/mha.py` -> `transformers/mha.md`
* `labml_nn/transformers/rope/__init__.py` -> `transformers/rope/index.md`
* `labml_nn/experiments/trainer.py` -> `experiments/trainer.md`

and its API reference at the same path under `api/`. The root package `labml_nn/__init__.py` has no page of its own:
the site's home page, `docs/index.md`, introduces the project.
"""
from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from site_src import symbols
from site_src.splitter import Module, Section, split

PACKAGE = "labml_nn"

# Reading order of the modules in `labml_nn.transformers` (and of their experiments); others follow alphabetically.
READING_ORDER = ["utils", "mha", "positional_encoding", "rope", "feed_forward", "models", "configs",
                 "gpt", "label_smoothing_loss", "llama", "hf_checkpoints", "bert", "t5", "moe", "llava",
                 "flash_attention", "parallel", "experiments"]
# A subpackage whose modules are other frameworks' versions of its parent's modules: `labml_nn.X.flax.Y` is shown
# in the code column of `labml_nn.X.Y`'s page, in a tab beside the PyTorch code, rather than as a page of its own.
ALTERNATES = {"flax": "JAX/Flax"}
MAIN_FRAMEWORK = "PyTorch"
# Reading order of the shared experiment machinery in `labml_nn.experiments`; others follow alphabetically.
MACHINERY_ORDER = ["config", "data", "trainer", "checkpoint", "logging", "plots", "cli"]


@dataclass
class ModulePage:
    """One module of the package and the pages made from it."""
    name: str  # dotted module name, `labml_nn.transformers.mha`
    source_path: str  # path from the repository root, `labml_nn/transformers/mha.py`
    source: str
    is_package: bool
    module: Module  # the split source
    page: str  # the annotated page, `transformers/mha.md`
    api_page: str  # the API reference page, `api/transformers/mha.md`
    source_copy: str  # where the site serves the raw source, `transformers/mha.py`
    notebook: str | None = None  # the experiment as a notebook, `transformers/experiments/mha.ipynb`
    experiment_source: str | None = None  # source path of that experiment, to convert
    run_command: str | None = None  # `python -m labml_nn.transformers.mha`
    symbols: symbols.ModuleIndex | None = None  # definitions and resolved references
    anchors_at_sections: dict[int, list[str]] = field(default_factory=dict)  # section index -> ids placed there
    anchors_in_code: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)  # position -> (text, id)
    # The same module in another framework, shown in this page's code column, and which of its sections go
    # beside each of this page's sections.
    alternate: ModulePage | None = None
    alternate_rows: list[list[int]] = field(default_factory=list)
    # For an alternate: the page that shows it, and the framework's name and anchor prefix (`flax-`).
    host: ModulePage | None = None
    framework: str = ""

    @property
    def anchor_prefix(self) -> str:
        return f"{self.framework_key}-" if self.host is not None else ""

    @property
    def framework_key(self) -> str:
        return self.name.split(".")[-2] if self.host is not None else "pytorch"

    @property
    def shown_at(self) -> str:
        """The annotated page where this module is read: its own, or its host's."""
        return self.host.page if self.host is not None else self.page

    @property
    def title(self) -> str:
        return self.module.title or self.name

    @property
    def summary(self) -> str:
        return self.module.summary or ""

    @property
    def section_ids(self) -> list[str]:
        return [section_id(section) for section in self.module.sections]


def section_id(section: Section) -> str:
    """A section's permalink anchor: `L` and the section's first source line, like a link to a line of a file."""
    lines = [line for line in (section.notes_line, section.code_line) if line is not None]
    return f"L{min(lines)}"


def page_path(module_name: str, is_package: bool) -> str:
    parts = module_name.split(".")[1:]
    if is_package:
        return posixpath.join(*parts, "index.md") if parts else "index.md"
    return posixpath.join(*parts) + ".md"


def page_url(page: str, use_directory_urls: bool = True) -> str:
    """The URL path (from the site root) that mkdocs gives a page, as mkdocs' `File.url` does."""
    stem = page[:-3]
    if use_directory_urls:
        if stem == "index":
            return ""
        if stem.endswith("/index"):
            return stem[:-5]
        return stem + "/"
    return stem + ".html"


def relative_url(target: str, page: str, use_directory_urls: bool = True) -> str:
    """URL of the site file `target` (a page `.md` or any file, optionally with `#anchor`) from the page `page`."""
    target, _, anchor = target.partition("#")
    target_url = page_url(target, use_directory_urls) if target.endswith(".md") else target
    here = page_url(page, use_directory_urls)
    base = here if here.endswith("/") or not here else posixpath.dirname(here) + "/"
    relative = posixpath.relpath("/" + target_url, "/" + base)
    if target_url.endswith("/") or target_url == "":
        relative = relative.rstrip("/") + "/" if relative != "." else "./"
    return relative + (f"#{anchor}" if anchor else "")


def _sort_key(name: str, order: list[str]) -> tuple[int, str]:
    return (order.index(name), name) if name in order else (len(order), name)


def discover(root: Path) -> list[ModulePage]:
    """Every module of the package under `root`, split and indexed, in reading order."""
    package_dir = root / PACKAGE
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts or path.name == "__main__.py":
            continue
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)

    pages = []
    for name, (path, is_package) in found.items():
        source = path.read_text(encoding="utf-8")
        try:
            module = split(source)
        except SyntaxError as error:
            raise SyntaxError(f"{path.relative_to(root)}:{error.lineno}: {error.msg}") from error
        page = page_path(name, is_package)
        source_copy = posixpath.join(posixpath.dirname(page), path.name)
        pages.append(ModulePage(name=name, source_path=path.relative_to(root).as_posix(), source=source,
                                is_package=is_package, module=module, page=page, api_page=f"api/{page}",
                                source_copy=source_copy))

    by_name = {p.name: p for p in pages}
    # Modules first, then their experiments, which show the module's command.
    for page in sorted(pages, key=lambda p: ".experiments." in p.name):
        _attach_experiment(page, by_name, root)

    index = symbols.index_project({p.name: (p.source, p.is_package) for p in pages})
    for page in pages:
        page.symbols = index[page.name]
        _place_anchors(page)
    _attach_alternates(by_name)
    ordered = sorted(pages, key=lambda p: reading_key(p.name))
    return [p for p in ordered if p.name != PACKAGE]


def _attach_alternates(by_name: dict[str, ModulePage]) -> None:
    for name, page in by_name.items():
        parent, _, module = name.rpartition(".")
        package, _, framework = parent.rpartition(".")
        host = by_name.get(f"{package}.{module}")
        if framework in ALTERNATES and not page.is_package and host is not None and not host.is_package:
            page.host, page.framework = host, ALTERNATES[framework]
            host.alternate = page
            host.alternate_rows = align_sections(host.module.sections, page.module.sections)


def _section_key(section: Section, index: int) -> str:
    """What identifies a section across the two versions of a module: the first line of its notes, without the
    heading's `#`s (the introductions always pair)."""
    if index == 0:
        return "<introduction>"
    first = next((line for line in section.notes.split("\n") if line.strip()), "")
    return re.sub(r"^#+\s*", "", first).strip().lower()


def align_sections(main: list[Section], other: list[Section]) -> list[list[int]]:
    """For each section of `main`, the indices of the sections of `other` to show beside it, every section of
    `other` exactly once and in order. Sections whose notes start alike pair up (a longest common subsequence of
    their first lines); a run of unmatched sections on both sides pairs up in order, and the other's extra
    sections join the main section before them."""
    import difflib

    main_keys = [_section_key(s, i) for i, s in enumerate(main)]
    other_keys = [_section_key(s, i) for i, s in enumerate(other)]
    rows: list[list[int]] = [[] for _ in main]
    matcher = difflib.SequenceMatcher(None, main_keys, other_keys, autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):
            rows[i1 + k].append(j1 + k)
        last = i1 + paired - 1 if paired else i1 - 1
        rows[max(last, 0)].extend(range(j1 + paired, j2))
    return rows


def reading_key(name: str) -> tuple:
    """Sort key giving the reading order: a package's page before its modules, modules in the order above."""
    parts = name.split(".")[1:]
    key = []
    for depth, part in enumerate(parts):
        order = MACHINERY_ORDER if parts[0] == "experiments" and depth == 1 else READING_ORDER
        key.append(_sort_key(part, order))
    top = _sort_key(parts[0], ["transformers", "experiments"]) if parts else (-1, "")
    return (top, *key[1:]) if parts else ((-1, ""),)


def _attach_experiment(page: ModulePage, by_name: dict[str, ModulePage], root: Path) -> None:
    """The command that runs a module's experiment, and the experiment file to convert into a notebook."""
    parts = page.name.split(".")
    if parts[:2] != [PACKAGE, "transformers"] or len(parts) < 3:
        return
    if parts[2] == "experiments":
        if len(parts) == 4:
            studied = by_name.get(".".join(parts[:2] + parts[3:]))
            if studied is not None and studied.run_command:
                page.run_command = studied.run_command
            page.experiment_source = page.source_path
            page.notebook = page.page[:-3] + ".ipynb"
        return
    runnable = ('if __name__ == "__main__":' in page.source
                or (page.is_package and (root / Path(page.source_path).parent / "__main__.py").exists()))
    if runnable:
        page.run_command = f"python -m {page.name}"
    if parts[2] == "from_scratch" and 'if __name__ == "__main__":' in page.source:
        # The learning track's chapters are their own experiments: each page gets its own notebook.
        page.experiment_source = page.source_path
        page.notebook = page.page[:-3] + ".ipynb"
        return
    experiment = root / PACKAGE / "transformers" / "experiments" / f"{parts[2]}.py"
    if len(parts) == 3 and experiment.exists():
        page.experiment_source = experiment.relative_to(root).as_posix()
        page.notebook = f"transformers/experiments/{parts[2]}.ipynb"


def _place_anchors(page: ModulePage) -> None:
    """An anchor for every class and function: at the top of its section when the definition starts the section's
    code (so that the notes above it are in view), else on its name in the code. An anchor the notes already
    define (`<a id="...">`) is not repeated."""
    starts = {section.code_line: i for i, section in enumerate(page.module.sections) if section.code_line}
    written = {m for s in page.module.sections for m in re.findall(r'\bid="([^"]+)"', s.notes)}
    for qualname, definition in page.symbols.definitions.items():
        if qualname in written:
            continue
        if definition.start in starts:
            page.anchors_at_sections.setdefault(starts[definition.start], []).append(qualname)
        else:
            name = qualname.rsplit(".", 1)[-1]
            page.anchors_in_code[definition.position] = (name, qualname)


# ---------------------------------------------------------------------------------------------------------------
# Markdown of the pages


def _fence(code: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def front_matter(title: str, description: str, hide_toc: bool, searchable: bool = True) -> str:
    lines = ["---", f"title: {_yaml_string(title)}"]
    if not searchable:
        lines += ["search:", "  exclude: true"]
    if description:
        # mkdocs-material writes the description into an attribute without escaping it.
        lines.append(f"description: {_yaml_string(html.escape(description))}")
    if hide_toc:
        lines += ["hide:", "  - toc"]
    lines.append("---")
    return "\n".join(lines)


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_markdown(page: ModulePage, pages: list[ModulePage], appendix: str = "",
                  results_link: str | None = None) -> str:
    """The annotated page of a module: a header with how to run it, then one row per section, then `appendix`
    (Markdown: the experiment's measured results). `results_link`, a docs path with its anchor, goes in the
    header."""
    # The table of contents (in the navigation, `toc.integrate`) lists the headings of the notes.
    out = [front_matter(page.title, page.summary, hide_toc=False), "", '<div class="lnn-page" markdown>', ""]
    header = _header(page, results_link)
    sections = page.module.sections
    if not sections or not sections[0].notes.startswith("# "):
        # No title in the notes: the header goes above the first section.
        out += header
        header = []
    for i, section in enumerate(sections):
        sid = section_id(section)
        has_code = bool(section.code) or bool(page.alternate and page.alternate_rows[i])
        kind = "" if section.notes and has_code else " lnn-code-only" if has_code else " lnn-notes-only"
        if not kind and (i == 0 or FIGURE.search(section.notes)):
            # The introduction, and notes with a figure, take the whole width (figures and wide equations are
            # legible), and their code follows below them in the code column.
            kind = " lnn-wide"
        out += [f'<div class="lnn-section{kind}" id="{sid}" markdown>', "",
                '<div class="lnn-notes" markdown>', ""]
        notes = section.notes
        if i == 0 and header:
            # The page's title, then how to run the module and where its source is.
            title, _, notes = notes.partition("\n")
            out += [title, ""] + header
        if notes.strip():
            out += [notes, ""]
        if i == 0:
            out += _children_table(page, pages)
        out += ["</div>", "", '<div class="lnn-code" markdown>', ""]
        out += _code_column(page, i) if page.alternate else _code_blocks(section)
        out += ["</div>", "", "</div>", ""]
    if appendix:
        out += [appendix, ""]
    out += ["</div>", ""]
    return "\n".join(out)


def _code_blocks(section: Section, alternate: bool = False) -> list[str]:
    """Fenced code with the file's line numbers; an alternate's blocks carry the class `lnn-alt`, so that their
    names are linked from the alternate's symbols."""
    out = []
    for block in section.code:
        fence = _fence(block.text)
        info = f'{{.python .lnn-alt linenums="{block.line}"}}' if alternate else f'python linenums="{block.line}"'
        out += [f"{fence}{info}", block.text, fence, ""]
    return out


def _code_column(page: ModulePage, i: int) -> list[str]:
    """The code column of a page with an alternate: tabs, one per framework (material's content tabs, linked,
    so that choosing JAX/Flax once switches every section, on every page), the alternate's tab holding the
    sections aligned with this one, each with its own notes where they say something this section's do not."""
    section, alternate = page.module.sections[i], page.alternate
    theirs: list[str] = []
    for j in page.alternate_rows[i]:
        other = alternate.module.sections[j]
        theirs += [f'<span class="lnn-def" id="{alternate.anchor_prefix}{name}"></span>'
                   for name in alternate.anchors_at_sections.get(j, [])]
        notes = alternate_notes(other.notes, section.notes if j else None, alternate.anchor_prefix)
        if notes:
            theirs += ['<div class="lnn-alt-notes" markdown>', "", notes, "", "</div>", ""]
        theirs += _code_blocks(other, alternate=True)
    ours = _code_blocks(section)
    if not ours and not theirs:
        return []
    if not ours:
        ours = [f'<p class="lnn-alt-none">No {MAIN_FRAMEWORK} code for this part.</p>', ""]
    if not theirs:
        theirs = [f'<p class="lnn-alt-none">The {alternate.framework} version has no code of its own for this part '
                  f'(it imports it, or does without).</p>', ""]
    sid = section_id(section)
    tabs = [(MAIN_FRAMEWORK, "pytorch", ours), (alternate.framework, alternate.framework_key, theirs)]
    checked = ['checked="checked" '] + [""] * (len(tabs) - 1)
    inputs = "".join(f'<input {check}id="lnn-{sid}-{key}" name="lnn-{sid}" type="radio" />'
                     for check, (_, key, _) in zip(checked, tabs))
    labels = "".join(f'<label for="lnn-{sid}-{key}">{html.escape(label)}</label>' for label, key, _ in tabs)
    out = [f'<div class="tabbed-set tabbed-alternate lnn-frameworks" data-tabs="{i + 1}:{len(tabs)}" markdown>',
           inputs, f'<div class="tabbed-labels">{labels}</div>', '<div class="tabbed-content" markdown>', ""]
    for _, key, content in tabs:
        out += [f'<div class="tabbed-block" data-framework="{key}" markdown>', "", *content, "</div>", ""]
    return out + ["</div>", "</div>", ""]


HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)
AUTHOR_ANCHOR = re.compile(r'(<a id=")([^"]+)(")|(\]\(#)([^)]+)(\))')


def alternate_notes(notes: str, main_notes: str | None, prefix: str) -> str:
    """An alternate section's notes as shown in its tab: nothing where they repeat `main_notes` (the notes beside
    them), without the heading they share, other headings as bold lines (the page's outline is the main
    version's), and their own anchors and in-page links prefixed. `main_notes` is `None` for the introduction,
    whose title is dropped."""
    lines = notes.strip().split("\n")
    main_lines = (main_notes or "").strip().split("\n")
    if main_notes is None or (HEADING.match(lines[0]) and lines[0].strip().lower() == main_lines[0].strip().lower()):
        lines, main_lines = lines[1:], main_lines[1:]
    text, main_text = "\n".join(lines).strip(), "\n".join(main_lines).strip()
    if text == main_text or not text:
        return ""
    text = HEADING.sub(lambda m: f"**{m.group(1)}**", text)
    return AUTHOR_ANCHOR.sub(lambda m: (f"{m[1]}{prefix}{m[2]}{m[3]}" if m[1] else f"{m[4]}{prefix}{m[5]}{m[6]}"),
                             text)


# A Markdown image, `![alt](src)`, or an HTML one.
FIGURE = re.compile(r"!\[[^\]]*\]\(|<img\b")


def _header(page: ModulePage, results_link: str | None = None) -> list[str]:
    # Titles in the link syntax, not in the attribute list: Markdown would read `__init__` there as emphasis.
    links = [f'[View source]({posixpath.basename(page.source_copy)} "{page.source_path}"){{ .lnn-link }}']
    if page.notebook:
        notebook = relative_file(page.notebook, page.page)
        links.append(f'[Notebook]({notebook} "The experiment as a Jupyter notebook"){{ .lnn-link download }}')
    alternate = page.alternate
    if alternate is not None:
        links.append(f'[{alternate.framework} source]({relative_file(alternate.source_copy, page.page)} '
                     f'"{alternate.source_path}"){{ .lnn-link }}')
        if alternate.notebook:
            links.append(f'[{alternate.framework} notebook]({relative_file(alternate.notebook, page.page)} '
                         f'"The {alternate.framework} version as a Jupyter notebook"){{ .lnn-link download }}')
    links.append(f"[API reference]({relative_file(page.api_page, page.page)}){{ .lnn-link }}")
    if results_link:
        target, _, anchor = results_link.partition("#")
        link = (relative_file(target, page.page) if target != page.page else "") + (f"#{anchor}" if anchor else "")
        links.append(f'[Measured results]({link} "A recorded run: its numbers, figures and command"){{ .lnn-link }}')
    out = ['<div class="lnn-header" markdown>', ""]
    if page.run_command:
        out += ['<div class="lnn-run" markdown>', "", "```text", page.run_command, "```", "", "</div>", ""]
    out += [" ".join(links), "", "</div>", ""]
    return out


def relative_file(target: str, page: str) -> str:
    """Path of the docs file `target` relative to the docs file `page`, as written in a Markdown link."""
    return posixpath.relpath(target, posixpath.dirname(page) or ".")


def _children_table(page: ModulePage, pages: list[ModulePage]) -> list[str]:
    """A package's page lists the modules in it, in reading order, with their summaries."""
    if not page.is_package:
        return []
    prefix = page.name + "."
    children = [p for p in pages if p.name.startswith(prefix) and "." not in p.name[len(prefix):]]
    notes = "\n".join(s.notes for s in page.module.sections)
    if not children or any(child.shown_at in notes for child in children):
        # The package's own notes already guide the reader through its modules.
        return []
    out = ["| Module | What it is |", "| --- | --- |"]
    for child in children:
        out.append(f"| [{_cell(child.title)}]({relative_file(child.shown_at, page.page)}) | {_cell(child.summary)} |")
    return out + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def api_markdown(page: ModulePage) -> str:
    """The API reference page of a module, rendered by mkdocstrings from the docstrings."""
    annotated = relative_file(page.shown_at, page.api_page)
    return "\n".join([
        # Not in the search index: the annotated page holds the same docstrings and code, with the explanations.
        front_matter(f"{page.title} (API)", page.summary, hide_toc=False, searchable=False), "",
        f"# `{page.name}`", "",
        f"[Annotated source]({annotated}){{ .lnn-link }}", "",
        f"::: {page.name}", "",
    ])


def api_index_markdown(pages: list[ModulePage]) -> str:
    out = [front_matter("API reference", "Signatures, arguments and shapes of every module of labml_nn.",
                        hide_toc=True), "", "# API reference", "",
           "Signatures, arguments and shapes, generated from the docstrings. Each module's annotated page "
           "explains the code line by line.", "", '<div class="lnn-api-index" markdown>', "",
           "| Module | What it is |", "| --- | --- |"]
    for page in pages:
        out.append(f"| [`{page.name}`]({relative_file(page.api_page, 'api/index.md')}) | {_cell(page.summary)} |")
    return "\n".join(out + ["", "</div>"]) + "\n"


def module_map_markdown(pages: list[ModulePage], from_page: str) -> str:
    """The map of modules in reading order (for the home page)."""
    out = ["| Module | What it is |", "| --- | --- |"]
    for page in pages:
        if page.host is not None:
            continue
        depth = page.name.count(".") - 2
        indent = "&emsp;" * max(depth, 0)
        out.append(f"| {indent}[{_cell(page.title)}]({relative_file(page.page, from_page)}) | {_cell(page.summary)} |")
    return "\n".join(out)


def navigation(pages: list[ModulePage], extra_top: list, extra_bottom: list) -> list:
    """The mkdocs `nav`: the home page, the modules in reading order (packages as sections), then the API index."""
    tree: dict = {}
    for page in pages:
        if page.host is not None:
            continue
        parts = page.name.split(".")[1:]
        node = tree
        for part in parts[:-1] if not page.is_package else parts:
            node = node.setdefault(part, {})
        if page.is_package:
            node["__page__"] = page
        else:
            node.setdefault(parts[-1], {})["__page__"] = page

    def build(node: dict) -> list:
        entries = []
        if "__page__" in node:
            entries.append(node["__page__"].page)
        for key, child in node.items():
            if key == "__page__":
                continue
            children = build(child)
            if len(children) == 1 and "__page__" in child:
                entries.append(children[0])
            else:
                title = child["__page__"].title if "__page__" in child else key
                entries.append({title: children})
        return entries

    # The API pages are reached from the API reference's index (listing them all in every page's navigation would
    # double its weight).
    return extra_top + build(tree) + extra_bottom + [{"API reference": "api/index.md"}]


# ---------------------------------------------------------------------------------------------------------------
# HTML post-processing of the annotated pages: links from names in the code to their definitions, and anchors

CODE_BLOCK = re.compile(r'(<code>)(<span class="linenos" data-linenos="\s*(\d+)\s*"></span>.*?)(</code>)', re.S)
# The same, with the classes of the block (`lnn-alt` marks an alternate's code).
HIGHLIGHTED_CODE_BLOCK = re.compile(r'(<div class="([^"]*)"><pre[^>]*><span></span>(<code>))'
                                    r'(<span class="linenos" data-linenos="\s*(\d+)\s*"></span>.*?)(</code>)', re.S)
TAB_INPUTS = re.compile(r"<p>((?:<input [^>]*>)+)</p>")
HTML_PIECE = re.compile(r"(<[^>]*>)|([^<]+)")
SECTION_OPEN = re.compile(r'<div class="lnn-section[\w -]*" id="(L\d+)">')


class Linker:
    """Adds code links and definition anchors to the HTML of the annotated pages."""

    def __init__(self, pages: list[ModulePage], use_directory_urls: bool = True):
        self.pages = {p.name: p for p in pages}
        self.by_page = {p.page: p for p in pages}
        self.use_directory_urls = use_directory_urls

    def href(self, target: symbols.Target, from_page: ModulePage) -> str | None:
        """The link to `target` from the annotated page `from_page`; a name of an alternate goes to its place in
        the host's page."""
        page = self.pages.get(target.module)
        if page is None:
            return None
        anchor = target.qualname
        if page.host is not None:
            page, anchor = page.host, page.anchor_prefix + anchor if anchor else None
        if page is from_page:
            return f"#{anchor}" if anchor else None
        return relative_url(page.page + (f"#{anchor}" if anchor else ""), from_page.page, self.use_directory_urls)

    def _links(self, module: ModulePage, page: ModulePage, taken: set[str]) -> dict:
        """Position in `module`'s source -> (name, opening tag, closing tag) for its code on `page`."""
        links: dict[tuple[int, int], tuple[str, str, str]] = {}
        for position, (text, target) in module.symbols.references.items():
            href = self.href(target, page)
            if href is not None:
                links[position] = (text, f'<a class="lnn-xref" href="{html.escape(href)}">', "</a>")
        # An id the page already has (a heading's slug: `## Main` above `def main`) marks the same place: keep it.
        for position, (text, anchor) in module.anchors_in_code.items():
            anchor = module.anchor_prefix + anchor
            if anchor not in taken:
                links[position] = (text, f'<span class="lnn-def" id="{html.escape(anchor)}">', "</span>")
        return links

    def process(self, page_path: str, content: str) -> str:
        page = self.by_page.get(page_path)
        if page is None:
            return content
        taken = set(re.findall(r'\bid="([^"]+)"', content))
        links = self._links(page, page, taken)
        alternate_links = self._links(page.alternate, page, taken) if page.alternate else {}

        def block(match: re.Match) -> str:
            used = alternate_links if "lnn-alt" in match.group(2).split() else links
            return match.group(1) + _link_code(match.group(4), int(match.group(5)), used) + match.group(6)

        content = HIGHLIGHTED_CODE_BLOCK.sub(block, content)
        # Markdown wraps the tabs' radio buttons in a paragraph; material's styles need them children of the set.
        content = TAB_INPUTS.sub(r"\1", content)
        ids = page.section_ids
        placed = {ids[i]: [n for n in names if n not in taken] for i, names in page.anchors_at_sections.items()}

        def section(match: re.Match) -> str:
            anchors = "".join(f'<span class="lnn-def" id="{html.escape(n)}"></span>' for n in placed.get(match[1], []))
            # The `#` is drawn by CSS, so that the search index does not read it as text.
            permalink = f'<a class="lnn-permalink" href="#{match[1]}" title="Link to this section"></a>'
            return match.group(0) + anchors + permalink

        return drop_duplicate_empty_anchors(SECTION_OPEN.sub(section, content))


EMPTY_ANCHOR = re.compile(r'(?:<p>)?<a id="([^"]+)"></a>(?:</p>)?\n?')


def drop_duplicate_empty_anchors(content: str) -> str:
    """Remove an author's empty `<a id="x"></a>` when the page has another element with that id (a heading's, or
    a generated one): the other element marks the same place, and ids must be unique."""
    counts: dict[str, int] = {}
    for found in re.findall(r'\bid="([^"]+)"', content):
        counts[found] = counts.get(found, 0) + 1

    def drop(match: re.Match) -> str:
        if counts.get(match.group(1), 0) > 1:
            counts[match.group(1)] -= 1
            return ""
        return match.group(0)

    return EMPTY_ANCHOR.sub(drop, content)


def _link_code(code: str, first_line: int, links: dict[tuple[int, int], tuple[str, str, str]]) -> str:
    """Wrap the names at the given source positions in the highlighted code (a Pygments HTML fragment)."""
    out = []
    line, column = first_line, 0
    for match in HTML_PIECE.finditer(code):
        if match.group(1):
            out.append(match.group(1))
            continue
        escaped = match.group(2)
        text = html.unescape(escaped)
        link = links.get((line, column))
        if link is not None and text == link[0]:
            out.append(f"{link[1]}{escaped}{link[2]}")
        else:
            out.append(escaped)
        newlines = text.count("\n")
        if newlines:
            line += newlines
            column = len(text) - text.rfind("\n") - 1
        else:
            column += len(text)
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Long lines of code: wrapped, with a hanging indent, on wide screens

HIGHLIGHTED = re.compile(r'(<pre[^>]*><span></span><code>)(.*?)(</code></pre>)', re.S)
LINE_NUMBER = re.compile(r'^(<span class="linenos" data-linenos="([^"]*)"></span>)?(.*)$', re.S)
TAG = re.compile(r"<[^>]*>")
# Lines at least this long may not fit the code column; shorter ones are left as they are.
WRAP_FROM = 48


def wrap_long_lines(content: str) -> str:
    """Mark the long lines of every highlighted code block, so that on a wide screen they wrap inside their column
    rather than scroll, continuing four characters right of the line's own indentation (`lnn.css`).

    Each long line (after its line number) goes into `<span class="lnn-wrap" style="--g:G;--i:I">`: `G` is the
    width of the line number, `I` the line's indentation, in characters, and its indentation into
    `<span class="lnn-indent">`. Pygments closes its spans at the end of
    every line, so a line is a balanced piece of HTML; a line that is not is left alone."""

    def block(match: re.Match) -> str:
        lines = match.group(2).split("\n")
        for i, line in enumerate(lines):
            parts = LINE_NUMBER.match(line)
            number, digits, rest = parts.group(1) or "", parts.group(2) or "", parts.group(3)
            text = html.unescape(TAG.sub("", rest))
            if len(text) < WRAP_FROM or rest.count("<span") != rest.count("</span>") \
                    or rest.count("<a ") != rest.count("</a>"):
                continue
            # The indentation, when it is plain text before the first token, is drawn as a margin instead (its
            # spaces stay, for copying, but take no room), so that it never wraps onto a line of its own.
            spaces = len(rest) - len(rest.lstrip(" "))
            if spaces:
                rest = f'<span class="lnn-indent">{rest[:spaces]}</span>{rest[spaces:]}'
            lines[i] = f'{number}<span class="lnn-wrap" style="--g:{len(digits)};--i:{spaces}">{rest}</span>'
        return match.group(1) + "\n".join(lines) + match.group(3)

    return HIGHLIGHTED.sub(block, content)
