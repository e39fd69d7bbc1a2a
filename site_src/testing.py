"""Helpers for the site's tests: build the site once per test session, serve it on 127.0.0.1, and read it back.

Used by `tests/test_site_build.py` and `tests/test_browser.py`; the build is cached in this module, so a test
session that runs both builds the site once.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import posixpath
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BuiltSite:
    path: Path
    seconds: float
    log: str


_built: dict[str, BuiltSite] = {}
_built_errors: dict[str, str] = {}


def build_site() -> BuiltSite:
    """`mkdocs build --strict` into a temporary folder, once per process. Raises with the build log on failure."""
    if "site" in _built:
        return _built["site"]
    if "error" in _built_errors:
        raise RuntimeError(_built_errors["error"])
    out = Path(tempfile.mkdtemp(prefix="labml-nn-site-")) / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        # Kept, so that the other tests of the session fail at once instead of building again.
        _built_errors["error"] = f"mkdocs build --strict failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        raise RuntimeError(_built_errors["error"])
    _built["site"] = BuiltSite(out, seconds, result.stderr)
    return _built["site"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class SiteServer:
    """The site served by Python's http.server on 127.0.0.1 on a free port, in a thread."""
    path: Path
    server: http.server.HTTPServer = field(init=False)

    def __post_init__(self):
        handler = functools.partial(_QuietHandler, directory=str(self.path))
        self.server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _LinkParser(html.parser.HTMLParser):
    """Collects ids and the URLs in href/src attributes (with the tag they are on) of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.duplicate_ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                if value in self.ids and name == "id":
                    self.duplicate_ids.add(value)
                self.ids.add(value)
            elif name in ("href", "src"):
                self.urls.append((tag, name, value))


class _ProseParser(html.parser.HTMLParser):
    """The text of a page's content outside code, scripts and rendered math."""

    SKIPPED = {"code", "pre", "script", "style", "textarea"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # per open element: whether text inside it is skipped
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        skipped = bool(self.stack and self.stack[-1]) or tag in self.SKIPPED or "katex" in classes
        self.stack.append(skipped)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]) and data.strip():
            self.texts.append(data)


def prose(path: Path) -> list[str]:
    """Text nodes of the page's article, outside code, scripts and rendered math."""
    text = path.read_text(encoding="utf-8")
    start = text.find("<article")
    parser = _ProseParser()
    parser.feed(text[start:text.find("</article>", start)] if start >= 0 else text)
    return parser.texts


@functools.lru_cache(maxsize=None)
def parse_page(path: Path) -> _LinkParser:
    parser = _LinkParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def resolve(site: Path, page: Path, url: str) -> tuple[Path | None, str]:
    """The file a local URL on `page` points to (None if it is missing), and its fragment."""
    parts = urlsplit(url)
    target_path = unquote(parts.path)
    if not target_path:
        return page, parts.fragment
    base = "/" + page.relative_to(site).parent.as_posix()
    absolute = posixpath.normpath(posixpath.join(base, target_path)) if not target_path.startswith("/") \
        else posixpath.normpath(target_path)
    candidate = site / absolute.lstrip("/")
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return (candidate if candidate.is_file() else None), parts.fragment


def page_file(site: Path, page: str) -> Path:
    """The built HTML file of the docs page `page` (`transformers/mha.md` -> site/transformers/mha/index.html)."""
    stem = page[:-3]
    if stem == "index" or stem.endswith("/index"):
        return site / (stem[:-5] if stem != "index" else "") / "index.html"
    return site / stem / "index.html"
