"""TeX formulas as plain text, for the previews of search results: `\\mathrm{PE}_{p+k}` reads `PE_(p+k)`,
`\\frac{QK^\\top}{\\sqrt{d_k}}` reads `(QKᵀ)/√(d_k)`.

The search index is built from the pages before KaTeX renders their math, so it holds the TeX source. The preview of
a result is plain text: Greek letters and operators become their Unicode characters, fonts and spacing commands
disappear, fractions and roots are written inline, and braces become parentheses where they group more than one
character.
"""
from __future__ import annotations

import re

SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "cdot": "·", "times": "×", "otimes": "⊗", "odot": "⊙", "oplus": "⊕", "circ": "∘", "pm": "±", "mp": "∓",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "sim": "∼",
    "equiv": "≡", "propto": "∝", "ll": "≪", "gg": "≫",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒", "mapsto": "↦", "gets": "←",
    "in": "∈", "notin": "∉", "subset": "⊂", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃",
    "infty": "∞", "partial": "∂", "nabla": "∇", "sum": " Σ", "prod": " Π", "int": " ∫",
    "dots": "…", "ldots": "…", "cdots": "⋯", "vdots": "⋮", "ddots": "⋱",
    "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "lVert": "‖", "rVert": "‖", "Vert": "‖", "|": "‖", "lvert": "|", "rvert": "|", "vert": "|", "mid": "|",
    "top": "ᵀ", "intercal": "ᵀ", "prime": "′", "ell": "ℓ", "star": "⋆", "ast": "∗",
    "{": "{", "}": "}", "_": "_", "%": "%", "$": "$", "#": "#", "&": "&",
}
# Commands whose argument is shown as it is (fonts, text, operator names).
TEXT_COMMANDS = {"text", "textrm", "textbf", "textit", "texttt", "mathrm", "mathbf", "mathit", "mathsf", "mathtt",
                 "mathcal", "mathbb", "mathfrak", "boldsymbol", "bm", "operatorname", "mathop", "mbox", "hbox",
                 "underbrace", "overbrace", "underline"}
# Commands that draw nothing a reader of plain text needs (sizes, spacing, alignment).
DROPPED = {"big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl", "Biggr",
           "left", "right", "displaystyle", "textstyle", "scriptstyle", "limits", "nolimits", "quad", "qquad",
           "nonumber", "notag", "label", "middle"}
ACCENTS = {"bar": "\u0304", "overline": "\u0305", "hat": "\u0302", "widehat": "\u0302", "tilde": "\u0303",
           "widetilde": "\u0303", "vec": "\u20d7", "dot": "\u0307", "ddot": "\u0308"}
FRACTIONS = {"frac", "tfrac", "dfrac", "cfrac"}
NAMED_OPERATORS = {"log", "ln", "exp", "sin", "cos", "tan", "max", "min", "arg", "argmax", "argmin", "softmax",
                   "det", "dim", "lim", "sup", "inf", "Pr", "tanh", "sigmoid"}

SUPERSCRIPTS = str.maketrans("0123456789+-=()in", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁱⁿ")
SUBSCRIPTS = str.maketrans("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ")


def tex_to_text(tex: str) -> str:
    """A TeX formula as plain text (see the module's docstring)."""
    text, _ = _group(_tokens(tex), 0, stop=None)
    text = re.sub(r"\s+", " ", text).strip()
    # No space inside parentheses or before punctuation: `( a )` reads `(a)`.
    return re.sub(r"\s+([,;.)\]])", r"\1", re.sub(r"([(\[])\s+", r"\1", text))


ROW = "\x00"
TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[{}^_&]|\s+|[^\\{}^_&\s]")


def _tokens(tex: str) -> list[str]:
    # A row break `\\` becomes one token, ROW.
    return TOKEN.findall(tex.replace("\\\\", ROW))


def _group(tokens: list[str], i: int, stop: str | None) -> tuple[str, int]:
    """Text of tokens[i:] up to the matching `stop` (`}`), and the index after it."""
    out: list[str] = []
    while i < len(tokens):
        token = tokens[i]
        if token == stop:
            return "".join(out), i + 1
        piece, i = _item(tokens, i)
        out.append(piece)
    return "".join(out), i


def _argument(tokens: list[str], i: int) -> tuple[str, int]:
    """One argument: a `{...}` group or a single token (spaces skipped)."""
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    if i >= len(tokens):
        return "", i
    if tokens[i] == "{":
        return _group(tokens, i + 1, "}")
    return _item(tokens, i)


def _wrap(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 1 or re.fullmatch(r"√?(\w+|\([^()]*\))", text) else f"({text})"


def _script(text: str, table: dict, mark: str) -> str:
    text = text.strip()
    if text in ("ᵀ", "′", "∗", "⋆"):
        return text
    if text and all(ord(c) in table for c in text):
        return text.translate(table)
    return f"{mark}{_wrap(text)}"


def _item(tokens: list[str], i: int) -> tuple[str, int]:
    token = tokens[i]
    if token.isspace():
        return " ", i + 1
    if token == "{":
        return _group(tokens, i + 1, "}")
    if token == "}":
        return "", i + 1
    if token == "&":
        return " ", i + 1
    if token == ROW:
        return "; ", i + 1
    if token in ("^", "_"):
        argument, i = _argument(tokens, i + 1)
        return (_script(argument, SUPERSCRIPTS, "^") if token == "^" else _script(argument, SUBSCRIPTS, "_")), i
    if not token.startswith("\\"):
        return token, i + 1
    name = token[1:].rstrip("*")
    if name in (",", ";", ":", "!", " ", ">"):
        return " ", i + 1
    if name in SYMBOLS:
        return SYMBOLS[name], i + 1
    if name in FRACTIONS:
        numerator, i = _argument(tokens, i + 1)
        denominator, i = _argument(tokens, i)
        return f"{_wrap(numerator)}/{_wrap(denominator)}", i
    if name == "sqrt":
        argument, i = _argument(tokens, i + 1)
        return f"√{_wrap(argument)}", i
    if name in ACCENTS:
        argument, i = _argument(tokens, i + 1)
        argument = argument.strip()
        return (argument + ACCENTS[name] if len(argument) == 1 else f"{name}({argument})"), i
    if name in ("begin", "end"):
        environment, i = _argument(tokens, i + 1)
        # Rows are separated by `; `; a matrix reads as `(a b; c d)`.
        if not environment.endswith("matrix"):
            return " ", i
        return ("(" if name == "begin" else ")"), i
    if name in DROPPED:
        return "", i + 1
    if name in TEXT_COMMANDS:
        argument, i = _argument(tokens, i + 1)
        return argument, i
    if name in NAMED_OPERATORS:
        return f"{name} ", i + 1
    return name, i + 1
