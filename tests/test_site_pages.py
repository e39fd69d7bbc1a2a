"""The site generator's parts: URLs, name resolution for code links, linking highlighted code, and KaTeX."""
import re
import sys
import textwrap
from pathlib import Path

import markdown
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from site_src import generator, katex, notebooks, pages, symbols  # noqa: E402


@pytest.mark.parametrize("target, page, directory_urls, expected", [
    ("transformers/utils.md", "transformers/mha.md", True, "../utils/"),
    ("transformers/utils.md#subsequent_mask", "transformers/mha.md", True, "../utils/#subsequent_mask"),
    ("transformers/rope/index.md#RotaryPositionalEmbeddings", "transformers/mha.md", True,
     "../rope/#RotaryPositionalEmbeddings"),
    ("transformers/mha.md", "transformers/rope/index.md", True, "../mha/"),
    ("transformers/mha.md", "index.md", True, "transformers/mha/"),
    ("index.md", "transformers/mha.md", True, "../../"),
    ("experiments/trainer.md", "transformers/experiments/gpt.md", True, "../../../experiments/trainer/"),
    ("transformers/utils.md", "transformers/mha.md", False, "utils.html"),
    ("transformers/rope/index.md", "transformers/mha.md", False, "rope/index.html"),
    ("figures/masks.png", "transformers/mha.md", True, "../../figures/masks.png"),
])
def test_relative_url(target, page, directory_urls, expected):
    assert pages.relative_url(target, page, directory_urls) == expected


def test_page_paths():
    assert pages.page_path("labml_nn.transformers.mha", False) == "transformers/mha.md"
    assert pages.page_path("labml_nn.transformers.rope", True) == "transformers/rope/index.md"
    assert pages.page_path("labml_nn.experiments.trainer", False) == "experiments/trainer.md"


def test_reading_order():
    names = ["labml_nn.experiments.trainer", "labml_nn.transformers.mha", "labml_nn.transformers",
             "labml_nn.transformers.experiments.mha", "labml_nn.transformers.zzz", "labml_nn.transformers.utils",
             "labml_nn.transformers.llama.generation", "labml_nn.transformers.llama", "labml_nn.experiments"]
    assert sorted(names, key=pages.reading_key) == [
        "labml_nn.transformers", "labml_nn.transformers.utils", "labml_nn.transformers.mha",
        "labml_nn.transformers.llama", "labml_nn.transformers.llama.generation",
        "labml_nn.transformers.experiments.mha", "labml_nn.transformers.zzz", "labml_nn.experiments",
        "labml_nn.experiments.trainer"]


PROJECT = {
    "pkg": ("", True),
    "pkg.base": (textwrap.dedent('''\
        class Base:
            def score(self, x):
                return x

        def helper(x):
            return x
        '''), False),
    "pkg.sub": ("from pkg.base import Base as Exported\n", True),
    "pkg.user": (textwrap.dedent('''\
        import pkg.base
        from pkg import base
        from . import base as b2
        from .sub import Exported
        from pkg.base import helper
        from os import path

        class Child(Exported):
            def forward(self, helper):
                self.score(helper)
                return pkg.base.helper(1), base.Base, b2.helper, path

            def other(self):
                return helper(2), self.forward(0)

        def f(x: Exported) -> "Exported":
            def inner():
                return helper
            return inner
        '''), False),
}


def references(module: symbols.ModuleIndex) -> dict[tuple[int, int], tuple[str, str]]:
    return {position: (text, f"{target.module}#{target.qualname}")
            for position, (text, target) in module.references.items()}


