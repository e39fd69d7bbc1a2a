"""What the built site shows: every figure drawn is on a page and opens at full size, experiment pages show their
recorded results, the search previews hold no TeX, long pages have a table of contents, notebooks suit the machine,
and the build prints no warning about missing tools. (The layout in a browser: `test_browser_layout.py`.)"""
import io
import json
import re
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from site_src import notebooks, pages, record_results, results  # noqa: E402
from site_src.tex_text import tex_to_text  # noqa: E402
from site_src.testing import build_site, page_file, resolve  # noqa: E402

RAW_TEX = re.compile(r"\\(text|frac|sqrt|mathrm|mathbf|operatorname|theta|omega|alpha|sigma|epsilon|big|Big|sum|"
                     r"begin|end|cdot|top|le|langle|lfloor|quad)\b|[_^]\{|\\[()\[\]]")


@pytest.fixture(scope="module")
def site() -> Path:
    return build_site().path


@pytest.fixture(scope="module")
def module_pages() -> list[pages.ModulePage]:
    # The pages of the site: an alternate (a chapter in JAX/Flax) is shown on its host's page.
    return [page for page in pages.discover(REPO) if page.host is None]


def html_pages(site: Path) -> list[Path]:
    return [p for p in site.rglob("*.html") if p.name != "404.html"]


IMG = re.compile(r'<img\b[^>]*\bsrc="([^"]+)"')
LINKED_IMG = re.compile(r'<a\b[^>]*\bhref="([^"]+)"[^>]*>\s*<img\b[^>]*\bsrc="([^"]+)"')


def test_every_figure_the_build_writes_is_shown_on_a_page(site):
    drawn = {p for folder in ("figures", results.RESULTS) for p in (site / folder).rglob("*.png")}
    assert {"masks.png", "attention.png", "rope_rotation.png"} <= {p.name for p in drawn}
    shown = set()
    for page in html_pages(site):
        for src in IMG.findall(page.read_text(encoding="utf-8")):
            target, _ = resolve(site, page, src)
            if target is not None:
                shown.add(target)
    assert not drawn - shown, f"figures no page shows: {sorted(str(p.relative_to(site)) for p in drawn - shown)}"
    # The masks and attention figures are on the pages of the code that draws them.
    assert "figures/masks.png" in page_file(site, "transformers/utils.md").read_text(encoding="utf-8")
    assert "figures/attention.png" in page_file(site, "transformers/mha.md").read_text(encoding="utf-8")


def test_figures_open_at_full_size(site):
    for page in html_pages(site):
        text = page.read_text(encoding="utf-8")
        images = IMG.findall(text)
        linked = {src for href, src in LINKED_IMG.findall(text) if resolve(site, page, href) == resolve(site, page, src)}
        unlinked = [src for src in images if src not in linked]
        assert not unlinked, f"{page.relative_to(site)}: figures that don't link to themselves: {unlinked}"


def test_search_previews_hold_no_tex(site):
    index = json.loads((site / "search/search_index.json").read_text(encoding="utf-8"))
    raw = []
    for document in index["docs"]:
        # Code is searchable as written (a string may hold `\n`); the prose around it must not show TeX.
        prose = re.sub(r"<pre>.*?</pre>|<code>.*?</code>", " ", document["text"], flags=re.S)
        found = RAW_TEX.search(prose)
        if found:
            raw.append(f"{document['location']}: ...{prose[max(0, found.start() - 40):found.end() + 40]}...")
    assert not raw, f"{len(raw)} of {len(index['docs'])} entries show TeX:\n" + "\n".join(raw[:10])
    positional = " ".join(d["text"] for d in index["docs"] if d["location"].startswith("transformers/positional"))
    assert "PE_(p,2i) = sin (p ωᵢ)" in positional


@pytest.mark.parametrize("tex, text", [
    (r"\mathrm{PE}_{p+k}", "PEₚ₊ₖ"),
    (r"\text{softmax}\big(QK^\top/\sqrt{d_k}\big)V", "softmax(QKᵀ/√dₖ)V"),
    (r"\theta_i = \text{base}^{-\frac{2i}{d}}", "θᵢ = base^(-2i/d)"),
    (r"\lVert R x \rVert = \lVert x \rVert", "‖ R x ‖ = ‖ x ‖"),
    (r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}", "(a b; c d)"),
    (r"\frac{1}{n}\sum_{i} x_{\text{max}}", "1/n Σᵢ xₘₐₓ"),
])
def test_tex_reads_as_plain_text(tex, text):
    assert tex_to_text(tex) == text


