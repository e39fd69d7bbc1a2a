"""A Griffe extension for the API pages: removes the front matter (`title:`, `summary:` between `---` lines) from
module docstrings, which mkdocstrings would otherwise show as text. Listed under the mkdocstrings handler's
`extensions` in mkdocs.yml."""
from __future__ import annotations

from typing import Any

import griffe

from site_src.splitter import parse_front_matter


class StripFrontMatter(griffe.Extension):
    """Strips the front matter from every module docstring."""

    def on_module(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.docstring is not None:
            _, text, _ = parse_front_matter(mod.docstring.value)
            mod.docstring.value = text
