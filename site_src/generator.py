"""Everything the site generates from the repository, as plain data: `generate(root)` returns the files to add to
the site (path -> text or bytes, or a path on disk to copy), the navigation, and the page post-processors.

`site_src/hook.py` is the only part that knows mkdocs; another static site generator could use this module as it is.
"""
from __future__ import annotations

import hashlib
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from site_src import figures, katex, notebooks, pages, results, tex_text

log = logging.getLogger("mkdocs.hooks.labml_nn")

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
MODULE_MAP_MARKER = "<!-- module-map -->"

# Results that are slow to make, kept between rebuilds of `mkdocs serve`, keyed by the hash of their inputs.
_figure_cache: dict[str, tuple[dict[str, bytes], dict[str, str]]] = {}
_notebook_cache: dict[str, str] = {}


@dataclass
class Site:
    root: Path
    pages: list[pages.ModulePage]
    linker: pages.Linker
    files: dict[str, str | bytes | Path] = field(default_factory=dict)
    not_in_nav: set[str] = field(default_factory=set)  # pages reached by links, not from the navigation
    nav: list = field(default_factory=list)
    # Page (docs path) -> (source file, name to show) for error messages.
    sources: dict[str, tuple[Path, str]] = field(default_factory=dict)
    skipped_figures: dict[str, str] = field(default_factory=dict)

    def module_map(self, from_page: str) -> str:
        return pages.module_map_markdown(self.pages, from_page)

    def process_page_html(self, page: str, content: str) -> tuple[str, set[str]]:
        """Code links and anchors of annotated pages, short anchors on API pages, figures that open at full size,
        long lines of code that wrap; returns the new ids too."""
        content = pages.wrap_long_lines(link_figures(content))
        if page.startswith("api/"):
            return api_short_anchors(content, page, self.pages, self.linker.use_directory_urls)
        before = set(re.findall(r'\bid="([^"]+)"', content))
        content = self.linker.process(page, content)
        return content, set(re.findall(r'\bid="([^"]+)"', content)) - before


def generate(root: Path, use_directory_urls: bool = True, docs_dir: Path | None = None) -> Site:
    module_pages = pages.discover(root)
    site = Site(root=root, pages=module_pages,
                linker=pages.Linker(module_pages, use_directory_urls))
    recorded = results.load_all(docs_dir if docs_dir is not None else root / "docs")
    for page in module_pages:
        # A recorded run of the page's experiment: shown on the experiment's page, linked from the module's.
        experiment = experiment_of(page)
        appendix, link = "", None
        if experiment in recorded:
            experiment_page = f"transformers/experiments/{experiment}.md"
            link = f"{experiment_page}#{results.ANCHOR}"
            if page.page == experiment_page:
                appendix = results.markdown(recorded[experiment], page.page)
        if page.host is None:
            # An alternate (the JAX/Flax version of a chapter) is read in its host's code column.
            site.files[page.page] = pages.page_markdown(page, module_pages, appendix, link)
        site.files[page.api_page] = pages.api_markdown(page)
        site.not_in_nav.add(page.api_page)
        site.files[page.source_copy] = page.source
        site.sources[page.page] = site.sources[page.api_page] = (root / page.source_path, page.source_path)
        if page.notebook and page.notebook not in site.files:
            experiment = (root / page.experiment_source).read_text(encoding="utf-8")
            site.files[page.notebook] = notebook(experiment)
    site.files["api/index.md"] = pages.api_index_markdown(module_pages)

    drawn, site.skipped_figures = draw_figures(root)
    for name, png in drawn.items():
        site.files[f"figures/{name}"] = png
    for name, reason in site.skipped_figures.items():
        log.info(f"figure {name} skipped: {reason}")

    site.files["assets/katex/katex.min.css"] = katex.stylesheet()
    for font in katex.fonts():
        site.files[f"assets/katex/fonts/{font.name}"] = font
    for asset in sorted(ASSETS.iterdir()):
        site.files[f"assets/{asset.name}"] = asset

    if docs_dir is not None:
        for path in docs_dir.rglob("*.md"):
            relative = path.relative_to(docs_dir).as_posix()
            site.sources[relative] = (path, f"docs/{relative}")
    site.nav = pages.navigation(module_pages, [{"Home": "index.md"}], [])
    return site


