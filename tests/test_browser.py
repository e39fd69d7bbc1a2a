"""The built site in a real browser (Debian's headless Chromium driven by Playwright), served on 127.0.0.1.

Screenshots go to `test-artifacts/site/`. Run with `pytest tests/test_browser.py -m browser`.
"""
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from site_src import pages  # noqa: E402
from site_src.testing import SiteServer, build_site  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "site"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync",
                 "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check"]


@pytest.fixture(scope="session")
def server():
    served = SiteServer(build_site().path)
    yield served
    served.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `bash .ci/setup browser` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def module_pages() -> list[pages.ModulePage]:
    # The pages of the site: an alternate (a chapter in JAX/Flax) is shown on its host's page.
    return [page for page in pages.discover(REPO) if page.host is None]


class Watcher:
    """Console errors, page errors and requests to hosts other than 127.0.0.1, for every page of a context."""

    def __init__(self, context):
        self.errors: list[str] = []
        self.foreign: list[str] = []
        context.on("page", self.watch)

    def watch(self, page):
        page.on("console", lambda message: self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("request", self.request)

    def request(self, request):
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.hostname != "127.0.0.1":
            self.foreign.append(request.url)

    def check(self):
        assert not self.errors, "console errors:\n" + "\n".join(self.errors)
        assert not self.foreign, "requests to other hosts:\n" + "\n".join(self.foreign)


@pytest.fixture
def context_for(browser):
    contexts = []

    def make(width: int, height: int, scheme: str = "light"):
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
        watcher = Watcher(context)
        contexts.append((context, watcher))
        return context, watcher

    yield make
    for context, watcher in contexts:
        context.close()
        watcher.check()


def open_page(context, url: str):
    page = context.new_page()
    page.goto(url, wait_until="load")
    return page


def screenshot(page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


SHOWN_FRAMEWORKS = """() => [...new Set([...document.querySelectorAll('.lnn-frameworks .tabbed-block')]
  .filter(b => b.offsetParent !== null).map(b => b.dataset.framework))]"""


SECTION_BOXES = """() => [...document.querySelectorAll('.lnn-section')].map(s => {
  const notes = s.querySelector(':scope > .lnn-notes'), code = s.querySelector(':scope > .lnn-code');
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {id: s.id, notes: box(notes), code: box(code), wide: s.classList.contains('lnn-wide'),
          hasNotes: notes.textContent.trim().length > 0, hasCode: code.querySelector('pre') !== null};
})"""

# What does not fit on a page: code blocks that scroll sideways, formulas that scroll or are cut (a centred formula
# wider than its box loses its left part, which no scrolling reaches), code under a copy button, figures shown
# smaller than they are drawn (up to 720 px), and code whose copied text differs from the source.
FIT = r"""() => {
  const content = document.querySelector('.md-content');
  const box = e => e.getBoundingClientRect();
  const scrolling = [...content.querySelectorAll('pre > code')].filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => c.textContent.split('\n').reduce((a, b) => b.length > a.length ? b : a).trim().slice(0, 80));
  const math = [];
  for (const display of content.querySelectorAll('.katex-display')) {
    const bases = [...display.querySelectorAll('.katex-html > .base')].map(box);
    if (!bases.length) continue;
    const left = Math.min(...bases.map(r => r.left)), right = Math.max(...bases.map(r => r.right));
    const r = box(display);
    if (left < r.left - 1 || right > r.right + 1 || display.scrollWidth > display.clientWidth + 1)
      math.push(display.closest('.arithmatex').getAttribute('aria-label').slice(0, 60));
  }
  const covered = [];
  for (const button of content.querySelectorAll('.md-clipboard')) {
    const b = box(button), code = button.parentElement.querySelector('code');
    if (!code || b.width === 0) continue;
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    scan: for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      range.selectNodeContents(node);
      for (const t of range.getClientRects()) {
        if (t.top >= b.bottom) break scan;
        if (t.width > 0 && t.right > b.left && t.left < b.right && t.bottom > b.top) {
          covered.push(node.textContent.trim().slice(0, 40)); break scan;
        }
      }
    }
  }
  const small = [...content.querySelectorAll('img')].filter(i => box(i).width < Math.min(i.naturalWidth, 720) - 1)
    .map(i => `${i.getAttribute('src')}: ${Math.round(box(i).width)} of ${i.naturalWidth} px`);
  // (What a closed <details> holds is not rendered, so it has no innerText.)
  const copied = [...content.querySelectorAll('pre > code')].filter(c => !c.closest('details:not([open])'))
    .filter(c => c.innerText.trimEnd() !== c.textContent.trimEnd())
    .map(c => c.textContent.slice(0, 60));
  return {scrolling, math, covered, small, copied};
}"""

# On a narrow screen a formula wider than the screen scrolls inside its own box: none of it is cut off, the box
# that scrolls is on the screen, and the formula does not start at the very edge of the screen (it would look cut).
NARROW_MATH = r"""() => {
  const cut = [];
  for (const display of document.querySelectorAll('.md-content .katex-display')) {
    if (!display.getClientRects().length) continue;  // in a tab not shown
    const bases = [...display.querySelectorAll('.katex-html > .base')].map(e => e.getBoundingClientRect());
    if (!bases.length) continue;
    // The box that scrolls it: the first one up from the formula that can scroll and is on the screen.
    const width = document.documentElement.clientWidth;
    let scroller = display;
    for (; scroller && scroller !== document.body; scroller = scroller.parentElement) {
      const r = scroller.getBoundingClientRect();
      if (['auto', 'scroll'].includes(getComputedStyle(scroller).overflowX) && r.left >= -1 && r.right <= width + 1)
        break;
    }
    const label = display.closest('.arithmatex').getAttribute('aria-label').slice(0, 60);
    if (!scroller || scroller === document.body) { cut.push(`${label}: no box on the screen scrolls it`); continue; }
    const s = scroller.getBoundingClientRect();
    const left = Math.min(...bases.map(r => r.left)), right = Math.max(...bases.map(r => r.right));
    if (left < s.left - 1) cut.push(`${label}: its left part is cut`);
    else if (left < Math.max(s.left, 0) + 8) cut.push(`${label}: it starts at the edge of the screen, as if cut`);
    else if (right > s.right + 1 && scroller.scrollWidth < scroller.clientWidth + right - s.right - 1)
      cut.push(`${label}: its right part can't be scrolled to`);
  }
  return cut;
}"""

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('.md-content *')].filter(e => {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || e.closest('pre, .katex-display, .md-typeset__scrollwrap, .highlight, .katex')) return false;
    return r.right > width + 1;
  }).map(e => e.tagName + '.' + e.className);
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
}"""

RAW_MATH = r"""() => {
  const walker = document.createTreeWalker(document.querySelector('.md-content'), NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest('code, pre, .katex, script, style, .md-search')) continue;
    // Math left as TeX: a pair of dollars around something, a TeX command, or \( \[ delimiters. (A lone `$`,
    // as in `$HOME`, is prose.)
    if (/\$[^$\s][^$]*\$|\\(frac|sqrt|text|mathbf|mathop|begin|end|sum|top)\b|\\\(|\\\[/.test(node.textContent))
      raw.push(node.textContent.trim().slice(0, 80));
  }
  return {raw, rendered: document.querySelectorAll('.katex').length};
}"""


def test_wide_screen_notes_and_code_side_by_side(server, context_for, module_pages):
    context, _ = context_for(1440, 900)
    page = context.new_page()
    formulas = 0
    for module in module_pages:
        page.goto(server.url + pages.page_url(module.page), wait_until="load")
        # Every formula is rendered: no TeX left in the text.
        math = page.evaluate(RAW_MATH)
        assert not math["raw"], f"{module.page}: raw TeX in the text: {math['raw']}"
        formulas += math["rendered"]
        sections = page.evaluate(SECTION_BOXES)
        assert len(sections) == len(module.module.sections), module.page
        for section in sections:
            if not (section["hasNotes"] and section["hasCode"]):
                continue
            notes, code = section["notes"], section["code"]
            where = f"{module.page}#{section['id']}"
            if section["wide"]:
                # The introduction and notes with a figure: across both columns, their code below them.
                assert code[1] >= notes[3] - 1, f"{where}: wide notes not above their code: {notes} {code}"
                continue
            assert code[0] >= notes[2], f"{where}: code starts left of the notes' right edge: {notes} {code}"
            assert abs(code[1] - notes[1]) <= 1, f"{where}: tops not aligned: notes {notes[1]}, code {code[1]}"
        # Code and formulas fit their columns, no copy button covers code, figures show at their size.
        fit = page.evaluate(FIT)
        for problem, found in fit.items():
            assert not found, f"{module.page}: {problem}: {found}"
        if module.alternate is not None:
            page.locator(".lnn-frameworks .tabbed-labels label", has_text=module.alternate.framework).first.click()
            page.wait_for_function(f"() => ({SHOWN_FRAMEWORKS})().join() === '{module.alternate.framework_key}'")
            for problem, found in page.evaluate(FIT).items():
                assert not found, f"{module.page}, {module.alternate.framework}: {problem}: {found}"
            page.locator(".lnn-frameworks .tabbed-labels label", has_text="PyTorch").first.click()
        if module.page == "transformers/mha.md":
            screenshot(page, "mha-1440.png")
            page.goto(server.url + "transformers/mha/#MultiHeadAttention.forward")
            page.wait_for_timeout(200)
            screenshot(page, "mha-1440-forward.png")
        if module.page == "transformers/rope/index.md":
            page.locator(".arithmatex[aria-label^='f(x, m)']").scroll_into_view_if_needed()
            screenshot(page, "rope-1440-equation.png")
        if module.page == "transformers/experiments/mha.md":
            page.goto(server.url + "transformers/experiments/mha/#measured-results")
            page.wait_for_timeout(200)
            screenshot(page, "experiment-mha-1440-results.png")
    assert formulas > 100
    # The table of contents is in the navigation (no right-hand column) and the content uses the width of the
    # window.
    page.goto(server.url + "transformers/mha/")
    assert page.evaluate("() => document.querySelector('.md-sidebar--secondary') === null")
    content_right = page.evaluate("() => document.querySelector('.md-content').getBoundingClientRect().right")
    assert content_right > 1400


def test_narrow_screen_stacks_without_horizontal_overflow(server, context_for, module_pages):
    context, _ = context_for(390, 844)
    page = context.new_page()
    for module in module_pages:
        page.goto(server.url + pages.page_url(module.page), wait_until="load")
        for section in page.evaluate(SECTION_BOXES):
            if section["hasNotes"] and section["hasCode"]:
                assert section["code"][1] >= section["notes"][3] - 1, f"{module.page}#{section['id']}: not stacked"
        overflow = page.evaluate(OVERFLOW)
        assert overflow["scroll"] <= overflow["width"], f"{module.page}: the page scrolls sideways: {overflow}"
        assert not overflow["wide"], f"{module.page}: elements wider than the screen: {overflow['wide']}"
        cut = page.evaluate(NARROW_MATH)
        assert not cut, f"{module.page}: formulas cut: {cut}"
        if module.alternate is not None:
            # The JAX/Flax tabs fit as well.
            page.locator(".lnn-frameworks .tabbed-labels label", has_text=module.alternate.framework).first.click()
            page.wait_for_function(f"() => ({SHOWN_FRAMEWORKS})().join() === '{module.alternate.framework_key}'")
            overflow = page.evaluate(OVERFLOW)
            assert overflow["scroll"] <= overflow["width"] and not overflow["wide"], f"{module.page}: {overflow}"
            cut = page.evaluate(NARROW_MATH)
            assert not cut, f"{module.page}, {module.alternate.framework}: formulas cut: {cut}"
            page.locator(".lnn-frameworks .tabbed-labels label", has_text="PyTorch").first.click()
        if module.page == "transformers/mha.md":
            screenshot(page, "mha-390.png")
        if module.page == "transformers/rope/index.md":
            page.locator(".arithmatex[aria-label^='f(x, m)']").scroll_into_view_if_needed()
            screenshot(page, "rope-390-equation.png")
    page.goto(server.url)
    screenshot(page, "home-390.png")


def test_search_finds_the_attention_page(server, context_for):
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url)
    page.click("label.md-search__icon, .md-search__input")
    # The search worker reports when its index is ready; a query typed before that is not run.
    page.wait_for_function("() => document.querySelector('.md-search-result__meta').textContent"
                           ".trim() === 'Type to start searching'", timeout=30_000)
    page.locator("input.md-search__input").press_sequentially("multi-head", delay=20)
    page.wait_for_selector(".md-search-result__item", timeout=15_000)
    links = page.eval_on_selector_all(".md-search-result__item a", "items => items.map(a => a.href)")
    assert any("/transformers/mha/" in link for link in links), links
    screenshot(page, "search-multi-head.png")
    # Code is searchable too.
    page.fill("input.md-search__input", "masked_fill")
    page.wait_for_function("() => [...document.querySelectorAll('.md-search-result__item a')]"
                           ".some(a => a.href.includes('/transformers/mha/'))", timeout=15_000)


def test_a_name_in_the_code_links_to_its_definition(server, context_for):
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/models/")
    link = page.locator('.lnn-code a.lnn-xref[href$="mha/#MultiHeadAttention"]').first
    link.scroll_into_view_if_needed()
    link.click()
    page.wait_for_url(re.compile(r"/transformers/mha/#MultiHeadAttention$"))
    page.wait_for_function("() => { const e = document.getElementById('MultiHeadAttention');"
                           " const r = e && e.getBoundingClientRect(); return r && r.top >= 0 && r.top < 200; }",
                           timeout=5_000)
    assert page.title().startswith("Multi-Head Attention")
    screenshot(page, "crosslink-to-MultiHeadAttention.png")
    # Within a page: `self.project(...)` in forward goes to the method.
    # (Instant loading turns every link into an absolute URL.)
    page.locator('a.lnn-xref[href$="#MultiHeadAttention.project"]').first.click()
    page.wait_for_function("() => location.hash === '#MultiHeadAttention.project'")
    top = page.evaluate("() => document.getElementById('MultiHeadAttention.project').getBoundingClientRect().top")
    assert 0 <= top < 200


def contrast(page, selector: str) -> float:
    """WCAG contrast ratio of an element's text colour against the page background."""
    return page.evaluate("""selector => {
      const element = document.querySelector(selector);
      const parse = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const background = e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
        if (!c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return parse(c); } return [255, 255, 255]; };
      const lum = rgb => { const [r, g, b] = rgb.map(v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const a = lum(parse(getComputedStyle(element).color)), b = lum(background(element));
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    }""", selector)


def test_dark_mode_toggles_and_stays_readable(server, context_for):
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/mha/")
    scheme = "() => document.body.getAttribute('data-md-color-scheme')"
    assert page.evaluate(scheme) == "default"
    readable = [".lnn-notes p", ".lnn-notes .katex", ".lnn-code code .n", ".lnn-code code .k"]
    for selector in readable:
        assert contrast(page, selector) >= 4.5, f"light: {selector}"
    page.locator("form.md-header__option label:visible").first.click()
    page.wait_for_function(f"() => ({scheme})() === 'slate'")
    for selector in readable:
        assert contrast(page, selector) >= 4.5, f"dark: {selector}"
    screenshot(page, "mha-1440-dark.png")
    page.locator("form.md-header__option label:visible").first.click()
    page.wait_for_function(f"() => ({scheme})() === 'default'")


def test_measure_the_attention_page(server, context_for, request):
    """Not a speed test: records the page's weight and first contentful paint for the report."""
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/mha/")
    page.wait_for_load_state("networkidle")
    metrics = page.evaluate("""() => {
      const navigation = performance.getEntriesByType('navigation')[0];
      const resources = performance.getEntriesByType('resource');
      const paint = performance.getEntriesByName('first-contentful-paint')[0];
      return {html: navigation.encodedBodySize, total: navigation.transferSize
              + resources.reduce((sum, r) => sum + r.transferSize, 0),
              requests: resources.length + 1, fcp: paint ? paint.startTime : null};
    }""")
    html_bytes = (build_site().path / "transformers/mha/index.html").stat().st_size
    assert metrics["html"] == html_bytes
    assert metrics["fcp"] is not None
    print(f"\nMHA page: HTML {html_bytes / 1024:.1f} KiB, transferred {metrics['total'] / 1024:.1f} KiB "
          f"in {metrics['requests']} requests, first contentful paint {metrics['fcp']:.0f} ms")


def test_a_long_page_lists_its_sections_beside_it(server, context_for):
    """The Llama page (a package's page, 15,000 px tall) shows its contents in the navigation, and a click on one
    goes there."""
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/llama/")
    toc = page.locator(".md-sidebar--primary [data-md-component='toc']")
    assert toc.is_visible()
    links = toc.locator("a.md-nav__link")
    assert links.count() >= 10
    assert toc.bounding_box()["x"] < 300
    target = links.nth(3)
    anchor = target.get_attribute("href").split("#")[1]
    target.click()
    page.wait_for_function(f"() => location.hash === '#{anchor}'")
    page.wait_for_timeout(300)
    top = page.evaluate(f"() => document.getElementById('{anchor}').getBoundingClientRect().top")
    assert 0 <= top < 200
    screenshot(page, "llama-1440-contents.png")


def test_a_figure_opens_at_full_size(server, context_for):
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/rope/")
    link = page.locator("a.lnn-figure:has(img[src*='rope_rotation.png'])")
    # Resolved by the browser: the link goes to the image itself. (Not clicked: Chromium then asks for
    # /favicon.ico, which the site does not have, and logs the 404 as a console error.)
    href, src = link.evaluate("a => [a.href, a.querySelector('img').src]")
    assert href == src and href.endswith("/figures/rope_rotation.png")
    response = context.request.get(href)
    assert response.ok and response.headers["content-type"] == "image/png"


def test_a_formula_too_wide_for_the_notes_widens_its_section(server, context_for):
    """A section whose display math does not fit the notes column takes the whole width (lnn.js), so that the
    formula shows whole: here RoPE's rotation, in an introduction made narrow for the test."""
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/rope/")
    section = "document.querySelector('.lnn-section')"
    page.evaluate(f"() => {{ {section}.classList.remove('lnn-wide'); }}")
    assert page.evaluate(f"() => {section}.classList.contains('lnn-wide')") is False
    page.evaluate("() => window.lnnWiden()")
    assert page.evaluate(f"() => {section}.classList.contains('lnn-wide')")
    assert not page.evaluate(FIT)["math"]


def test_the_jax_flax_tab_switches_every_section_of_every_chapter(server, context_for):
    context, _ = context_for(1440, 900)
    page = open_page(context, server.url + "transformers/from_scratch/ch3_multi_head/")
    assert page.evaluate(SHOWN_FRAMEWORKS) == ["pytorch"]
    # Every section with code has the two tabs.
    assert page.evaluate("() => [...document.querySelectorAll('.lnn-section')]"
                         ".every(s => !s.querySelector('pre') || s.querySelector('.lnn-frameworks'))")
    page.locator(".lnn-frameworks .tabbed-labels label", has_text="JAX/Flax").nth(1).click()
    page.wait_for_function(f"() => ({SHOWN_FRAMEWORKS})().join() === 'flax'", timeout=5_000)
    page.locator("#flax-MultiHeadAttention").scroll_into_view_if_needed()
    screenshot(page, "from-scratch-ch3-flax-1440.png")
    # The choice is remembered on the next chapter.
    page.goto(server.url + "transformers/from_scratch/ch4_block/", wait_until="load")
    page.wait_for_function(f"() => ({SHOWN_FRAMEWORKS})().join() === 'flax'", timeout=5_000)
    # Back to PyTorch; then a link to a Flax definition opens the JAX/Flax tabs and shows it.
    page.locator(".lnn-frameworks .tabbed-labels label", has_text="PyTorch").first.click()
    page.wait_for_function(f"() => ({SHOWN_FRAMEWORKS})().join() === 'pytorch'", timeout=5_000)
    page.goto(server.url + "transformers/from_scratch/ch2_self_attention/#flax-Head", wait_until="load")
    page.wait_for_function("() => { const e = document.getElementById('flax-Head');"
                           " const r = e && e.getBoundingClientRect();"
                           " return r && e.closest('.tabbed-block').offsetParent !== null && r.top >= 0 && r.top < 900; }", timeout=5_000)
    assert page.evaluate(SHOWN_FRAMEWORKS) == ["flax"]