def test_long_pages_have_a_table_of_contents(site, module_pages):
    """The headings of a module page are listed in the navigation, under the page (`toc.integrate`)."""
    checked = 0
    for module in module_pages:
        text = page_file(site, module.page).read_text(encoding="utf-8")
        headings = re.findall(r'<h[23] id="([^"]+)"', text)
        if len(headings) < 3:
            continue
        nav = text[text.index('<nav class="md-nav md-nav--primary'):text.index('class="md-content"')]
        assert 'data-md-component="toc"' in nav, f"{module.page}: no table of contents in the navigation"
        listed = set(re.findall(r'href="#([^"]+)"', nav))
        assert set(headings) <= listed, f"{module.page}: headings missing from the contents: {set(headings) - listed}"
        checked += 1
    assert checked >= 10


def test_a_long_line_of_code_wraps_with_its_indentation_and_text_unchanged():
    line = '<span class="linenos" data-linenos="118 "></span>        <span class="k">def</span> f(' + "x, " * 20 + ")"
    short = '<span class="linenos" data-linenos="119 "></span>    <span class="k">pass</span>'
    block = f'<pre><span></span><code>{line}\n{short}\n</code></pre>'
    wrapped = pages.wrap_long_lines(block)
    assert ('<span class="linenos" data-linenos="118 "></span><span class="lnn-wrap" style="--g:4;--i:8">'
            '<span class="lnn-indent">        </span><span class="k">def</span>') in wrapped
    assert f"\n{short}\n" in wrapped
    assert re.sub(r"<[^>]+>", "", wrapped) == re.sub(r"<[^>]+>", "", block)


# ---------------------------------------------------------------------------------------------------------------
# Recorded results


def png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 30, 30, 255)).save(out, format="PNG")
    return out.getvalue()


def fake_run(tmp_path: Path, module: str = "rope") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"module": module, "preset": "default", "torch": "2.13.0",
                                                 "run": {"seed": 0, "device": "cpu"}}))
    (run / "result.json").write_text(json.dumps({
        "val_loss": {"rope": 1.75432, "fixed": 1.89211}, "steps": {"rope": 2000, "fixed": 2000},
        "leak": 0.000442967, "best": "rope", "wall_s": 201.4,
        "distance": [[3.04, 3.59], [6.72, 7.94]],
        "sample": {"rope": "ROMEO:\nWhat say you?", "fixed": "JULIET:\nAy me." + " x" * 40}}))
    (run / "loss.png").write_bytes(png(1500, 600))
    (run / "loss_by_position.png").write_bytes(png(800, 400))
    (run / "rope").mkdir()
    (run / "rope" / "loss.png").write_bytes(png(10, 10))
    return run


def test_record_results_copies_a_run_and_the_page_renders_it(tmp_path):
    from PIL import Image

    run = fake_run(tmp_path)
    docs = tmp_path / "docs"
    folder = record_results.record("rope", run, docs, machine="a test machine")
    assert sorted(p.name for p in folder.iterdir()) == ["loss.png", "loss_by_position.png", "record.json",
                                                         "result.json"]
    assert Image.open(folder / "loss.png").width == record_results.DEFAULT_MAX_WIDTH
    record = json.loads((folder / "record.json").read_text())
    assert record["command"] == "python -m labml_nn.transformers.rope --device cpu"
    assert record["figures"] == ["loss_by_position.png", "loss.png"] and record["wall_s"] == 201.4

    recorded = results.load_all(docs)["rope"]
    text = results.markdown(recorded, "transformers/experiments/rope.md")
    assert f"## {results.HEADING}" in text and "a test machine" in text and "3 min 21 s" in text
    assert "```text\npython -m labml_nn.transformers.rope --device cpu\n```" in text
    # Variants side by side, the numbers as a reader compares them.
    assert "| | `rope` | `fixed` |" in text and "| `val_loss` | 1.754 | 1.892 |" in text
    assert "| `steps` | 2,000 | 2,000 |" in text and "| `leak` | 4.4e-4 |" in text
    assert "| 1 | 6.72 | 7.94 |" in text
    # Figures link to themselves at full size; the long sample is in a collapsed block, the short one too.
    assert ("[![loss.png](../../results/rope/loss.png)](../../results/rope/loss.png \"loss.png, full size\")"
            in text)
    assert '??? note "sample: fixed"' in text


