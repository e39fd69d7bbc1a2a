"""The site's splitter: which lines are notes, which are code, and that code keeps its line numbers."""
import ast
import io
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from site_src.splitter import docstring_to_markdown, parse_front_matter, split  # noqa: E402


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def assert_lines_preserved(text: str, module) -> None:
    """Every code block is exactly the source lines it claims to start at."""
    lines = text.split("\n")
    for section in module.sections:
        for block in section.code:
            assert block.lines == lines[block.line - 1:block.line - 1 + len(block.lines)], block


def notes_and_code(module):
    return [(s.notes, [b.text for b in s.code]) for s in module.sections]


def test_comments_above_code_become_notes():
    text = source('''
        import torch

        # ## Softmax
        #
        # $$\\sigma(z)_i = e^{z_i} / \\sum_j e^{z_j}$$
        def softmax(z):
            # Subtract the maximum for stability
            z = z - z.max()
            return z.exp() / z.exp().sum()
        ''')
    module = split(text)
    assert notes_and_code(module) == [
        ("", ["import torch"]),
        ("## Softmax\n\n$$\\sigma(z)_i = e^{z_i} / \\sum_j e^{z_j}$$", ["def softmax(z):"]),
        ("Subtract the maximum for stability", ["    z = z - z.max()\n    return z.exp() / z.exp().sum()"]),
    ]
    assert [s.code_line for s in module.sections] == [1, 6, 8]
    assert [s.notes_line for s in module.sections] == [None, 3, 7]
    assert_lines_preserved(text, module)


def test_hash_inside_strings_is_code():
    text = source('''
        # Notes
        x = "# not a comment"
        y = """
        # not a comment either, inside a multi-line string
        """
        ''')
    module = split(text)
    assert len(module.sections) == 1
    assert module.sections[0].notes == "Notes"
    assert module.sections[0].code[0].text == text.rstrip("\n").split("\n", 1)[1]
    assert_lines_preserved(text, module)


def test_trailing_comments_stay_in_code():
    text = source('''
        # Notes
        import os  # noqa: F401
        x = 1  # trailing prose stays with its line
        ''')
    module = split(text)
    assert len(module.sections) == 1
    assert module.sections[0].code[0].text == "import os  # noqa: F401\nx = 1  # trailing prose stays with its line"


def test_standalone_tool_comments_stay_in_code():
    text = source('''
        #!/usr/bin/env python
        x = 1
        # type: ignore
        y = 2
        ''')
    module = split(text)
    assert notes_and_code(module) == [("", ["#!/usr/bin/env python\nx = 1\n# type: ignore\ny = 2"])]


def test_decorators_stay_with_their_function():
    text = source('''
        # A cached function
        @functools.cache
        @other(
            1,
        )
        def f():
            return 1
        ''')
    module = split(text)
    assert notes_and_code(module) == [
        ("A cached function", ["@functools.cache\n@other(\n    1,\n)\ndef f():\n    return 1"])]
    assert_lines_preserved(text, module)


def test_docstring_moves_its_header_beside_it():
    text = source('''
        # ## Outer
        class Outer:
            """The class docstring."""

            def method(self):
                """The method docstring."""
                def nested():
                    # nested notes
                    return 1
                return nested()
        ''')
    module = split(text)
    assert notes_and_code(module) == [
        # The comment above and the docstring are one block of notes, beside the class line.
        ("## Outer\n\nThe class docstring.", ["class Outer:"]),
        # The method's header sits beside its docstring; the body follows as a second block.
        ("The method docstring.", ["    def method(self):", "        def nested():"]),
        ("nested notes", ["            return 1\n        return nested()"]),
    ]
    assert [b.line for b in module.sections[1].code] == [5, 7]
    assert_lines_preserved(text, module)


def test_strings_that_are_not_docstrings_are_code():
    text = source('''
        def f():
            x = 1
            """Not a docstring: not the first statement."""
            return x

        MESSAGE = """a module-level string after code"""
        ''')
    module = split(text)
    assert notes_and_code(module) == [("", [text.rstrip("\n")])]


