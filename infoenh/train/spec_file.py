"""Reading a grid spec file within bounds (size, nesting, YAML alias expansion), and values cut
short for messages: a hostile spec (a 'billion laughs', a deep nesting, a huge value) is refused
in milliseconds with one short line naming the file, before anything is built.

    doc = read_spec(Path("grid.yaml"))      # a dict, or GridSpecError
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List


class GridSpecError(ValueError):
    """A grid spec that cannot run: says which entry and what is allowed."""


# Bounds of a spec file: bytes, nesting depth, nodes after alias expansion, seeds.
MAX_SPEC_BYTES = 64 * 1024
MAX_SPEC_DEPTH = 20
MAX_SPEC_NODES = 20000
MAX_SEEDS = 1000
SEED_LIMIT = 2 ** 63


def short(value, limit: int = 80) -> str:
    """``repr(value)`` cut short: bounded work and length whatever the value (a YAML bomb too)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel, r.maxlong = limit, limit, 6, 6, 3, 40
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "…"


def cut(text: str, limit: int = 300) -> str:
    """A message of another module cut short (it may quote a long value of the spec)."""
    return text if len(text) <= limit else text[:limit] + "…"


def read_spec(p: Path):
    """The parsed document of the spec file ``p``, or a :class:`GridSpecError` naming the file: at most
    :data:`MAX_SPEC_BYTES` bytes of UTF-8, :data:`MAX_SPEC_DEPTH` levels of nesting and
    :data:`MAX_SPEC_NODES` values once YAML aliases are expanded (counted on the parser's events,
    before anything is built)."""
    if not p.exists():
        raise GridSpecError(f"grid spec {p}: no such file")
    if not p.is_file():
        raise GridSpecError(f"grid spec {p}: not a file")
    size = p.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise GridSpecError(f"grid spec {p}: {size} bytes; a spec file has at most {MAX_SPEC_BYTES} bytes")
    raw = p.read_bytes()[:MAX_SPEC_BYTES + 1]
    if len(raw) > MAX_SPEC_BYTES:
        raise GridSpecError(f"grid spec {p}: more than {MAX_SPEC_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GridSpecError(f"grid spec {p}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if not text.strip():
        raise GridSpecError(f"grid spec {p} is empty")
    if p.suffix == ".json":
        _check_json_depth(text, p)
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError, ValueError) as e:
            raise GridSpecError(f"grid spec {p}: not valid JSON ({cut(' '.join(str(e).split()), 200)})") from None
    else:
        import yaml

        try:
            _check_yaml_size(text, p)
            doc = yaml.safe_load(text)
        except GridSpecError:
            raise
        except (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError) as e:
            raise GridSpecError(f"grid spec {p}: not valid YAML ({cut(' '.join(str(e).split()), 300)})") from None
        if doc is None:
            raise GridSpecError(f"grid spec {p} is empty")
    return doc


def _check_json_depth(text: str, p: Path) -> None:
    """Nesting of a JSON text, counted on its brackets outside strings (no parser recursion)."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise GridSpecError(f"grid spec {p}: nested deeper than {MAX_SPEC_DEPTH} levels")
        elif ch in "]}":
            depth -= 1


def _check_yaml_size(text: str, p: Path) -> None:
    """Depth and number of values of a YAML text with its aliases expanded, from the parser's
    events (linear in the text; nothing is built), so a 'billion laughs' is refused at once."""
    import yaml
    from yaml import events as ev

    anchors: Dict[str, tuple] = {}            # anchor -> (values, height)
    stack: List[list] = []                    # open collections: [values, height, anchor]
    total = 0

    def add(size: int, height: int) -> None:
        nonlocal total
        if len(stack) + height > MAX_SPEC_DEPTH:
            raise GridSpecError(f"grid spec {p}: nested deeper than {MAX_SPEC_DEPTH} levels (aliases expanded)")
        if stack:
            stack[-1][0] += size
            stack[-1][1] = max(stack[-1][1], height + 1)
            if stack[-1][0] > MAX_SPEC_NODES:
                raise GridSpecError(f"grid spec {p}: more than {MAX_SPEC_NODES} values once YAML aliases are "
                                    "expanded; a grid spec needs a few dozen")
        else:
            total += size
            if total > MAX_SPEC_NODES:
                raise GridSpecError(f"grid spec {p}: more than {MAX_SPEC_NODES} values")

    for e in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(e, (ev.MappingStartEvent, ev.SequenceStartEvent)):
            stack.append([1, 0, e.anchor])
            if len(stack) > MAX_SPEC_DEPTH:
                raise GridSpecError(f"grid spec {p}: nested deeper than {MAX_SPEC_DEPTH} levels")
        elif isinstance(e, (ev.MappingEndEvent, ev.SequenceEndEvent)):
            size, height, anchor = stack.pop()
            if anchor:
                anchors[anchor] = (size, height)
            add(size, height)
        elif isinstance(e, ev.ScalarEvent):
            if e.anchor:
                anchors[e.anchor] = (1, 0)
            add(1, 0)
        elif isinstance(e, ev.AliasEvent):
            add(*anchors.get(e.anchor, (1, 0)))