def test_record_results_refuses_what_is_not_a_finished_run(tmp_path):
    run = fake_run(tmp_path)
    with pytest.raises(ValueError, match="run of 'rope', not of 'gpt'"):
        record_results.record("gpt", run, tmp_path / "docs")
    (run / "result.json").unlink()
    with pytest.raises(ValueError, match="not a finished run"):
        record_results.record("rope", run, tmp_path / "docs")


def test_experiment_pages_show_their_recorded_results(site, module_pages):
    recorded = results.load_all(REPO / "docs")
    assert recorded, "no recorded run in docs/results"
    for name, run in recorded.items():
        page = page_file(site, f"transformers/experiments/{name}.md")
        text = page.read_text(encoding="utf-8")
        assert f'id="{results.ANCHOR}"' in text, f"{name}: no results section"
        assert run.machine in text and run.command in re.sub(r"<[^>]+>", "", text)
        shown = {resolve(site, page, src)[0] for src in IMG.findall(text)}
        for figure in run.figures:
            assert site / results.RESULTS / name / figure in shown, f"{name}: {figure} not shown"
        # The module page links to them.
        module = next(m for m in module_pages if m.name == f"labml_nn.transformers.{name}")
        assert f"experiments/{name}/#{results.ANCHOR}" in page_file(site, module.page).read_text(encoding="utf-8")
    # The numbers of the README's experiments table.
    if "mha" in recorded:
        assert "1.755" in page_file(site, "transformers/experiments/mha.md").read_text(encoding="utf-8")
    # An experiment without a recorded run has no results section.
    for module in module_pages:
        name = module.name.rsplit(".", 1)[-1]
        if ".experiments." in module.name and name not in recorded:
            assert f'id="{results.ANCHOR}"' not in page_file(site, module.page).read_text(encoding="utf-8")


def test_recorded_figures_are_small():
    sizes = sum(p.stat().st_size for p in (REPO / "docs" / results.RESULTS).rglob("*"))
    assert sizes < 2 * 2**20, f"docs/results holds {sizes / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------------------------
# Notebooks and the build


def run_last_cell(notebook: dict, cuda: bool) -> list[str]:
    cell = "".join([c for c in notebook["cells"] if c["cell_type"] == "code"][-1]["source"])
    calls = []
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: cuda))
    saved = sys.modules.get("torch")
    sys.modules["torch"] = fake_torch
    try:
        exec(compile(cell, "last cell", "exec"), {"main": calls.append})
    finally:
        sys.modules["torch"] = saved
    return calls[0]


def test_the_notebook_runs_what_suits_the_machine(site):
    gpt = json.loads((site / "transformers/experiments/gpt.ipynb").read_text(encoding="utf-8"))
    assert run_last_cell(gpt, cuda=False) == ["--preset", "baby"]
    assert run_last_cell(gpt, cuda=True) == []
    notes = "".join([c for c in gpt["cells"] if c["cell_type"] == "markdown"][-1]["source"])
    assert "`main([])` runs the full experiment" in notes
    # An experiment whose default preset suits a CPU runs it everywhere.
    mha = json.loads((site / "transformers/experiments/mha.ipynb").read_text(encoding="utf-8"))
    assert run_last_cell(mha, cuda=False) == run_last_cell(mha, cuda=True) == []
    assert notebooks.cpu_preset('run_experiment("x", C, t, presets={"default": d, "small": s})') == "small"


def docs_extra() -> list[str]:
    """The requirements of the `docs` extra, read from setup.py's `DOCS = [...]` without running setup()."""
    import ast

    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    assignment = next(node for node in tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", None) == "DOCS")
    value = assignment.value.left if isinstance(assignment.value, ast.BinOp) else assignment.value
    return [element.value for element in value.elts]


def test_the_build_prints_no_warning_about_missing_tools():
    # mkdocstrings formats the signatures of the API pages with ruff: the docs extra installs it.
    assert any(requirement.startswith("ruff") for requirement in docs_extra())
    log = build_site().log
    assert "Formatting signatures requires either Black or Ruff" not in log, log
