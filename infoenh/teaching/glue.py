"""Bind a number the prose states to the cell that computes it.

``glue("recall_vision", 0.341)`` records the value in the cell's output the way myst-nb's own
``glue`` does (a hidden ``application/papermill.record/`` bundle with ``scrapbook`` metadata), so
the book's Markdown can write ``{glue:text}`recall_vision:.2f``` and the rendered sentence always
shows what the notebook computed. It is reimplemented here (a dozen lines) so the chapters do not
need myst-nb, and with it Sphinx, on Colab.

In the book build (``.ci/book`` sets ``INFOENH_BOOK_BUILD=1``) the record is all a cell shows. Run
anywhere else (Colab, Jupyter), the Colab edition's prose names the value (`` `recall_vision` ``)
and the cell also prints ``recall_vision = 0.341``, so a student sees each number the text quotes.
"""
from __future__ import annotations

import math
import numbers
import os
import re
from typing import TypeVar

GLUE_PREFIX = "application/papermill.record/"   # myst-nb's prefix for glued, undisplayed values
_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
T = TypeVar("T")


def _in_book_build() -> bool:
    return os.environ.get("INFOENH_BOOK_BUILD") == "1"


def glue(name: str, value: T) -> T:
    """Record ``value`` under ``name`` for ``{glue:text}`name``` in the book; returns ``value``.

    ``value`` is a finite real number (int, float, numpy or 0-d torch scalar) or a string. A NaN, an
    infinity or a tensor with more than one element is refused: the prose would state nothing true.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"glue name {name!r}: use letters, digits, '_' or '-', starting with a letter")
    shown = value
    if hasattr(value, "item") and not isinstance(value, str):   # numpy or torch scalar
        try:
            shown = value.item()
        except (ValueError, RuntimeError):
            raise ValueError(f"glue {name!r}: a scalar is needed, got shape {tuple(value.shape)}") from None
    if isinstance(shown, bool) or not isinstance(shown, (numbers.Real, str)):
        raise TypeError(f"glue {name!r}: a real number or a string is needed, got {type(value).__name__}")
    if isinstance(shown, numbers.Real) and not math.isfinite(shown):
        raise ValueError(f"glue {name!r}: the value is {shown}; fix the computation before quoting it")
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:              # plain Python: nothing to record into
        return value
    if get_ipython() is None:
        return value
    text = repr(shown) if isinstance(shown, str) else str(shown)
    display({GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
    if not _in_book_build():
        print(f"{name} = {shown:.4g}" if isinstance(shown, float) else f"{name} = {shown}")
    return value


def claim(holds, statement: str) -> None:
    """A statement the prose makes about this chapter's results, checked where they are computed.

    In the book build (``INFOENH_BOOK_BUILD=1``) a false claim stops the build with an
    ``AssertionError``, so the text cannot drift from the outputs it describes. Run anywhere else
    (Colab, a GPU at full sizes, other seeds) the results may differ from the book's: a false claim
    prints a note saying so and the notebook goes on.

    Example: ``claim(recall < chance, "vision recall stays below chance")``.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError("claim needs the statement the text makes, as a sentence")
    if bool(holds):
        return
    if _in_book_build():
        raise AssertionError(f"the text says {statement!r}, which this run's outputs contradict: "
                             "rewrite the text (and its glued numbers) or fix the computation")
    print(f"Note: the book's text says {statement!r}; in this run it does not hold "
          "(the book is built on a CPU at small sizes, so numbers can differ here).")
