"""Cell patches -> embedding columns of a cell table, with any representation model.

``encode_patches`` runs ``model.encode`` over uint8 HWC patches in batches (bounded memory)
and returns the named parts as arrays; ``embed_cells`` adds them to a copy of a cell table
as columns named by part (``z_iso_00``, ``q_ori_00_0``, ...; see ``aggregation``).
Patches come from an array aligned with the table, or are read around each cell's ``(x, y)``
from its slide at a given ``mpp``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from histolatent.embed.columns import table_from_parts
from histolatent.errors import InputError

__all__ = ["embed_cells", "encode_patches", "read_cell_patches"]


def _to_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float32 ``(B, 3, H, W)`` in [0, 1] (a new tensor)."""
    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float().div(255.0)


@torch.no_grad()
def encode_patches(model, patches: np.ndarray, *, parts: Sequence[str] | None = None, batch_size: int = 256,
                   precision: str = "fp32") -> dict[str, np.ndarray]:
    """``model.encode`` over ``patches`` (uint8 ``(N, H, W, C)``), batched; parts as float32 arrays.

    ``parts`` selects encode keys (default: all); ``precision`` ``"bf16"`` uses CPU/GPU autocast.
    """
    patches = np.asarray(patches)
    if patches.ndim != 4 or patches.dtype != np.uint8:
        raise InputError(f"patches must be uint8 (N, H, W, C), got {patches.dtype} {patches.shape}")
    size = getattr(model.config, "image_size", None)
    if size is not None and patches.shape[1:3] != (size, size):
        raise InputError(f"patches are {patches.shape[1]}x{patches.shape[2]} px but the model takes {size}x{size}")
    model.eval()
    dev = model.device
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(patches), batch_size):
        x = _to_tensor(patches[start:start + batch_size]).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            enc = model.encode(x)
        for k, v in enc.items():
            if parts is None or k in parts:
                out.setdefault(k, []).append(v.float().cpu().numpy())
    if parts is not None and (missing := set(parts) - set(out)):
        raise InputError(f"model has no encode part(s) {sorted(missing)}; it gives {sorted(enc)}")
    return {k: np.concatenate(v) for k, v in out.items()}


def read_cell_patches(cells: pd.DataFrame, *, size_px: int, mpp: float, slide_col: str = "slide",
                      x_col: str = "x", y_col: str = "y") -> np.ndarray:
    """Read ``size_px`` patches at ``mpp`` centred on each cell's level-0 ``(x, y)`` from its slide."""
    from histolatent.io.slide import open_slide

    for c in (slide_col, x_col, y_col):
        if c not in cells.columns:
            raise InputError(f"cell table has no column {c!r} (needed to read patches from slides)")
    out = np.zeros((len(cells), size_px, size_px, 3), np.uint8)
    for path, idx in cells.groupby(slide_col).indices.items():
        with open_slide(path) as slide:
            scale = mpp / slide.require_mpp()
            half = size_px * scale / 2
            for i in idx:
                x, y = float(cells[x_col].iloc[i]), float(cells[y_col].iloc[i])
                out[i] = slide.read(x - half, y - half, size_px, size_px, mpp=mpp)
    return out


def embed_cells(model, cells: pd.DataFrame, patches: np.ndarray, *, parts: Sequence[str] | None = None,
                batch_size: int = 256, precision: str = "fp32") -> pd.DataFrame:
    """A copy of ``cells`` with the model's embedding columns appended (one row per patch)."""
    if len(cells) != len(patches):
        raise InputError(f"{len(cells)} cells but {len(patches)} patches")
    enc = encode_patches(model, patches, parts=parts, batch_size=batch_size, precision=precision)
    return table_from_parts(enc, cells)