def test_names_resolve_through_imports_and_scopes():
    index = symbols.index_project(PROJECT)
    user = index["pkg.user"]
    assert set(user.definitions) == {"Child", "Child.forward", "Child.other", "f", "f.inner"}
    found = references(user)
    lines = PROJECT["pkg.user"][0].split("\n")

    def at(line: int, text: str, nth: int = 0) -> tuple[int, int]:
        column = -1
        for _ in range(nth + 1):
            column = lines[line - 1].index(text, column + 1)
        return line, column

    expected = {
        at(1, "pkg.base"): ("pkg.base", "pkg.base#None"),
        at(2, "pkg"): ("pkg", "pkg#None"),
        at(2, "base"): ("base", "pkg.base#None"),
        at(3, "."): (".", "pkg#None"),
        at(3, "base"): ("base", "pkg.base#None"),
        at(4, ".sub"): (".sub", "pkg.sub#None"),
        # Re-exported through pkg.sub: links to the definition.
        at(4, "Exported"): ("Exported", "pkg.base#Base"),
        at(5, "pkg.base"): ("pkg.base", "pkg.base#None"),
        at(5, "helper"): ("helper", "pkg.base#helper"),
        at(8, "Exported"): ("Exported", "pkg.base#Base"),
        # An inherited method.
        at(10, "score"): ("score", "pkg.base#Base.score"),
        at(11, "pkg"): ("pkg", "pkg#None"),
        at(11, "base"): ("base", "pkg.base#None"),
        at(11, "helper"): ("helper", "pkg.base#helper"),
        at(11, "base", 1): ("base", "pkg.base#None"),
        at(11, "Base"): ("Base", "pkg.base#Base"),
        at(11, "b2"): ("b2", "pkg.base#None"),
        at(11, "helper", 1): ("helper", "pkg.base#helper"),
        at(14, "helper"): ("helper", "pkg.base#helper"),
        at(14, "forward"): ("forward", "pkg.user#Child.forward"),
        at(16, "Exported"): ("Exported", "pkg.base#Base"),
        at(18, "helper"): ("helper", "pkg.base#helper"),
        at(19, "inner"): ("inner", "pkg.user#f.inner"),
    }
    assert found == expected
    # The parameter `helper` of `forward` shadows the import (line 10) and `os.path` is not in the project:
    # neither is a link, which the exact equality above checks.


def test_columns_count_characters_not_bytes():
    index = symbols.index_project({"p": ("", True), "p.m": ('def g():\n    return "é", g\n', False)})
    ((position, (text, _)),) = index["p.m"].references.items()
    assert text == "g" and position == (2, 16)


def test_linking_highlighted_code():
    code = 'x = KVCache(1)  # KVCache in a comment\ny = "KVCache"; z = KVCache\n'
    md = markdown.Markdown(extensions=["pymdownx.superfences", "pymdownx.highlight"],
                           extension_configs={"pymdownx.highlight": {"linenums_style": "pymdownx-inline"}})
    rendered = md.convert(f'```python linenums="40"\n{code}```')
    links = {(40, 4): ("KVCache", '<a href="#KVCache">', "</a>"), (41, 19): ("KVCache", '<a href="#KVCache">', "</a>")}
    match = pages.CODE_BLOCK.search(rendered)
    assert match and match.group(3) == "40"
    linked = pages._link_code(match.group(2), 40, links)
    assert linked.count('<a href="#KVCache">') == 2
    # Only the names at those positions: not the comment, not the string.
    assert '<a href="#KVCache"><span' not in linked
    assert linked.count('<a href="#KVCache">KVCache</a>') == 2


def test_generated_page_links_and_anchors(tmp_path):
    package = tmp_path / "labml_nn"
    (package / "transformers").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "transformers" / "__init__.py").write_text('"""\n---\ntitle: T\nsummary: S\n---\n\n# T\n"""\n')
    (package / "transformers" / "mha.py").write_text(textwrap.dedent('''\
        """
        ---
        title: Attention
        summary: The summary.
        ---

        # Attention

        Notes with $x_i$.
        """

        import torch


        # ## Cache
        class KVCache:
            """Keys and values."""

            def append(self, k):
                return k

            def helper(self):
                return self.append(1)


        if __name__ == "__main__":
            print(KVCache)
        '''))
    (package / "transformers" / "utils.py").write_text(
        "from labml_nn.transformers.mha import KVCache\n\n\n# Notes\ndef make() -> KVCache:\n    return KVCache()\n"
        "\n\n# ## Main\ndef main():\n    return make()\n")
    found = pages.discover(tmp_path)
    assert [p.name for p in found] == ["labml_nn.transformers", "labml_nn.transformers.utils",
                                       "labml_nn.transformers.mha"]
    mha = found[2]
    assert mha.run_command == "python -m labml_nn.transformers.mha"
    assert mha.title == "Attention" and mha.summary == "The summary."
    # The class starts its section (its header moved beside its docstring); the methods follow in the code.
    assert mha.anchors_at_sections == {1: ["KVCache"]}
    assert mha.anchors_in_code == {(19, 8): ("append", "KVCache.append"), (22, 8): ("helper", "KVCache.helper")}
    md = markdown.Markdown(extensions=["md_in_html", "attr_list", "pymdownx.superfences", "pymdownx.highlight",
                                       "pymdownx.arithmatex", "tables", "meta", "toc"],
                           extension_configs={"pymdownx.highlight": {"linenums_style": "pymdownx-inline"},
                                              "pymdownx.arithmatex": {"generic": True}})
    linker = pages.Linker(found)
    text = pages.page_markdown(mha, found)
    assert text.startswith('---\ntitle: "Attention"\ndescription: "The summary."\n---\n')
    html = linker.process(mha.page, md.convert(text.split("---\n", 2)[2]))
    assert len(re.findall(r'class="lnn-section[\w -]*"', html)) == len(mha.module.sections) == 2
    assert '<span class="lnn-def" id="KVCache"></span>' in html
    assert '<span class="lnn-def" id="KVCache.helper">helper</span>' in html
    assert '<span class="lnn-def" id="KVCache.append">append</span>' in html
    assert '<a class="lnn-xref" href="#KVCache.append">append</a>' in html
    assert '<a class="lnn-xref" href="#KVCache">KVCache</a>' in html
    assert '<div class="lnn-run">' in html and "python -m labml_nn.transformers.mha\n</code>" in html
    utils = found[1]
    html = linker.process(utils.page, md.convert(pages.page_markdown(utils, found).split("---\n", 2)[2]))
    assert '<a class="lnn-xref" href="../mha/#KVCache">KVCache</a>' in html
    assert '<a class="lnn-xref" href="../mha/">labml_nn.transformers.mha</a>' in html
    assert html.count('href="../mha/#KVCache"') == 3
    # `## Main` above `def main` already gives the section the id `main`: no second element with that id.
    assert html.count('id="main"') == 1 and '<span class="lnn-def" id="make"></span>' in html


