"""A slide grid read back holds, cell by cell, exactly the float16 code of the tile at its affine."""

from __future__ import annotations

import numpy as np
import torch

from histolatent.embed import embed_slide_grid, read_slide_grid
from histolatent.io.slide import ArraySlide
from histolatent.tissue.mask import TissueMask


def pixels(x: torch.Tensor) -> torch.Tensor:
    """A 9-number code: three pixels of the tile, picked off the diagonals (exact, no reduction)."""
    return x[:, :, [0, 3, -1], [1, 7, -2]].flatten(1)


def test_grid_codes_mask_and_attrs_round_trip_across_bands(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (88, 150, 3), dtype=np.uint8)  # 4 rows x 7 columns of 20-px tiles at 2x
    m = np.ones((11, 15), bool)
    m[0:3, 8:12] = False  # no tissue over cells (0, 4) and (0, 5)
    tissue = TissueMask(m, (150, 88))
    out = embed_slide_grid(pixels, img, tmp_path / "g.zarr", tile_px=10, mpp=1.0, stride_px=10, slide_mpp=0.5,
                           tissue=tissue, min_tissue=0.5, batch_size=12)  # bands of 2 rows
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (9, 4, 7) and grid.dtype == np.float16 and mask.dtype == bool
    assert mask.sum() == 26 and not mask[0, 4] and not mask[0, 5]
    assert attrs["affine"] == [[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 1.0]]
    assert {k: attrs[k] for k in ("mpp", "tile_px", "stride_px", "slide_mpp", "level0_dimensions", "min_tissue",
                                  "part", "encoder")} == {
        "mpp": 1.0, "tile_px": 10, "stride_px": 10, "slide_mpp": 0.5, "level0_dimensions": [150, 88],
        "min_tissue": 0.5, "part": "z", "encoder": "pixels"}
    slide = ArraySlide(img, mpp=0.5)
    for i in range(4):
        for j in range(7):
            x, y, _ = np.array(attrs["affine"]) @ [j, i, 1]
            tile = slide.read(x, y, 10, 10, mpp=1.0)
            code = pixels(torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 255.0)[0].numpy()
            want = code.astype(np.float16) if mask[i, j] else np.zeros(9, np.float16)
            np.testing.assert_array_equal(grid[:, i, j], want, err_msg=f"cell ({i}, {j})")
