"""One look for every figure of the book, sized for its content column, and printed reports that fit it.

The book's column is about 676 CSS px wide at a 1280 px window. A figure is readable when it is
shown at no less than 75% of its own size (its inches at 96 CSS px per inch), so that a 10 pt label
stays near 10 pt: at most 9.4 in wide. :data:`WIDTH` (7.5 in) leaves room for the tight bounding
box to grow a little. Wide grids of panels are drawn as stacked rows instead.

:func:`use_book_style` sets seaborn's theme (white grid, colour-blind palette, notebook context) and
matplotlib's defaults once per chapter; :func:`figsize` gives a column-wide size for a grid of
panels; :func:`print_wrapped` folds a long printed line to the column's :data:`OUTPUT_WIDTH`.
"""
from __future__ import annotations

import textwrap
from typing import Tuple

WIDTH = 7.5          # inches: the widest figure a chapter draws
PANEL_HEIGHT = 3.0   # inches per row of panels
DPI = 100
OUTPUT_WIDTH = 74    # characters of an output line the column shows without scrolling


def figsize(rows: int = 1, cols: int = 1, *, height: float = PANEL_HEIGHT, width: float = WIDTH) -> Tuple[float, float]:
    """``(width, height)`` in inches for ``rows`` x ``cols`` panels that fit the book's column.

    More than three panels side by side get too narrow to read: stack them (more rows) instead.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"figsize: rows and cols must be >= 1, got {rows} x {cols}")
    if cols > 3:
        raise ValueError(f"figsize: {cols} panels side by side are unreadable in the book's column; "
                         "use at most 3 per row and more rows")
    if width > 9.0:
        raise ValueError(f"figsize: {width} in is wider than the column shows at 75% (about 9 in)")
    return (width, height * rows)


def use_book_style() -> None:
    """seaborn's theme for the whole book, and matplotlib's figure defaults to match."""
    try:
        import seaborn as sns
    except ImportError as err:  # Colab and the book's environment have it
        raise ImportError("the book's figures use seaborn: pip install seaborn (or infoenh[book])") from err
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", rc={
        "figure.figsize": figsize(),
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "legend.title_fontsize": 10,
        "figure.titlesize": 13,
    })


def print_wrapped(*parts, indent: int = 4) -> None:
    """``print(*parts)`` folded to :data:`OUTPUT_WIDTH` characters, continuation lines indented by
    ``indent``: a long report line that would otherwise scroll sideways in the book's column.
    Empty-string parts are left out (``print_wrapped("", x)`` prints ``x``)."""
    line = " ".join(str(p) for p in parts if not (isinstance(p, str) and p == ""))
    print(textwrap.fill(line, OUTPUT_WIDTH, subsequent_indent=" " * indent, break_on_hyphens=False))