def test_blank_lines_inside_code_are_kept_and_trimmed_at_the_edges():
    text = source('''
        # First


        a = 1

        b = 2


        # Second

        c = 3

        ''')
    module = split(text)
    assert notes_and_code(module) == [("First", ["a = 1\n\nb = 2"]), ("Second", ["c = 3"])]
    assert [s.code_line for s in module.sections] == [4, 11]
    assert_lines_preserved(text, module)


def test_comment_blocks_separated_by_blank_lines_are_one_block_of_notes():
    text = source('''
        # one

        # two
        x = 1
        ''')
    assert notes_and_code(split(text)) == [("one\n\ntwo", ["x = 1"])]


def test_bare_hash_starts_a_section_without_notes():
    text = source('''
        # Notes
        x = 1
        #
        y = 2
        ''')
    assert notes_and_code(split(text)) == [("Notes", ["x = 1"]), ("", ["y = 2"])]


def test_indentation_inside_comments_is_markdown():
    text = source('''
        # !!! note "Title"
        #     Indented admonition body
        #
        # * item
        #     continued
        x = 1
        ''')
    module = split(text)
    assert module.sections[0].notes == '!!! note "Title"\n    Indented admonition body\n\n* item\n    continued'


def test_file_without_comments_is_one_code_section():
    text = "import os\n\n\nx = os.sep\n"
    module = split(text)
    assert notes_and_code(module) == [("", ["import os\n\n\nx = os.sep"])]
    assert module.title is None and module.summary is None
    assert_lines_preserved(text, module)


def test_file_with_only_comments_is_notes_without_code():
    module = split("# Only\n# comments\n\n# here\n")
    assert notes_and_code(module) == [("Only\ncomments\n\nhere", [])]
    assert module.sections[0].code_line is None


def test_empty_file():
    assert split("").sections == []


def test_front_matter_gives_title_and_summary_and_leaves_the_notes():
    text = source('''
        r"""
        ---
        title: Multi-Head Attention
        summary: Attention with $h$ heads: the summary may hold colons.
        ---

        # Multi-Head Attention

        $$\\frac{QK^\\top}{\\sqrt{d_k}}$$
        """

        import torch
        ''')
    module = split(text)
    assert module.title == "Multi-Head Attention"
    assert module.summary == "Attention with $h$ heads: the summary may hold colons."
    first = module.sections[0]
    assert first.notes == "# Multi-Head Attention\n\n$$\\frac{QK^\\top}{\\sqrt{d_k}}$$"
    # The notes start at the line of the heading, after the front matter.
    assert text.split("\n")[first.notes_line - 1] == "# Multi-Head Attention"
    assert first.code[0].text == "import torch" and first.code_line == 12


def test_front_matter_parser():
    assert parse_front_matter("no front matter") == ({}, "no front matter", 0)
    meta, rest, removed = parse_front_matter("---\ntitle: 'A: B'\nsummary: one\n  two\n---\n\nText")
    assert meta == {"title": "A: B", "summary": "one two"}
    assert (rest, removed) == ("Text", 6)
    with pytest.raises(ValueError, match="key: value"):
        parse_front_matter("---\nnot front matter\n---\n")


def test_google_style_sections_become_markdown_lists():
    text = textwrap.dedent("""\
        Does things.

        Arguments:
            x: the input `[batch, seq]`.
            key, value: two at once,
                described over two lines.

        Returns:
            the output.""")
    assert docstring_to_markdown(text) == textwrap.dedent("""\
        Does things.

        **Arguments**

        * `x`: the input `[batch, seq]`.
        * `key`, `value`: two at once,
            described over two lines.

        **Returns**

        * the output.""")


def test_every_module_of_the_package_splits_with_true_line_numbers():
    for path in sorted((REPO / "labml_nn").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        module = split(text)
        assert_lines_preserved(text, module)
        code_lines = {b.line + i for s in module.sections for b in s.code for i in range(len(b.lines))}
        # Every line holding a statement's tokens is in the code column, except the docstrings.
        docstring_lines = set()
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        statement_lines = {token.start[0] for token in tokenize.generate_tokens(io.StringIO(text).readline)
                           if token.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING)}
        missing = sorted(statement_lines - docstring_lines - code_lines)
        assert not missing, f"{path}: lines {missing} are neither code nor docstring"
