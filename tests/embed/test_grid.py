"""embed_slide_grid: known codes at the right cells, the affine, explicit background, streaming, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.embed import embed_slide_grid, read_slide_grid, weights_hash
from histolatent.errors import InputError
from histolatent.io.slide import ArraySlide
from histolatent.tissue.mask import TissueMask

H, W, T = 96, 160, 32  # a non-square slide: 3 rows x 5 columns of 32-px tiles


def mean_rgb(x: torch.Tensor) -> torch.Tensor:
    """The lower-bound encoder of NIC: the mean colour of the tile, (N, 3) in [0, 1]."""
    return x.mean(dim=(2, 3))


def _colour(i: int, j: int) -> tuple[int, int, int]:
    """A different colour per tile, asymmetric in rows and columns (a swapped x/y fails)."""
    return 20 + 70 * i, 10 + 45 * j, 250 - 11 * i - 37 * j


def _slide() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for i in range(H // T):
        for j in range(W // T):
            img[i * T:(i + 1) * T, j * T:(j + 1) * T] = _colour(i, j)
    return img


def _tissue() -> TissueMask:
    """Tissue everywhere but tiles (0, 0) and (2, 3); mask at 1/8 of level 0."""
    m = np.ones((H // 8, W // 8), bool)
    m[0:4, 0:4] = False
    m[8:12, 12:16] = False
    return TissueMask(m, (W, H))


def test_mean_rgb_codes_land_at_their_tiles_and_background_is_explicit(tmp_path):
    out = embed_slide_grid(mean_rgb, _slide(), tmp_path / "g.zarr", tile_px=T, mpp=0.5, slide_mpp=0.5,
                           tissue=_tissue(), batch_size=4)
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (3, 3, 5) and grid.dtype == np.float16 and mask.shape == (3, 5)
    want_mask = np.ones((3, 5), bool)
    want_mask[0, 0] = want_mask[2, 3] = False
    np.testing.assert_array_equal(mask, want_mask)
    for i in range(3):
        for j in range(5):
            want = np.float16(np.array(_colour(i, j)) / 255) if want_mask[i, j] else np.zeros(3, np.float16)
            np.testing.assert_allclose(grid[:, i, j], want, atol=1e-3, err_msg=f"cell ({i}, {j})")
    assert attrs["mpp"] == 0.5 and attrs["tile_px"] == T and attrs["stride_px"] == T
    assert attrs["level0_dimensions"] == [W, H] and attrs["encoder"] == "mean_rgb"
    np.testing.assert_allclose(np.array(attrs["affine"]) @ [4, 2, 1], [4 * T, 2 * T, 1])  # (j, i) -> (x, y)


def test_affine_maps_cells_to_their_tiles_at_another_scale_with_overlap(tmp_path):
    """Tiles of 16 px at 1 µm/px (32 level-0 px) every 8 px (16 level-0 px) on a 0.5 µm/px slide."""
    img = _slide()
    out = embed_slide_grid(mean_rgb, img, tmp_path / "g.zarr", tile_px=16, mpp=1.0, stride_px=8, slide_mpp=0.5,
                           tissue=TissueMask(np.ones((H, W), bool), (W, H)), min_tissue=0.0)
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (3, (H - 32) // 16 + 1, (W - 32) // 16 + 1) == (3, 5, 9) and mask.all()
    affine = np.array(attrs["affine"])
    for i in range(5):
        for j in range(9):
            x, y, _ = affine @ [j, i, 1]
            region = img[int(y):int(y) + 32, int(x):int(x) + 32].reshape(-1, 3).mean(0) / 255
            np.testing.assert_allclose(grid[:, i, j], region, atol=3e-3, err_msg=f"cell ({i}, {j})")


def test_tiles_are_read_in_regions_with_the_pixels_of_one_read_per_tile(tmp_path, monkeypatch):
    slide = ArraySlide(_slide(), mpp=0.5)
    regions = []
    read_level = slide.read_level

    def counting(level, x, y, w, h):
        regions.append((w, h))
        return read_level(level, x, y, w, h)

    monkeypatch.setattr(slide, "read_level", counting)
    embed_slide_grid(mean_rgb, slide, tmp_path / "g.zarr", tile_px=T, mpp=0.5, tissue=_tissue(), batch_size=2)
    assert len(regions) == 1 + 1 and regions[1] == (W, H)  # the probe tile, then one region for the small slide
    # the regions are cut exactly as per-tile reads, also when resampling (here 2x, and a 3/4 scale)
    xs, ys = np.array([0, 37, 64, 101]), np.array([5, 0, 33, 40])
    for mpp, size in ((1.0, 16), (0.5 * 4 / 3, 21)):
        many = slide.read_tiles(xs, ys, size, size, mpp=mpp)
        for k in range(len(xs)):
            np.testing.assert_array_equal(many[k], slide.read(xs[k], ys[k], size, size, mpp=mpp))


def test_a_model_takes_its_part_and_is_named_and_hashed(tmp_path):
    from histolatent.models import create_model

    torch.manual_seed(0)
    model = create_model("autoencoder", in_channels=3, image_size=T, channels=[4], latent_dim=6)
    out = embed_slide_grid(model, _slide(), tmp_path / "g.zarr", tile_px=T, mpp=0.5, slide_mpp=0.5, tissue=_tissue())
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (6, 3, 5) and attrs["encoder"] == "autoencoder" and attrs["part"] == "z"
    assert attrs["weights_hash"] == weights_hash(model)
    tile = _slide()[T:2 * T, 4 * T:5 * T]  # row 1, column 4
    want = model.eval().encode(torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 255)["z"][0]
    np.testing.assert_allclose(grid[:, 1, 4], want.detach().numpy(), atol=2e-3, rtol=2e-3)


def test_a_failure_leaves_nothing_and_bad_options_are_refused(tmp_path):
    calls = []

    def dies(x):
        calls.append(len(x))
        if len(calls) > 2:
            raise RuntimeError("killed")
        return mean_rgb(x)

    with pytest.raises(RuntimeError, match="killed"):
        embed_slide_grid(dies, _slide(), tmp_path / "g.zarr", tile_px=T, mpp=0.5, slide_mpp=0.5, tissue=_tissue(),
                         batch_size=5)
    assert list(tmp_path.iterdir()) == []
    opts = dict(tile_px=T, mpp=0.5, slide_mpp=0.5, tissue=_tissue())
    embed_slide_grid(mean_rgb, _slide(), tmp_path / "g.zarr", **opts)
    with pytest.raises(InputError, match="exists"):
        embed_slide_grid(mean_rgb, _slide(), tmp_path / "g.zarr", **opts)
    with pytest.raises(InputError, match="smaller than one tile"):
        embed_slide_grid(mean_rgb, _slide()[:20], tmp_path / "h.zarr", tile_px=T, mpp=0.5, slide_mpp=0.5,
                         tissue=TissueMask(np.ones((20, W), bool), (W, 20)))
    with pytest.raises(InputError, match="mpp"):
        embed_slide_grid(mean_rgb, _slide(), tmp_path / "i.zarr", tile_px=T, mpp=500000.0, slide_mpp=0.5)
    with pytest.raises(InputError, match="not a slide grid"):
        read_slide_grid(tmp_path / "missing.zarr")


def test_a_one_channel_encoder_reads_the_grey_slide(tmp_path):
    from histolatent.models import create_model

    grey = np.repeat(_slide()[..., :1], 3, axis=2)  # a grey slide written as RGB (NIC's digit slides)
    model = create_model("mean-rgb", image_size=T, in_channels=1)
    out = embed_slide_grid(model, grey, tmp_path / "g.zarr", tile_px=T, mpp=0.5, slide_mpp=0.5, tissue=_tissue(),
                           min_tissue=0.0)
    grid, mask, _ = read_slide_grid(out)
    assert grid.shape == (1, 3, 5) and mask.all()
    want = np.array([[_colour(i, j)[0] for j in range(5)] for i in range(3)]) / 255
    np.testing.assert_allclose(grid[0], want, atol=1e-3)
