"""The built site: `mkdocs build --strict` succeeds, every module has its page with every section, every link and
asset resolves inside the site, math is rendered, and nothing is fetched from another host."""
import html
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from site_src import pages  # noqa: E402
from site_src.testing import build_site, page_file, parse_page, prose, resolve  # noqa: E402

SKIPPED_SCHEMES = ("mailto:", "javascript:", "data:", "tel:")


@pytest.fixture(scope="session")
def site() -> Path:
    return build_site().path


@pytest.fixture(scope="session")
def module_pages() -> list[pages.ModulePage]:
    return pages.discover(REPO)


def html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_one_page_per_module_with_every_section(site, module_pages):
    assert len(module_pages) >= 10
    alternates = 0
    for module in module_pages:
        if module.host is not None:
            # The JAX/Flax version of a chapter has no page: every line of it is in its host's JAX/Flax tabs.
            assert not page_file(site, module.page).exists(), module.page
            text = page_file(site, module.host.page).read_text(encoding="utf-8")
            assert _code_lines(text, alternate=True) == _source_lines(module), module.source_path
            assert page_file(site, module.api_page).exists()
            alternates += 1
            continue
        built = page_file(site, module.page)
        assert built.exists(), f"{module.source_path} has no page at {built}"
        text = built.read_text(encoding="utf-8")
        sections = re.findall(r'<div class="lnn-section[\w -]*" id="(L\d+)">', text)
        assert sections == module.section_ids, module.source_path
        assert len(sections) == len(module.module.sections)
        # Every code line of the module is on the page with its own line number.
        assert _code_lines(text) == _source_lines(module), module.source_path
        # Title and description from the front matter.
        if module.module.title:
            assert f"<title>{_html(module.module.title)}" in text
        if module.module.summary:
            description = re.search(r'<meta name="description" content="([^"]*)">', text)
            assert html.unescape(description.group(1)) == module.module.summary
        assert page_file(site, module.api_page).exists()
    # The six chapters of the from-scratch track, in JAX/Flax.
    assert alternates == 6


def _code_lines(text: str, alternate: bool = False) -> list[int]:
    """The line numbers of the page's code blocks: the module's own, or (`alternate`) those of its JAX/Flax tabs."""
    blocks = re.findall(r'<div class="language-python( lnn-alt)? highlight"><pre>(.*?)</pre>', text, re.S)
    return [int(n) for marker, block in blocks if bool(marker) == alternate
            for n in re.findall(r'data-linenos="\s*(\d+)\s*"', block)]


def _source_lines(module: pages.ModulePage) -> list[int]:
    return [b.line + i for s in module.module.sections for b in s.code for i in range(len(b.lines))]


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def test_the_transformers_modules_are_in_the_navigation_in_reading_order(site):
    text = page_file(site, "index.md").read_text(encoding="utf-8")
    nav = text[text.index('<nav class="md-nav md-nav--primary'):]
    order = ["transformers/utils/", "transformers/mha/", "transformers/positional_encoding/", "transformers/rope/",
             "transformers/feed_forward/", "transformers/models/", "transformers/configs/", "transformers/gpt/",
             "transformers/label_smoothing_loss/", "transformers/llama/", "transformers/experiments/",
             "experiments/", "api/"]
    positions = [nav.find(f'href="{url}"') for url in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions))
    assert positions == sorted(positions)


def test_every_link_and_asset_resolves_inside_the_site(site):
    broken = []
    for path in html_files(site):
        parsed = parse_page(path)
        assert not parsed.duplicate_ids, f"{path.relative_to(site)}: duplicate ids {sorted(parsed.duplicate_ids)}"
        for tag, attribute, url in parsed.urls:
            if url.startswith(SKIPPED_SCHEMES):
                continue
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                # A link to another site is fine; an asset loaded from one is not (see the next test).
                continue
            target, fragment = resolve(site, path, url)
            if target is None:
                broken.append(f"{path.relative_to(site)}: <{tag} {attribute}={url!r}> -> missing file")
            elif fragment and target.suffix == ".html" and fragment not in parse_page(target).ids:
                broken.append(f"{path.relative_to(site)}: <{tag} {attribute}={url!r}> -> no anchor #{fragment}")
    assert not broken, "\n".join(broken[:50])


def test_no_asset_comes_from_another_host(site):
    """Scripts, stylesheets, images, fonts and frames are all served by the site itself."""
    external = []
    for path in html_files(site):
        for tag, attribute, url in parse_page(path).urls:
            is_asset = attribute == "src" or tag == "link"
            host = urlsplit(url).netloc
            if is_asset and (host or url.startswith("//")) and not host.startswith("127.0.0.1"):
                external.append(f"{path.relative_to(site)}: <{tag} {attribute}={url}>")
    for css in site.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text(encoding="utf-8")):
            if re.match(r"(https?:)?//", url):
                external.append(f"{css.relative_to(site)}: url({url})")
            elif not url.startswith(("data:", "#")):
                assert (css.parent / url.split("?")[0].split("#")[0]).exists(), f"{css}: url({url}) is missing"
    for script in site.rglob("*.js"):
        text = script.read_text(encoding="utf-8", errors="replace")
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text or script.name.startswith("bundle"), script
    assert not external, "\n".join(external)
    # The KaTeX stylesheet and fonts are the site's own.
    assert (site / "assets/katex/katex.min.css").exists()
    assert len(list((site / "assets/katex/fonts").glob("*.woff2"))) >= 10