@pytest.fixture(scope="module")
def renderer():
    renderer = katex.KatexRenderer()
    yield renderer
    renderer.close()


def test_katex_renders_inline_display_and_environments(renderer):
    page = ('<p><span class="arithmatex">\\(x_i &lt; 3\\)</span></p>'
            '<div class="arithmatex">\\[\\begin{aligned} a &amp;= b \\\\ c &amp;= d\\end{aligned}\\]</div>'
            '<div class="arithmatex">\\begin{pmatrix} 1 &amp; 2 \\end{pmatrix}</div>')
    html = renderer.render_html(page)
    assert "arithmatex\">\\(" not in html and html.count('class="katex"') == 3
    assert html.count('class="katex-display"') == 2
    # The TeX was unescaped before rendering (`<` is a relation, not `&lt;` as text), and labels the formula.
    assert 'role="img" aria-label="x_i &lt; 3"' in html
    # The label speaks for the whole formula; KaTeX's own `aria-hidden` inside it is redundant and dropped.
    assert "aria-hidden" not in html
    assert '<span class="mrel">&lt;</span>' in html and "&amp;lt;" not in html
    rendered = renderer.rendered
    renderer.render_html(page)
    assert renderer.rendered == rendered, "a formula seen before is served from the cache"


def test_katex_error_names_the_file_and_line(renderer, tmp_path):
    source = tmp_path / "module.py"
    source.write_text("x = 1\n# $$\\frac{a}{b$$\ny = 2\n")
    with pytest.raises(katex.MathError, match=r"labml_nn/module\.py:2: TeX error: KaTeX parse error"):
        renderer.render_html('<div class="arithmatex">\\[\\frac{a}{b\\]</div>', source, "labml_nn/module.py")
    # The renderer still works after an error.
    assert 'class="katex"' in renderer.render_html('<span class="arithmatex">\\(y\\)</span>')


def test_katex_stylesheet_uses_only_shipped_fonts():
    css = katex.stylesheet()
    fonts = {f.name for f in katex.fonts()}
    urls = re.findall(r"url\(([^)]+)\)", css)
    assert urls and all(url.startswith("fonts/") and url[len("fonts/"):] in fonts for url in urls)


EXPERIMENT = textwrap.dedent('''\
    """
    ---
    title: An experiment
    summary: S.
    ---

    # An experiment
    """

    import os


    # ## Configuration
    class Config:
        """The options."""
        size: int = 1

        # A comment inside the class stays in its cell
        def check(self):
            return self.size


    # ## Training
    def train(config):
        # inner notes
        return config.size


    def main(argv=None):
        return train(Config())


    if __name__ == "__main__":
        main()
    ''')


def test_notebook_cells_break_between_top_level_statements():
    found = notebooks.cells(EXPERIMENT)
    assert [kind for kind, _ in found] == ["markdown", "code", "markdown", "code", "markdown", "code",
                                           "markdown", "code"]
    assert found[0][1] == "# An experiment"
    assert found[2][1] == "## Configuration\n\nThe options."
    assert "# A comment inside the class stays in its cell" in found[3][1]
    assert found[5][1].startswith("def train(config):\n    # inner notes") and "def main" in found[5][1]
    assert "__main__" not in found[5][1]
    assert found[-1] == ("code", "main([])")
    namespace: dict = {}
    for kind, text in found[:-1]:
        if kind == "code":
            exec(compile(text, "cell", "exec"), namespace)
    assert namespace["main"]() == 1