IMAGE = re.compile(r'(<a\b[^>]*>\s*)?(<img\b[^>]*\bsrc="([^"]+)"[^>]*>)')


def link_figures(content: str) -> str:
    """Every image not already in a link becomes a link to itself: a click opens the figure at full size."""
    def link(match: re.Match) -> str:
        if match.group(1):
            return match.group(0)
        return f'<a class="lnn-figure" href="{match.group(3)}" title="Open at full size">{match.group(2)}</a>'

    return IMAGE.sub(link, content)


def experiment_of(page: pages.ModulePage) -> str | None:
    """The name of the experiment a page runs or is (`mha` for `transformers/mha.md` and for
    `transformers/experiments/mha.md`): the key of its recorded results."""
    parts = page.name.split(".")
    if parts[1:3] == ["transformers", "experiments"] and len(parts) == 4:
        return parts[3]
    if page.notebook and page.notebook.startswith("transformers/experiments/"):
        return page.notebook.rsplit("/", 1)[1][:-len(".ipynb")]
    return None


def draw_figures(root: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    digest = hashlib.sha256()
    for path in sorted((root / pages.PACKAGE).rglob("*.py")) + [HERE / "figures.py"]:
        digest.update(path.as_posix().encode())
        digest.update(path.read_bytes())
    key = digest.hexdigest()
    if key not in _figure_cache:
        _figure_cache.clear()
        _figure_cache[key] = figures.build_all()
    return _figure_cache[key]


def notebook(source: str) -> str:
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _notebook_cache:
        _notebook_cache[key] = notebooks.notebook(source)
    return _notebook_cache[key]


MATH = re.compile(r"\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)


def tidy_search_index(index_json: str) -> str:
    """The search index holds the TeX of the formulas (the math is rendered after the search plugin reads a page);
    a result's preview shows each formula as plain text instead (`tex_text`), without arithmatex's delimiters."""
    import json

    def plain(match: re.Match) -> str:
        tex = html.unescape(match.group(1) if match.group(1) is not None else match.group(2))
        return html.escape(tex_text.tex_to_text(tex), quote=False)

    index = json.loads(index_json)
    for document in index["docs"]:
        document["text"] = MATH.sub(plain, document["text"])
    return json.dumps(index, ensure_ascii=False, separators=(",", ":"))


API_HEADING_ID = re.compile(r'<(h\d) id="([\w.]+)"')


def api_short_anchors(content: str, page: str, module_pages: list[pages.ModulePage],
                      use_directory_urls: bool = True) -> tuple[str, set[str]]:
    """On an API page, mkdocstrings' anchors are full paths (`labml_nn.transformers.mha.KVCache`). Add the short
    ones the annotated page uses (`KVCache`), so that `#KVCache` in a docstring works on both pages."""
    module = next((p for p in module_pages if p.api_page == page), None)
    if module is None:
        return content, set()
    prefix = module.name + "."
    existing = set(re.findall(r'\bid="([^"]+)"', content))
    added: set[str] = set()

    def add(match: re.Match) -> str:
        full = match.group(2)
        if not full.startswith(prefix):
            return match.group(0)
        short = full[len(prefix):]
        if short in existing or short in added:
            return match.group(0)
        added.add(short)
        return f'<span class="lnn-def" id="{short}"></span>{match.group(0)}'

    content = API_HEADING_ID.sub(add, content)
    ids = existing | added

    # mkdocstrings prefixes the in-page links of a docstring (`#train_char_lm`) with the object's id
    # (`#labml_nn.experiments.char_lm--train_char_lm`), as it does the ids of the docstring's own headings. A link
    # to a class or function gets its short anchor back; a link to a section of the notes, which only the
    # annotated page has, goes there.
    def relink(match: re.Match) -> str:
        full, short = match.group(1), match.group(2)
        if full in ids:
            return match.group(0)
        if short in ids:
            return f'href="#{short}"'
        return f'href="{pages.relative_url(f"{module.page}#{short}", page, use_directory_urls)}"'

    return PREFIXED_LINK.sub(relink, content), added


PREFIXED_LINK = re.compile(r'href="#([\w.]+--([^"]+))"')
