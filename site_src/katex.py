"""Math rendered at build time: the `pymdownx.arithmatex` placeholders in a page's HTML become KaTeX HTML.

One Node process (`katex_server.js`, KaTeX from `site_src/node_modules`, pinned by `package-lock.json`) serves the
whole build, answering one JSON line per formula; formulas already seen are served from an in-memory cache. A TeX
error raises `MathError` naming the source file and line of the formula.

The site ships KaTeX's stylesheet and its woff2 fonts (`assets()`), so pages need no JavaScript and no other host
to show an equation.
"""
from __future__ import annotations

import atexit
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
KATEX_DIST = HERE / "node_modules" / "katex" / "dist"

# arithmatex's generic output: `<span class="arithmatex">\(...\)</span>` inline,
# `<div class="arithmatex">\[...\]</div>` (or a bare `\begin{env}...\end{env}`) for display math.
PLACEHOLDER = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


class MathError(Exception):
    """A formula KaTeX cannot render."""


class KatexRenderer:
    """A long-lived KaTeX process with a cache. Use `render_html` on each page's HTML; `close` at the end."""

    def __init__(self, output: str = "html"):
        self.output = output
        self.cache: dict[tuple[str, bool], str] = {}
        self.process: subprocess.Popen | None = None
        self.rendered = 0

    def _start(self) -> subprocess.Popen:
        node = shutil.which("node")
        if node is None:
            raise MathError("Node.js is needed to render the site's math: install it, then `npm ci` in site_src")
        check_installed()
        process = subprocess.Popen([node, str(HERE / "katex_server.js")], cwd=HERE, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
        atexit.register(self.close)
        return process

    def render(self, tex: str, display: bool) -> str:
        """KaTeX HTML for one formula; raises `MathError` with KaTeX's message."""
        key = (tex, display)
        if key in self.cache:
            return self.cache[key]
        return self.render_many([key])[0]

    def render_many(self, formulas: list[tuple[str, bool]]) -> list[str]:
        """Render many formulas with one round trip for those not cached (errors raise after all are read)."""
        missing = list(dict.fromkeys(f for f in formulas if f not in self.cache))
        if missing:
            if self.process is None or self.process.poll() is not None:
                self.process = self._start()
            requests = "".join(json.dumps({"tex": tex, "display": display, "output": self.output}) + "\n"
                               for tex, display in missing)
            self.process.stdin.write(requests)
            self.process.stdin.flush()
            errors = []
            for key in missing:
                line = self.process.stdout.readline()
                if not line:
                    raise MathError("the KaTeX process stopped unexpectedly")
                answer = json.loads(line)
                if "error" in answer:
                    errors.append((key[0], answer["error"]))
                else:
                    self.cache[key] = answer["html"]
                    self.rendered += 1
            if errors:
                raise MathError("; ".join(f"{message} in {tex!r}" for tex, message in errors))
        return [self.cache[f] for f in formulas]

    def render_html(self, page_html: str, source: Path | None = None, source_name: str = "") -> str:
        """Replace every arithmatex placeholder in `page_html` by KaTeX's HTML.

        `source` is the file the page was made from; a TeX error names it and the line of the formula.
        """
        matches = list(PLACEHOLDER.finditer(page_html))
        if not matches:
            return page_html
        formulas = [parse_placeholder(m.group(1), m.group(2)) for m in matches]
        try:
            self.render_many(formulas)
        except MathError:
            for tex, display in formulas:
                try:
                    self.render(tex, display)
                except MathError as error:
                    where = locate(tex, source, source_name)
                    raise MathError(f"{where}: TeX error: {error}") from None
            raise
        pieces, last = [], 0
        for match, (tex, display) in zip(matches, formulas):
            pieces.append(page_html[last:match.start()])
            # KaTeX's HTML alone (no MathML copy: it doubles the page's weight); assistive technology reads the
            # TeX of the `role="img"` wrapper, whose children are presentational, so KaTeX's `aria-hidden` goes.
            rendered = self.cache[(tex, display)].replace(' aria-hidden="true"', "", 1)
            label = html.escape(tex, quote=True)
            pieces.append(f'<div class="arithmatex" role="img" aria-label="{label}">{rendered}</div>' if display
                          else f'<span class="arithmatex" role="img" aria-label="{label}">{rendered}</span>')
            last = match.end()
        pieces.append(page_html[last:])
        return "".join(pieces)

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.stdin.close()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None


def parse_placeholder(tag: str, content: str) -> tuple[str, bool]:
    """TeX and display mode of one arithmatex placeholder."""
    tex = html.unescape(content).strip()
    display = tag == "div"
    if display and tex.startswith("\\[") and tex.endswith("\\]"):
        tex = tex[2:-2].strip()
    elif not display and tex.startswith("\\(") and tex.endswith("\\)"):
        tex = tex[2:-2].strip()
    return tex, display


def locate(tex: str, source: Path | None, source_name: str) -> str:
    """`file:line` of a formula: the first line of `source` that contains the formula's first line."""
    name = source_name or (str(source) if source else "<unknown page>")
    if source is None or not source.exists():
        return name
    first = next((line.strip() for line in tex.split("\n") if line.strip()), tex)
    for number, line in enumerate(source.read_text(encoding="utf-8").split("\n"), start=1):
        if first in line:
            return f"{name}:{number}"
    return name


def check_installed() -> None:
    if not (KATEX_DIST / "katex.min.css").exists():
        raise MathError(f"KaTeX is not installed: run `npm ci` in {HERE} (or `bash .ci/setup docs`)")


def stylesheet() -> str:
    """KaTeX's stylesheet, pointing at the woff2 fonts only (every browser that can run the site reads woff2)."""
    check_installed()
    css = (KATEX_DIST / "katex.min.css").read_text(encoding="utf-8")
    return re.sub(r',\s*url\([^)]*\.(?:woff|ttf)\)\s*format\("(?:woff|truetype)"\)', "", css)


def fonts() -> list[Path]:
    """The woff2 fonts that `stylesheet()` refers to."""
    return sorted((KATEX_DIST / "fonts").glob("*.woff2"))
