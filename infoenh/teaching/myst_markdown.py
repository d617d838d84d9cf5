"""MyST markdown -> plain Markdown that Colab and Jupyter render (CommonMark, HTML, ``$`` math).

The book's chapters are written in MyST: roles such as ``{cite}`key``` and directives such as
``{exercise}``. Jupyter Book renders them; Colab shows them as raw text. :func:`convert_cell`
rewrites one markdown cell the way the book presents it:

- ``{cite}``/``{cite:p}`` -> "(Xie et al., 2024)", ``{cite:t}`` -> "Xie et al. (2024)", linked to the
  paper when ``references.bib`` has an address for it;
- ``{glue:text}`name:.2f``` -> "0.34 (`name`)": the book run's value (book/glued_values.json), then
  its name, which the chapter's cell prints with the reader's own value off the book
  (:func:`infoenh.teaching.glue.glue`); only the name when the book's run executed other code;
- ``{eq}`label``` -> "(4.3)" and ``{numref}`label``` -> "Figure 4.2", the book's numbers; a
  labelled display equation gets its number as ``\tag{4.3}``;
- ``{doc}`` -> a link to that chapter (its Colab page for a notebook), ``{ref}`` -> the section's title;
- ``{exercise}`` -> a bold "Exercise 5.2" (numbered by chapter, as the book numbers them), ``{solution}`` and the
  gated ``{solution-start}`` ... ``{solution-end}`` -> a collapsed ``<details>`` block;
- admonitions -> a blockquote with a bold title (a collapsed block for ``:class: dropdown``);
- ``(label)=`` targets and ``%`` comments are dropped; math stays as ``$...$`` and ``$$...$$``.

Anything else in MyST syntax raises :class:`MystConversionError`, so new markup is caught when the
Colab notebooks are regenerated rather than shown raw to a student.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from .bibliography import Reference

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<arg>.*?)\s*$")
_CODE_FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})(?!.*`)")
_TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
_OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):\s*(?P<value>.*?)\s*$")
_MATH_LABEL = re.compile(r"\$\$\s*\((?P<label>[\w:.-]+)\)\s*$")
_SPAN = re.compile(r"(?P<role>\{(?P<name>[A-Za-z][\w:+-]*)\})?(?P<ticks>`+)(?P<body>(?:(?!\n\s*\n).)+?)"
                   r"(?<!`)(?P=ticks)(?!`)", re.S)
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.+?)\s*#*\s*$")

ADMONITIONS = {"note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
               "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
               "seealso": "See also", "admonition": ""}
SOLUTION_SUMMARY = "Solution"
GLUE_ROLES = ("glue", "glue:", "glue:text")   # myst-nb's roles that insert a glued value as text


class MystConversionError(ValueError):
    """A markdown cell holds MyST syntax that has no plain-Markdown rendering (yet)."""


@dataclass
class Directive:
    """One fenced directive: ``{name} argument``, its ``:key: value`` options and body lines."""

    name: str
    argument: str
    options: Dict[str, str]
    body: List[str]


# A parsed block: ("text" | "verbatim", [lines]), ("math", ([lines], label or None)),
# ("directive", Directive) or ("target", label).
Block = Tuple[str, object]


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def _fence_end(lines: List[str], start: int, fence: str) -> int:
    """Index of the line that closes the fence opened at ``lines[start]`` (``len(lines)`` if none)."""
    j = start + 1
    while j < len(lines) and not _closes(lines[j], fence):
        j += 1
    return j


def _split_options(lines: List[str]) -> Tuple[Dict[str, str], List[str]]:
    options: Dict[str, str] = {}
    i = 0
    if lines and lines[0].strip() == "---":  # YAML-style option block
        end = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), None)
        if end is not None:
            for raw in lines[1:end]:
                if ":" in raw:
                    key, value = raw.split(":", 1)
                    options[key.strip()] = value.strip()
            i = end + 1
    while i < len(lines):
        m = _OPTION.match(lines[i])
        if not m:
            break
        options[m.group("key")] = m.group("value")
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return options, lines[i:]


def parse_blocks(lines: List[str]) -> List[Block]:
    """Split markdown lines into text runs, verbatim runs (code fences, display math), directives
    (body unparsed) and ``(label)=`` targets. ``%`` comment lines are dropped."""
    blocks: List[Block] = []
    text: List[str] = []

    def flush():
        if text:
            blocks.append(("text", text[:]))
            text.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        d = _DIRECTIVE.match(line)
        if d:
            flush()
            j = _fence_end(lines, i, d.group("fence"))
            if j == len(lines):
                raise MystConversionError(
                    f"the {{{d.group('name')}}} directive opened by {line.strip()!r} is never closed")
            indent = len(d.group("indent"))
            body = [b[indent:] if b[:indent].isspace() else b.lstrip() for b in lines[i + 1:j]]
            options, body = _split_options(body)
            blocks.append(("directive", Directive(d.group("name"), d.group("arg"), options, body)))
            i = j + 1
            continue
        c = _CODE_FENCE.match(line)
        if c:
            flush()
            j = _fence_end(lines, i, c.group("fence"))
            blocks.append(("verbatim", lines[i:j + 1]))
            i = j + 1
            continue
        s = line.strip()
        if s.startswith("$$"):
            flush()
            j = i
            if s == "$$" or "$$" not in s[2:]:
                j = i + 1
                while j < len(lines) and "$$" not in lines[j]:
                    j += 1
            math = lines[i:j + 1]
            label = _MATH_LABEL.search(math[-1])
            # "$$ (eq-label)": the book numbers the equation; the converter writes that number
            math[-1] = _MATH_LABEL.sub("$$", math[-1])
            blocks.append(("math", (math, label.group("label") if label else None)))
            i = j + 1
            continue
        t = _TARGET.match(line)
        if t:
            flush()
            blocks.append(("target", t.group("label")))
        elif line.startswith("%"):
            pass  # a MyST comment
        else:
            text.append(line)
        i += 1
    flush()
    return blocks


def iter_directives(text: str) -> Iterator[Directive]:
    """Every directive of ``text``, nested ones included, in document order."""
    for kind, value in parse_blocks(text.split("\n")):
        if kind == "directive":
            yield value
            yield from iter_directives("\n".join(value.body))


def math_labels(text: str) -> List[str]:
    """The labels of the numbered display equations of ``text`` (``$$ ... $$ (label)`` and
    ``{math}`` with ``:label:``), nested directives included, in document order: the order in
    which Sphinx numbers them."""
    found: List[str] = []
    for kind, value in parse_blocks(text.split("\n")):
        if kind == "math" and value[1]:
            found.append(value[1])
        elif kind == "directive":
            if value.name == "math" and value.options.get("label"):
                found.append(value.options["label"])
            found += math_labels("\n".join(value.body))
    return found


def first_heading(text: str) -> Optional[str]:
    """The title of the first heading in ``text`` outside code, or None."""
    for kind, value in parse_blocks(text.split("\n")):
        if kind == "text":
            for line in value:
                m = _HEADING.match(line)
                if m:
                    return m.group("title")
    return None


@dataclass
class Section:
    """A ``(label)=`` target: the document, its title, and the cell it is in."""

    doc: str
    title: str
    cell: int


@dataclass
class Links:
    """What a converted cell can point at; built by :class:`infoenh.teaching.book_index.BookIndex`."""

    bib: Dict[str, Reference]
    titles: Dict[str, str]                     # docname -> title
    urls: Dict[str, str]                       # docname -> link (Colab page or repository file)
    sections: Dict[str, Section]               # label -> section
    exercises: Dict[str, Tuple[str, str]]      # exercise label -> (docname, number in the book: "5.2")
    numbers: Dict[str, List[Optional[str]]]    # docname -> number of each exercise, in order
    equations: Dict[str, str] = field(default_factory=dict)   # equation label -> "4.3"
    figures: Dict[str, str] = field(default_factory=dict)     # figure name -> "4.2"


@dataclass
class CellContext:
    """The state of one document's conversion, carried from cell to cell."""

    doc: str
    links: Links
    cell: int = 0
    exercise: int = 0                          # exercises met so far in this document
    open_solution: Optional[str] = None        # summary of a gated solution not yet ended
    cited: List[str] = field(default_factory=list)
    # name -> text/plain of the values the book's run glued in this chapter (book/glued_values.json);
    # None when that run executed other code: the prose then names the values
    values: Optional[Dict[str, str]] = None