def test_notebook_is_valid_ipynb():
    import json

    document = json.loads(notebooks.notebook(EXPERIMENT))
    assert document["nbformat"] == 4
    assert [c["cell_type"] for c in document["cells"]][:2] == ["markdown", "code"]
    assert "".join(document["cells"][0]["source"]) == "# An experiment"


def test_an_authors_empty_anchor_that_repeats_an_id_is_dropped():
    content = ('<p><a id="sampling"></a></p>\n<h2 id="sampling">Sampling</h2>\n'
               '<p><a id="unique"></a></p>\n<span id="GPT"></span><a id="GPT"></a>')
    assert pages.drop_duplicate_empty_anchors(content) == (
        '<h2 id="sampling">Sampling</h2>\n<p><a id="unique"></a></p>\n<span id="GPT"></span>')


def test_api_pages_get_short_anchors_and_in_page_links_that_resolve():
    module = pages.ModulePage(name="labml_nn.transformers.gpt", source_path="labml_nn/transformers/gpt/__init__.py",
                              source="", is_package=True, module=None, page="transformers/gpt/index.md",
                              api_page="api/transformers/gpt/index.md", source_copy="transformers/gpt/__init__.py")
    content = ('<a href="#labml_nn.transformers.gpt--GPT">GPT</a> <a href="#labml_nn.transformers.gpt--sampling">s</a>'
               ' <a href="#labml_nn.transformers.gpt--notes">n</a><h2 id="labml_nn.transformers.gpt--notes">N</h2>'
               '<h2 id="labml_nn.transformers.gpt.GPT" class="doc">GPT</h2>')
    result, added = generator.api_short_anchors(content, module.api_page, [module])
    assert added == {"GPT"}
    assert '<span class="lnn-def" id="GPT"></span><h2 id="labml_nn.transformers.gpt.GPT"' in result
    # A class: its short anchor on this page. A heading of the docstring: as mkdocstrings wrote it. A section of
    # the notes, which only the annotated page has: that page.
    assert '<a href="#GPT">GPT</a>' in result
    assert '<a href="#labml_nn.transformers.gpt--notes">n</a>' in result
    assert '<a href="../../../transformers/gpt/#sampling">s</a>' in result


def test_minified_code_keeps_its_text_and_styled_tokens():
    import re
    from site_src.minify import collapse_whitespace, unwrap_plain_code_tokens
    page = ('<div>\n    <p><span class="n">prose</span></p>\n    <pre><code><span class="linenos" data-linenos="3 ">'
            '</span><span class="n">x</span><span class="w"> </span><span class="o">=</span><span class="w">  '
            '</span><span class="n">torch</span><span class="o">.</span><span class="n">zeros</span>'
            '<span class="p">(</span><span class="mi">2</span><span class="p">)</span>\n    indented</code></pre>\n</div>')
    out = unwrap_plain_code_tokens(collapse_whitespace(page))
    code = re.search(r"<pre>.*</pre>", out, re.S).group(0)
    assert re.sub(r"<[^>]+>", "", code) == "x =  torch.zeros(2)\n    indented"
    assert '<span class="n">' not in code and '<span class="w">' not in code
    assert code.count('<span class="o">') == 2 and code.count('<span class="p">') == 2 and 'data-linenos="3 "' in code
    # Outside code nothing is unwrapped, and only indentation is collapsed
    assert '<p><span class="n">prose</span></p>' in out and out.startswith("<div>\n<p>")


def _sections(*notes: str) -> list:
    from site_src.splitter import CodeBlock, Section
    return [Section(notes=n, notes_line=i + 1, code=[CodeBlock(line=i + 1, text="x = 1")]) for i, n in enumerate(notes)]


def test_alternate_sections_align_by_their_notes():
    main = _sections("# Title", "## A", "`[batch]`", "## B, PyTorch only", "## C")
    other = _sections("# Title (JAX/Flax)", "## A", "Flax's own remark", "`[batch]`", "## C", "## D, Flax only")
    rows = pages.align_sections(main, other)
    # Worked out by hand: the remark and D join the section before them, B has nothing beside it.
    assert rows == [[0], [1, 2], [3], [], [4, 5]]


