"""Tissue: masks from thumbnails or user files, and tile grids at a physical scale (numpy only)."""

from histolatent.tissue.grid import TileGrid, box_fractions, tile_grid
from histolatent.tissue.mask import (
    TissueMask,
    detect_tissue,
    mask_from_geojson,
    mask_from_image,
    pen_mask,
    tissue_mask,
)

__all__ = [
    "TileGrid",
    "TissueMask",
    "box_fractions",
    "detect_tissue",
    "mask_from_geojson",
    "mask_from_image",
    "pen_mask",
    "tile_grid",
    "tissue_mask",
]
