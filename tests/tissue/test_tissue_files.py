"""histolatent.tissue.files: tissue masks and tile grids written to files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histolatent.errors import InputError
from histolatent.tissue.files import load_tissue_mask, write_tile_grid, write_tissue_mask


@pytest.fixture
def image():
    """256 x 256 px at 4 µm/px: tissue in the left half, glass in the right."""
    img = np.full((256, 256, 3), 245, np.uint8)
    img[:, :128] = (180, 90, 160)
    return img


def test_mask_png_round_trips_into_the_grid(image, tmp_path):
    mask = write_tissue_mask(image, tmp_path / "m.png", slide_mpp=4.0)
    png = np.asarray(Image.open(tmp_path / "m.png"))
    assert set(np.unique(png)) == {0, 255} and 0.45 < (png > 0).mean() < 0.55
    np.testing.assert_array_equal(png > 0, mask.mask)
    # the same grid from the written mask as from a detected one; the user's mask wins over detection
    a = write_tile_grid(image, tmp_path / "a.csv", mpp=8.0, tile_px=32, slide_mpp=4.0)
    b = write_tile_grid(image, tmp_path / "b.csv", mpp=8.0, tile_px=32, slide_mpp=4.0, mask=tmp_path / "m.png")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text() and len(a) == len(b) == 8
    inverted = tmp_path / "inv.png"
    Image.fromarray(255 - png).save(inverted)
    c = write_tile_grid(image, tmp_path / "c.csv", mpp=8.0, tile_px=32, slide_mpp=4.0, mask=inverted,
                        tiles_dir=tmp_path / "tiles")
    assert (c.x >= 128).all() and len(list((tmp_path / "tiles").glob("tile_*.png"))) == len(c) == 8


def test_bad_scale_fails_before_any_output(image, tmp_path):
    with pytest.raises(InputError, match="mpp"):
        write_tile_grid(image, tmp_path / "a.csv", mpp=0.0, tile_px=32, slide_mpp=4.0)
    with pytest.raises(InputError, match="mpp"):  # an image carries no mpp of its own
        write_tile_grid(image, tmp_path / "a.csv", mpp=8.0, tile_px=32)
    with pytest.raises(InputError, match="does not exist"):
        from histolatent.io.slide import open_slide

        load_tissue_mask(open_slide(image, mpp=4.0), tmp_path / "nope.png")
    assert list(tmp_path.iterdir()) == []