def test_alternate_notes_say_only_what_the_main_notes_do_not():
    assert pages.alternate_notes("## The model\n\nSame words.", "## The model\n\nSame words.", "flax-") == ""
    assert pages.alternate_notes("## The model\n\nIn Flax, `nnx.List`.", "## The model\n\nThe heads.",
                                 "flax-") == "In Flax, `nnx.List`."
    assert pages.alternate_notes("## The device\n\nJAX picks it.", "## The command line", "flax-") \
        == "**The device**\n\nJAX picks it."
    assert pages.alternate_notes('<a id="copy"></a> See [above](#copy).', "Other.", "flax-") \
        == '<a id="flax-copy"></a> See [above](#flax-copy).'
    # The introduction: its title goes, the rest stays.
    assert pages.alternate_notes("# 1. Bigram (JAX/Flax)\n\nKeys are explicit.", None, "flax-") == "Keys are explicit."


def test_a_flax_module_is_shown_in_its_pytorch_twins_code_column(tmp_path):
    package = tmp_path / "labml_nn" / "transformers" / "track"
    (package / "flax").mkdir(parents=True)
    (tmp_path / "labml_nn" / "__init__.py").write_text("")
    (tmp_path / "labml_nn" / "transformers" / "__init__.py").write_text('"""\n# T\n"""\n')
    (package / "__init__.py").write_text('"""\n# Track\n"""\n')
    (package / "flax" / "__init__.py").write_text('"""\n# Track in Flax\n"""\n')
    (package / "ch1.py").write_text('"""\n# 1. Heads\n"""\nimport math\n\n\n# ## The head\nclass Head:\n    pass\n\n\n'
                                    '# ## PyTorch only\ndef to_library():\n    return Head()\n')
    (package / "ch2.py").write_text('"""\n# 2. More\n"""\nfrom labml_nn.transformers.track.ch1 import Head\n')
    (package / "flax" / "ch1.py").write_text('"""\n# 1. Heads (JAX/Flax)\n\nKeys.\n"""\nimport jax\n\n\n'
                                             '# ## The head\nclass Head:\n    pass\n')
    (package / "flax" / "ch2.py").write_text('"""\n# 2. More (JAX/Flax)\n"""\n'
                                             'from labml_nn.transformers.track.flax.ch1 import Head\n')
    found = {p.name: p for p in pages.discover(tmp_path)}
    host, alternate = found["labml_nn.transformers.track.ch1"], found["labml_nn.transformers.track.flax.ch1"]
    assert host.alternate is alternate and alternate.host is host and alternate.shown_at == host.page
    assert host.alternate_rows == [[0], [1], []]
    # No page, no place in the navigation: the Flax chapter is read in its twin's tabs.
    nav = str(pages.navigation(list(found.values()), [], []))
    assert "track/flax/ch1.md" not in nav and "track/ch1.md" in nav and "track/flax/index.md" in nav

    md = markdown.Markdown(extensions=["md_in_html", "attr_list", "pymdownx.superfences", "pymdownx.highlight",
                                       "pymdownx.arithmatex", "tables", "toc"],
                           extension_configs={"pymdownx.highlight": {"linenums_style": "pymdownx-inline"},
                                              "pymdownx.arithmatex": {"generic": True}})
    linker = pages.Linker(list(found.values()))
    html = linker.process(host.page, md.convert(pages.page_markdown(host, list(found.values())).split("---\n", 2)[2]))
    labels = re.findall(r'<div class="tabbed-labels">(.*?)</div>', html)
    assert len(labels) == 3 and all(">PyTorch</label>" in l and ">JAX/Flax</label>" in l for l in labels)
    # Material's tabs need the radio buttons as children of the set, not in a paragraph.
    assert re.search(r'lnn-frameworks" data-tabs="1:2">\n<input checked="checked"', html)
    assert "<p><input" not in html
    # The Flax definition has its own anchor; the introduction's Flax notes lose the title and keep the rest.
    assert 'id="flax-Head"' in html and 'id="Head"' in html
    assert '<div class="lnn-alt-notes">\n<p>Keys.</p>' in html and "(JAX/Flax)</h1>" not in html
    assert html.count('class="lnn-alt-none"') == 1
    # The Flax code of chapter 2 links to the Flax `Head`, in chapter 1's page.
    ch2 = found["labml_nn.transformers.track.ch2"]
    html2 = linker.process(ch2.page, md.convert(pages.page_markdown(ch2, list(found.values())).split("---\n", 2)[2]))
    assert '<a class="lnn-xref" href="../ch1/#flax-Head">Head</a>' in html2
    assert '<a class="lnn-xref" href="../ch1/#Head">Head</a>' in html2