def _cite(keys: str, style: str, ctx: CellContext) -> str:
    parts = []
    for key in (k.strip() for k in keys.split(",")):
        ref = ctx.links.bib.get(key)
        if ref is None:
            raise MystConversionError(f"{ctx.doc}: citation key {key!r} is not in references.bib")
        if key not in ctx.cited:
            ctx.cited.append(key)
        if style in ("t", "ts"):
            text = f"{ref.short_authors()} ({ref.year})"
        elif style == "author":
            text = ref.short_authors()
        elif style == "year":
            text = ref.year
        else:
            text = f"{ref.short_authors()}, {ref.year}"
        parts.append(f"[{text}]({ref.link})" if ref.link else text)
    if style in ("t", "ts", "author", "year"):
        return ", ".join(parts)
    return "(" + "; ".join(parts) + ")"


def _explicit(body: str) -> Tuple[Optional[str], str]:
    m = _EXPLICIT.match(body.strip())
    return (m.group("text"), m.group("target").strip()) if m else (None, body.strip())


def _doc(body: str, ctx: CellContext) -> str:
    text, target = _explicit(body)
    name = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
        posixpath.join(posixpath.dirname(ctx.doc), target))
    name = re.sub(r"\.(md|ipynb)$", "", name)
    if name not in ctx.links.titles:
        raise MystConversionError(f"{ctx.doc}: {{doc}} target {target!r} is not a document of the book")
    return f"[{text or ctx.links.titles[name]}]({ctx.links.urls[name]})"


