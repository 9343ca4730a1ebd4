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
from histolatent.tissue.sampling import distance_to_background, sample_cells, spread_cells

__all__ = [
    "TileGrid",
    "TissueMask",
    "box_fractions",
    "detect_tissue",
    "distance_to_background",
    "mask_from_geojson",
    "mask_from_image",
    "pen_mask",
    "sample_cells",
    "spread_cells",
    "tile_grid",
    "tissue_mask",
]
