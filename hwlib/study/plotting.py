"""One plotting style for every figure of the book (matplotlib + seaborn)."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

#: One colour per training regime or model variant, used across chapters.
PALETTE = sns.color_palette("colorblind", 10)


def use_style() -> None:
    """Apply the book's style: seaborn whitegrid, colour-blind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "figure.figsize": (6.4, 3.6),
        "axes.titlesize": "medium",
        "legend.frameon": False,
        "figure.constrained_layout.use": True,
    })


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.6,
           **kwargs):
    """A new figure and its axes, in the book's style.

    Args:
        ncols: axes per row.
        nrows: rows of axes.
        width: figure width per column, inches.
        height: figure height per row, inches.

    Returns:
        ``(fig, axes)`` as from :func:`matplotlib.pyplot.subplots`.
    """
    use_style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)