def _ref(body: str, ctx: CellContext) -> str:
    text, label = _explicit(body)
    if label in ctx.links.sections:
        sec = ctx.links.sections[label]
        if sec.doc == ctx.doc:
            where = "below" if sec.cell >= ctx.cell else "above"
            return text or f"the section \u201c{sec.title}\u201d {where}"
        return f"[{text or sec.title}]({ctx.links.urls[sec.doc]})"
    if label in ctx.links.exercises:
        doc, number = ctx.links.exercises[label]
        name = text or f"Exercise {number}"
        return name if doc == ctx.doc else f"[{name}]({ctx.links.urls[doc]})"
    raise MystConversionError(f"{ctx.doc}: {{ref}} target {label!r} is not a labelled section or exercise")


def _role(name: str, body: str, ctx: CellContext) -> str:
    if name == "cite" or name.startswith("cite:"):
        style = name.split(":", 1)[1] if ":" in name else "p"
        if style not in ("p", "ps", "t", "ts", "author", "year"):
            raise MystConversionError(f"{ctx.doc}: {{{name}}} has no plain-text form")
        return _cite(body, style, ctx)
    if name == "doc":
        return _doc(body, ctx)
    if name == "ref":
        return _ref(body, ctx)
    if name == "math":
        return f"${body}$"
    if name == "eq":
        return f"({_number('equation', ctx.links.equations, _explicit(body)[1], ctx)})"
    if name == "numref":
        text, label = _explicit(body)
        number = _number("figure", ctx.links.figures, label, ctx)
        return text.replace("%s", number).replace("{number}", number) if text else f"Figure {number}"
    if name in ("term", "abbr"):
        text, target = _explicit(body)
        return text or re.sub(r"\s*\(.*\)$", "", target)
    if name in GLUE_ROLES:
        # a value computed by a cell (infoenh.teaching.glue), which prints "name = value" off the
        # book: the prose gives the book run's value, formatted as the book shows it, and names it
        key, _, fmt = body.strip().partition(":")
        key = key.strip()
        if ctx.values is None:
            return f"`{key}`"
        if key not in ctx.values:
            raise MystConversionError(f"{ctx.doc}: the book's run glued no value named {key!r} "
                                      "(book/glued_values.json); is the name spelled as in its glue() call?")
        from .book_values import format_value

        return f"{format_value(ctx.values[key], fmt)} (`{key}`)"
    raise MystConversionError(f"{ctx.doc}: the {{{name}}} role has no plain-Markdown rendering")


def _number(kind: str, numbers: Dict[str, str], label: str, ctx: CellContext) -> str:
    if label not in numbers:
        raise MystConversionError(f"{ctx.doc}: no numbered {kind} is labelled {label!r} in the book")
    return numbers[label]


def glue_names(text: str) -> List[str]:
    """The names of the glued values a run of MyST prose quotes, in order (``{glue:text}`name:.2f```)."""
    return [m.group("body").split(":", 1)[0].strip() for m in _SPAN.finditer(text)
            if m.group("role") and m.group("name") in GLUE_ROLES]


def convert_text(text: str, ctx: CellContext) -> str:
    """Replace every MyST role in a run of prose; code spans stay as they are."""
    def repl(m: re.Match) -> str:
        if not m.group("role"):
            return m.group(0)
        return _role(m.group("name"), m.group("body"), ctx)
    return _SPAN.sub(repl, text)


def _details(summary: str, body: str) -> str:
    return f"<details>\n<summary>{summary}</summary>\n\n{body.strip()}\n\n</details>"


def _quote(title: str, body: str) -> str:
    lines = ([f"**{title}**", ""] if title else []) + body.strip().split("\n")
    return "\n".join(f"> {line}".rstrip() for line in lines)


def _next_exercise_number(ctx: CellContext) -> Optional[str]:
    numbers = ctx.links.numbers.get(ctx.doc, [])
    number = numbers[ctx.exercise] if ctx.exercise < len(numbers) else None
    ctx.exercise += 1
    return number


