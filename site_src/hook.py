"""The mkdocs hook (listed under `hooks:` in mkdocs.yml): a thin shim between mkdocs 1.6 and `site_src.generator`.

* `on_files`: adds the generated pages, sources, notebooks, figures and assets (`File.generated`, nothing written to
  docs/), and sets the navigation;
* `on_page_markdown`: fills the home page's map of modules;
* `on_page_content`: code links and anchors;
* `on_post_page`: math rendered by KaTeX (after the search plugin has read the page, so the index holds the TeX, not
  KaTeX's HTML), the theme's indentation and the spans of plain code tokens removed;
* `on_post_build`: the math delimiters taken out of the search index, for readable previews.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from site_src import generator  # noqa: E402
from site_src.katex import KatexRenderer, MathError  # noqa: E402
from site_src.minify import collapse_whitespace, unwrap_plain_code_tokens  # noqa: E402

_state: dict = {"site": None, "katex": None}


def on_files(files: Files, config) -> Files:
    try:
        site = generator.generate(ROOT, config.use_directory_urls, Path(config.docs_dir))
    except SyntaxError as error:
        raise PluginError(f"cannot split a module: {error}") from error
    except MathError as error:
        raise PluginError(str(error)) from error
    _state["site"] = site
    for path, content in site.files.items():
        if files.get_file_from_path(path) is not None:
            raise PluginError(f"docs/{path} would hide the generated {path}: remove it from docs/")
        inclusion = InclusionLevel.NOT_IN_NAV if path in site.not_in_nav else InclusionLevel.UNDEFINED
        if isinstance(content, Path):
            files.append(File.generated(config, path, abs_src_path=str(content), inclusion=inclusion))
        else:
            files.append(File.generated(config, path, content=content, inclusion=inclusion))
    config.nav = site.nav
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if generator.MODULE_MAP_MARKER in markdown:
        markdown = markdown.replace(generator.MODULE_MAP_MARKER, _state["site"].module_map(page.file.src_uri))
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    html, new_ids = _state["site"].process_page_html(page.file.src_uri, html)
    if page.present_anchor_ids is not None:
        page.present_anchor_ids |= new_ids
    return html


def on_post_page(output: str, page, config) -> str:
    if _state["katex"] is None:
        _state["katex"] = KatexRenderer()
    source, name = _state["site"].sources.get(page.file.src_uri, (None, page.file.src_uri))
    try:
        output = _state["katex"].render_html(output, source, name)
    except MathError as error:
        raise PluginError(str(error)) from None
    return unwrap_plain_code_tokens(collapse_whitespace(output))


def on_post_build(config) -> None:
    index = Path(config.site_dir) / "search" / "search_index.json"
    if index.exists():
        index.write_text(generator.tidy_search_index(index.read_text(encoding="utf-8")), encoding="utf-8")


def on_shutdown() -> None:
    if _state["katex"] is not None:
        _state["katex"].close()
        _state["katex"] = None
