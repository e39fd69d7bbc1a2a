"""A Griffe extension for the API pages: removes the front matter (`title:`, `summary:` between `---` lines) from
module docstrings, which mkdocstrings would otherwise show as text, and leaves out the instance attributes that
have no docstring (`self.d_head = ...`: the annotated page explains them, the API page would only list names).
Listed under the mkdocstrings handler's `extensions` in mkdocs.yml."""
from __future__ import annotations

from typing import Any

import griffe

from site_src.splitter import parse_front_matter


class StripFrontMatter(griffe.Extension):
    """Strips the front matter from every module docstring, and undocumented attributes from classes."""

    def on_module(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.docstring is not None:
            _, text, _ = parse_front_matter(mod.docstring.value)
            mod.docstring.value = text

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        for name, member in list(cls.members.items()):
            if not member.is_alias and member.is_attribute and member.docstring is None:
                del cls.members[name]
