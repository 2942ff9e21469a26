"""Formulas of the notebooks' Markdown rendered to MathML when the reports are built.

nbconvert's pages typeset ``$...$`` with MathJax loaded from a CDN, so offline they show raw
LaTeX. MathML is drawn by the browser itself (Chromium 109+, Firefox, Safari): the pages need no
script and no network. ``latex2mathml`` (PyPI) does the conversion.
"""
from __future__ import annotations

import re

__all__ = ["markdown_with_mathml", "latex_to_mathml"]

# Code stays as written: fenced blocks and `spans` may hold dollar signs ($MNV3_DATA_MIRROR).
_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", flags=re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", flags=re.S)
# $x$ but not a price or a shell variable: no space just inside the dollars, no escaped \$.
_INLINE = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![$\w])")
# Characters that Markdown would read as emphasis or escapes inside the MathML's text.
_MARKDOWN_SPECIAL = {"*": "&#42;", "_": "&#95;", "\\": "&#92;", "`": "&#96;", "~": "&#126;"}


def latex_to_mathml(latex: str, *, display: bool = False) -> str:
    """One LaTeX formula (without its dollars) as a single-line ``<math>`` element.

    Raises ValueError naming the formula when latex2mathml cannot read it.
    """
    from latex2mathml.converter import convert

    try:
        mathml = convert(latex.strip(), display="block" if display else "inline")
    except Exception as err:  # noqa: BLE001 - latex2mathml raises several exception types
        raise ValueError(f"cannot render the formula ${latex.strip()}$ as MathML ({err}); fix its LaTeX in the notebook") from err
    text = re.sub(r">([^<]*)<", lambda m: ">" + "".join(_MARKDOWN_SPECIAL.get(c, c) for c in m.group(1)) + "<", mathml)
    return text.replace("\n", " ")


def markdown_with_mathml(markdown: str) -> str:
    """``markdown`` with each ``$$display$$`` and ``$inline$`` formula replaced by MathML; code
    spans and fenced blocks are left alone. Text without formulas is returned unchanged."""
    if "$" not in markdown:
        return markdown
    parts = _CODE.split(markdown)
    for i in range(0, len(parts), 2):  # the even parts are outside code
        text = _DISPLAY.sub(lambda m: latex_to_mathml(m.group(1), display=True), parts[i])
        parts[i] = _INLINE.sub(lambda m: latex_to_mathml(m.group(1)), text)
    return "".join(parts)