def _solution_summary(label: str, ctx: CellContext) -> str:
    label = label.strip()
    if label and label in ctx.links.exercises:
        return f"{SOLUTION_SUMMARY} to Exercise {ctx.links.exercises[label][1]}"
    if label:
        raise MystConversionError(f"{ctx.doc}: solution for unknown exercise {label!r}")
    return SOLUTION_SUMMARY


def _directive(d: Directive, ctx: CellContext) -> str:
    body = _convert_lines(d.body, ctx)
    if d.name == "exercise":
        number = _next_exercise_number(ctx)
        head = "Exercise" if number is None else f"Exercise {number}"
        if d.argument:
            head += f" ({convert_text(d.argument, ctx)})"
        return f"**{head}**\n\n{body}"
    if d.name == "solution":
        return _details(_solution_summary(d.argument, ctx), body)
    if d.name in ADMONITIONS:
        title = convert_text(d.argument, ctx) if d.argument else ADMONITIONS[d.name]
        if "dropdown" in d.options.get("class", "").split():
            return _details(title or "Details", body)
        return _quote(title, body)
    if d.name == "dropdown":
        return _details(convert_text(d.argument, ctx) or "Details", body)
    if d.name in ("code-block", "code", "sourcecode"):
        return "\n".join([f"```{d.argument}", *d.body, "```"])
    if d.name == "math":
        return "\n".join(["$$", *d.body, "$$"])
    raise MystConversionError(f"{ctx.doc}: the {{{d.name}}} directive has no plain-Markdown rendering; "
                              "add one in infoenh.teaching.myst_markdown")


def _convert_block(kind: str, value, ctx: CellContext) -> Tuple[bool, str]:
    """(stands alone, Markdown) of one parsed block. Prose and verbatim runs keep their place in
    the source's lines; a converted directive stands alone, between blank lines."""
    if kind == "text":
        return False, convert_text("\n".join(value), ctx)
    if kind == "verbatim":
        return False, "\n".join(value)
    if kind == "math":
        lines, label = value
        if label:
            # the book's number, at the right as the book shows it (MathJax and KaTeX know \tag)
            number = _number("equation", ctx.links.equations, label, ctx)
            lines = lines[:-1] + [lines[-1][:lines[-1].rindex("$$")] + f"\\tag{{{number}}} $$"]
        return False, "\n".join(lines)
    if kind == "directive":
        if value.name in ("solution-start", "solution-end"):
            raise MystConversionError(f"{ctx.doc}: {{{value.name}}} inside another directive")
        return True, _directive(value, ctx)
    return False, ""  # a (label)= target


def _convert_lines(lines: List[str], ctx: CellContext) -> str:
    return _join([_convert_block(kind, value, ctx) for kind, value in parse_blocks(lines)])


def _join(parts: List[Tuple[bool, str]]) -> str:
    """Put converted blocks back together: adjacent source runs line by line, as they were;
    a standalone block with exactly one blank line on each side."""
    out: List[str] = []
    after_standalone = False
    for standalone, text in parts:
        lines = text.split("\n") if text else []
        if standalone or after_standalone:
            while out and not out[-1].strip():
                out.pop()
            while lines and not lines[0].strip():
                lines.pop(0)
            if out and lines:
                out.append("")
        out.extend(lines)
        after_standalone = standalone and bool(lines) or (after_standalone and not lines)
    return "\n".join(out).strip("\n")


def convert_cell(source: str, ctx: CellContext) -> str:
    """Convert one markdown cell. A gated ``{solution-start}`` wraps the rest of its cell (and
    the markdown of later cells, up to ``{solution-end}``) in a collapsed ``<details>`` block."""
    out: List[Tuple[bool, str]] = []
    inside: Optional[List[Tuple[bool, str]]] = [] if ctx.open_solution else None
    summary = f"{ctx.open_solution} (continued)" if ctx.open_solution else ""
    for kind, value in parse_blocks(source.split("\n")):
        if kind == "directive" and value.name == "solution-start":
            if inside is not None:
                raise MystConversionError(f"{ctx.doc}: {{solution-start}} inside an open solution")
            summary = _solution_summary(value.argument, ctx)
            inside, ctx.open_solution = [], summary
        elif kind == "directive" and value.name == "solution-end":
            if inside is None:
                raise MystConversionError(f"{ctx.doc}: {{solution-end}} without {{solution-start}}")
            if _join(inside).strip():
                out.append((True, _details(summary, _join(inside))))
            inside, ctx.open_solution = None, None
        else:
            (inside if inside is not None else out).append(_convert_block(kind, value, ctx))
    if inside is not None and _join(inside).strip():
        out.append((True, _details(summary, _join(inside))))
    return _join(out)
