"""InfoEnh's block diagram, drawn with matplotlib patches: the book's roadmap (chapter 1) and the
architecture figure (chapter 6) are one drawing.

``block_diagram(chapters=True)`` adds, next to each block, the chapter that builds it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from .style import figsize

HOST, INFOENH, LOSS = "#dde8f7", "#fde9c9", "#f9d6d5"


def block_diagram(chapters: bool = False, height: float = 6.4):
    """The data flow of a host model with InfoEnh, top to bottom; returns the figure.

    chapters: write "ch. N" beside the blocks (the book's roadmap).
    """
    fig = plt.figure(figsize=figsize(height=height))
    ax = fig.add_axes((0, 0, 1, 1))                  # the whole figure: no ticks, no margins
    ax.set(xlim=(0, 10), ylim=(0, 8.6))
    ax.axis("off")

    def box(x, y, w, h, text, color, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=color,
                                    ec="k", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(x0, y0, x1, y1, color="k"):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9))

    for x, m in zip((0.2, 2.6, 5.0), "tav"):
        box(x, 7.6, 2.1, 0.7, f"input $\\mathbf{{X}}_{m}$\n[B, $L_{m}$, $d_{m}$]", "#f2f2f2")
        box(x, 6.4, 2.1, 0.7, f"host encoder $\\mathbf{{E}}_{m}$\n[B, $L_{m}$, $w_{m}$]", HOST)
        box(x, 4.85, 2.1, 1.05,
            f"FIB$_{m}$: project,\ntop-$k$, gate\n$\\to\\ \\mathbf{{z}}_{m}$ [B, k, d]", INFOENH)
        box(x, 2.4, 2.1, 0.7, f"pool $\\to\\ \\mathbf{{r}}_{m}$\n[B, 3d]", HOST)
        for y0, y1 in ((7.6, 7.1), (6.4, 5.9), (4.85, 4.5), (3.5, 3.1), (2.4, 1.9)):
            arrow(x + 1.05, y0 - 0.02, x + 1.05, y1 + 0.04)
    box(0.2, 3.5, 6.9, 1.0, "FIA: 6 OT plans per clip (3 solved, 3 transposed)\n"
        "$\\mathbf{E}'_m$ = concat($\\mathbf{z}_m$, $\\mathbf{E}_{m\\to j}$, "
        "$\\mathbf{E}_{m\\to l}$)  [B, k, 3d] each", INFOENH)
    box(0.2, 1.2, 6.9, 0.7, "host fusion + head  $\\to$  prediction $\\hat y$ [B]", HOST)
    box(0.2, 0.05, 9.6, 0.65, "$\\mathcal{L} = \\mathcal{L}_{host}$ (task + host "
        "regularisers) $+\\ \\mathcal{L}_{FIB}$", LOSS)
    box(7.7, 4.85, 2.1, 1.05, "$\\mathcal{L}_{FIB}$ = $\\alpha$ $\\times$\nsum over $m$ of\n"
        "InfoNCE($\\mathbf{e}_m$, $\\mathbf{z}_m$)", LOSS)
    arrow(7.15, 5.38, 7.65, 5.38, color="tab:red")
    arrow(8.75, 4.8, 8.75, 0.75, color="tab:red")
    arrow(3.65, 1.15, 3.65, 0.75, color="tab:red")
    ax.add_patch(FancyBboxPatch((0.08, 3.38), 7.15, 2.65, boxstyle="round,pad=0.04",
                                fc="none", ec="tab:orange", lw=1.5, ls="--"))
    ax.text(7.35, 4.0, "InfoEnh", fontsize=11, color="tab:orange", ha="left", va="center")
    ax.text(7.35, 2.75, "blue: the\nhost's own\nparts", fontsize=9, color="tab:blue",
            ha="left", va="center")
    if chapters:
        tag = dict(fontsize=9, fontweight="bold", color="0.25", ha="left", va="center")
        ax.text(7.45, 7.95, "data, metrics: ch. 1", **tag)
        ax.text(7.45, 6.75, "hosts: ch. 6", **tag)
        ax.text(7.7, 6.2, "InfoNCE: ch. 2\nFIB: ch. 3", **tag)
        ax.text(7.35, 3.55, "OT: ch. 4\nFIA: ch. 5", **tag)
        ax.text(7.35, 1.55, "assembly: ch. 6\ntraining: ch. 7-9", **tag)
    return fig
