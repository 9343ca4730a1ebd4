"""Saving a finished matplotlib figure: tight layout, PNG written atomically, figure closed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from histolatent.io.atomic import atomic_path

__all__ = ["save_png"]


def save_png(fig: Any, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Lay ``fig`` out tightly, write it to ``path`` as PNG (temporary name, then rename), close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)
