"""Check that a notebook reads well where Colab and Jupyter show it.

Every markdown cell is rendered with markdown-it-py, the CommonMark renderer Jupyter front-ends
follow (raw HTML allowed, ``$``/``$$`` math kept apart as they keep it), and the HTML is searched
for MyST markup that such a front-end would show raw: a ``{role}`` before a code span, a
directive fence, a ``:::`` fence, a ``(label)=`` target, a ``%`` comment, a directive option
line, a ``{{ substitution }}``. Solutions must be collapsed: a markdown cell tagged ``solution``
is one ``<details>`` block, every ``<details>`` opens with a ``<summary>``, and no "Solution" text
is left outside a ``<details>`` block.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import List, Tuple

_MATH = re.compile(r'<span class="math inline">.*?</span>|<div class="math block">.*?</div>', re.S)
_RAW = [
    (re.compile(r"\{[A-Za-z][\w:+-]*\}<code>"), "a MyST role"),
    (re.compile(r'<code class="language-\{'), "a MyST directive fence"),
    (re.compile(r":{3,}\{[\w-]+\}"), "a MyST colon fence"),
    (re.compile(r"(?:^|<p>|\n)\([^()\s<>]+\)=\s*(?:$|</p>|\n)", re.M), "a MyST (label)= target"),
    (re.compile(r"(?:<p>|\n)%"), "a MyST % comment"),
    (re.compile(r"(?:<p>|\n):[\w-]+:(?:\s|<|$)"), "a MyST directive option"),
    (re.compile(r"\{\{"), "a MyST substitution"),
    (re.compile(r"\{(?:exercise|solution[\w-]*|admonition|note|warning|tip|glue[\w:-]*|cite[\w:]*|doc|ref|"
                r"eq|numref|code-cell|figure|bibliography)\}"), "MyST markup"),
]
_TAG = re.compile(r"<(/?)details\b[^>]*>", re.I)


@lru_cache(maxsize=1)
def _renderer():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    return MarkdownIt("commonmark", {"html": True}).use(dollarmath_plugin)


def render(markdown: str) -> str:
    """HTML of one markdown cell, as a CommonMark front-end with ``$`` math renders it."""
    return _renderer().render(markdown)


def _details_spans(html: str) -> List[Tuple[int, int]]:
    """(start, end) of every outermost ``<details>`` block; an unclosed one runs to the end."""
    spans, depth, start = [], 0, 0
    for m in _TAG.finditer(html):
        if not m.group(1):
            if depth == 0:
                start = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                spans.append((start, m.end()))
    if depth:
        spans.append((start, len(html)))
    return spans


def _excerpt(text: str, pos: int) -> str:
    return re.sub(r"\s+", " ", text[max(0, pos - 30):pos + 50]).strip()


def cell_problems(source: str, tags=()) -> List[str]:
    """What a student would see wrongly in one markdown cell (empty when it reads well)."""
    html = render(source)
    prose = _MATH.sub("", html)
    found = []
    for pattern, what in _RAW:
        m = pattern.search(prose)
        if m and not (what == "MyST markup" and found):  # the catch-all only when nothing above matched
            found.append(f"{what} shows raw: ...{_excerpt(prose, m.start())}...")
    spans = _details_spans(html)
    for start, end in spans:
        if not re.match(r"<details[^>]*>\s*<summary>", html[start:end]):
            found.append(f"a <details> block without a <summary>: ...{_excerpt(html, start)}...")
    outside = "".join(html[a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(html)]))
    m = re.search(r">\s*Solution\b", outside)
    if m:
        found.append(f"a solution outside a <details> block: ...{_excerpt(outside, m.start())}...")
    if "solution" in tags:
        body = html.strip()
        if not (len(spans) == 1 and spans[0] == (html.index(body), html.index(body) + len(body))):
            found.append("a cell tagged 'solution' is not one collapsed <details> block")
    return found


def notebook_problems(nb) -> List[str]:
    """Every problem of every markdown cell of ``nb``, each prefixed by the cell's number and id."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        out += [f"cell {i} ({cell.get('id', '?')}): {p}" for p in cell_problems(cell.source, tags)]
    return out
