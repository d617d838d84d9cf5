"""Pictures of the method that are drawn, not computed: the block diagram of a host model with
InfoEnh (chapter 6, and a roadmap wherever a chapter wants one)."""
from __future__ import annotations

from .style import figsize


def block_diagram(show: bool = True, chapters: bool = False):
    """The data flow of a host with InfoEnh, top to bottom, drawn with matplotlib patches.
    Shows the figure (``show=True``) or returns it. ``chapters=True`` writes in the blocks the
    chapter that builds each (the book's roadmap, chapter 1)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig = plt.figure(figsize=figsize(height=6.4))
    ax = fig.add_axes((0, 0, 1, 1))                  # the whole figure: no ticks, no margins
    ax.set(xlim=(0, 10), ylim=(0, 8.6))
    ax.axis("off")
    host, ie, loss = "#dde8f7", "#fde9c9", "#f9d6d5"

    def box(x, y, w, h, text, color, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=color, ec="k",
                                    lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(x0, y0, x1, y1, color="k"):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9))

    for x, m in zip((0.2, 2.6, 5.0), "tav"):
        box(x, 7.6, 2.1, 0.7, f"input $\\mathbf{{X}}_{m}$\n[B, $L_{m}$, $d_{m}$]", "#f2f2f2")
        box(x, 6.4, 2.1, 0.7, f"host encoder $\\mathbf{{E}}_{m}$\n[B, $L_{m}$, $w_{m}$]", host)
        box(x, 4.85, 2.1, 1.05,
            f"FIB$_{m}$: project,\ntop-$k$, gate\n$\\to\\ \\mathbf{{z}}_{m}$ [B, k, d]", ie)
        box(x, 2.4, 2.1, 0.7, f"pool $\\to\\ \\mathbf{{r}}_{m}$\n[B, 3d]", host)
        for y0, y1 in ((7.6, 7.1), (6.4, 5.9), (4.85, 4.5), (3.5, 3.1), (2.4, 1.9)):
            arrow(x + 1.05, y0 - 0.02, x + 1.05, y1 + 0.04)
    box(0.2, 3.5, 6.9, 1.0, "FIA: 6 OT plans per clip (3 solved, 3 transposed)\n"
        "$\\mathbf{E}'_m$ = concat($\\mathbf{z}_m$, $\\mathbf{E}_{m\\to j}$, "
        "$\\mathbf{E}_{m\\to l}$)  [B, k, 3d] each", ie)
    box(0.2, 1.2, 6.9, 0.7, "host fusion + head  $\\to$  prediction $\\hat y$ [B]", host)
    box(0.2, 0.05, 9.6, 0.65, "$\\mathcal{L} = \\mathcal{L}_{host}$ (task + host regularisers) "
        "$+\\ \\mathcal{L}_{FIB}$", loss)
    box(7.7, 4.85, 2.1, 1.05, "$\\mathcal{L}_{FIB}$ = $\\alpha$ $\\times$\nsum over $m$ of\n"
        "InfoNCE($\\mathbf{e}_m$, $\\mathbf{z}_m$)", loss)
    arrow(7.15, 5.38, 7.65, 5.38, color="tab:red")
    arrow(8.75, 4.8, 8.75, 0.75, color="tab:red")
    arrow(3.65, 1.15, 3.65, 0.75, color="tab:red")
    ax.add_patch(FancyBboxPatch((0.08, 3.38), 7.15, 2.65, boxstyle="round,pad=0.04", fc="none",
                                ec="tab:orange", lw=1.5, ls="--"))
    ax.text(7.35, 4.0, "InfoEnh\n(dashed\nframe)", fontsize=10, color="tab:orange", ha="left",
            va="center")
    ax.text(7.35, 2.75, "outside the\nframe: the\nhost's own\nparts", fontsize=9, ha="left",
            va="center")
    if chapters:
        tag = dict(fontsize=8, fontweight="bold", color="0.3", va="center")
        ax.text(7.45, 7.95, "data: ch. 1", ha="left", **tag)
        ax.text(7.45, 6.75, "hosts: ch. 6", ha="left", **tag)
        ax.text(8.75, 6.15, "InfoNCE: ch. 2", ha="center", **tag)
        ax.text(7.0, 5.0, "FIB: ch. 3", ha="right", **tag)
        ax.text(7.0, 3.65, "OT: ch. 4, FIA: ch. 5", ha="right", **tag)
        ax.text(7.0, 1.35, "assembly: ch. 6", ha="right", **tag)
        ax.text(9.7, 0.2, "training: ch. 7-9", ha="right", **tag)
    if not show:
        return fig
    plt.show()
    return None