# Math left as TeX in the text: a pair of dollars around something, a TeX command, or \\( \\[ delimiters.
# (A lone `$`, as in `$HOME`, is prose.)
RAW_TEX = re.compile(r"\$[^$\s][^$]*\$|\\(frac|sqrt|text|mathbf|mathop|begin|end|sum|top)\b|\\\(|\\\[")


def test_math_is_rendered_at_build_time(site, module_pages):
    for path in html_files(site):
        text = path.read_text(encoding="utf-8")
        assert 'class="arithmatex">\\(' not in text and 'class="arithmatex">\\[' not in text, path
        raw = [t.strip()[:80] for t in prose(path) if RAW_TEX.search(t)]
        assert not raw, f"{path.relative_to(site)}: TeX left in the text: {raw}"
        # `$$...$$` written under a line of text is read as inline math between two stray dollars.
        assert '$<span class="arithmatex"' not in text, f"{path.relative_to(site)}: a `$` before a formula"
    mha = page_file(site, "transformers/mha.md").read_text(encoding="utf-8")
    assert mha.count('class="katex"') > 20
    assert 'class="katex-display"' in mha
    assert 'href="../../assets/katex/katex.min.css"' in mha


def test_code_links_and_definition_anchors(site):
    mha = page_file(site, "transformers/mha.md").read_text(encoding="utf-8")
    ids = parse_page(page_file(site, "transformers/mha.md")).ids
    for anchor in ["KVCache", "KVCache.append", "MultiHeadAttention", "MultiHeadAttention.forward",
                   "MultiHeadAttention.attend_explicitly"]:
        assert anchor in ids, anchor
    # `cache: KVCache | None` in forward's signature links to the class on the same page,
    # and `self.project(...)` to the method.
    assert '<a class="lnn-xref" href="#KVCache">KVCache</a>' in mha
    assert '<a class="lnn-xref" href="#MultiHeadAttention.project">project</a>' in mha
    # A page that imports from mha links to mha's page.
    models = page_file(site, "transformers/models.md").read_text(encoding="utf-8")
    assert re.search(r'<a class="lnn-xref" href="\.\./mha/#MultiHeadAttention">MultiHeadAttention</a>', models)


def test_search_index_holds_notes_and_code(site):
    index = json.loads((site / "search/search_index.json").read_text(encoding="utf-8"))
    mha = [doc for doc in index["docs"] if doc["location"].startswith("transformers/mha/")]
    text = " ".join(doc["text"] for doc in mha)
    assert "masked_fill" in text and "grouped-query attention" in text.lower()
    # The index holds the formulas as plain text (for the previews), not KaTeX's HTML nor the TeX.
    assert "katex" not in text
    assert "softmax_seq((Q Kᵀ)/√dₖ)V" in text and "\\frac" not in text and "\\(" not in text and "\\[" not in text
    assert index["config"]["separator"].startswith("[\\s\\-,:!=\\[\\]()\"/_]+")


def test_figures_notebooks_and_sources_are_generated(site, module_pages):
    for name in ["masks.png", "attention.png", "positional_encoding.png", "rope_rotation.png", "label_smoothing.png"]:
        figure = site / "figures" / name
        assert figure.exists(), f"figure {name} was not generated"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    notebooks = [m for m in module_pages if m.notebook]
    assert notebooks, "no experiment was converted into a notebook"
    for module in notebooks:
        notebook = json.loads((site / module.notebook).read_text(encoding="utf-8"))
        assert notebook["nbformat"] == 4 and notebook["cells"]
        code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
        experiment = (REPO / module.experiment_source).read_text(encoding="utf-8")
        assert "def main" in code
        # In a notebook the experiment runs with an explicit command line, not the kernel's arguments: empty, or
        # a CPU preset when there is no GPU (test_site_content.py).
        if '__name__ == "__main__"' in experiment:
            assert re.search(r"main\((\[\]|\[\] if torch\.cuda\.is_available\(\) else \[.*\])\)$", code.rstrip())
            assert "__main__" not in code
        page = page_file(site, module.shown_at).read_text(encoding="utf-8")
        assert "download" in page and Path(module.notebook).name in page
    for module in module_pages:
        assert (site / module.source_copy).read_text(encoding="utf-8") == module.source
    # Every module of the tour runs as an experiment, and its page says how.
    for name in pages.READING_ORDER[:-1]:
        module = next(m for m in module_pages if m.name == f"labml_nn.transformers.{name}")
        page = page_file(site, module.page).read_text(encoding="utf-8")
        command = re.search(r'<div class="lnn-run">.*?<code>(.*?)</code>', page, re.S)
        assert command, f"{module.page} does not show how to run it"
        assert re.sub(r"<[^>]+>", "", command.group(1)).strip() == f"python -m {module.name}"


def test_api_pages_have_no_front_matter_and_short_anchors(site):
    api = page_file(site, "api/transformers/mha.md")
    text = api.read_text(encoding="utf-8")
    assert "title: Multi-Head Attention" not in text and "summary:" not in text
    ids = parse_page(api).ids
    assert {"labml_nn.transformers.mha.MultiHeadAttention", "MultiHeadAttention", "KVCache"} <= ids


def test_404_page(site):
    text = (site / "404.html").read_text(encoding="utf-8")
    assert "Page not found" in text
