"""compress_slide: dihedral grids = grids of the transformed slides, x/y not swapped, manifests that verify."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from histolatent.embed.grid import (
    MANIFEST,
    compress_slide,
    dihedral_index,
    dihedral_matrix,
    read_slide_grid,
    resolve_encoder,
    verify_grid,
)
from histolatent.errors import InputError
from histolatent.tissue.mask import TissueMask

T = 16  # tile side


def quadrants(x: torch.Tensor) -> torch.Tensor:
    """A code that sees orientation: the mean colour of each 2 x 2 quadrant of the tile (12 numbers)."""
    return torch.nn.functional.avg_pool2d(x, x.shape[-1] // 2).flatten(1)


def _slide(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocky random colours: 4-px blocks, so every tile is asymmetric and different from the others."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)


def _mask(h: int, w: int) -> np.ndarray:
    """Level-0 tissue: all but an L-shaped corner region (asymmetric)."""
    m = np.ones((h, w), bool)
    m[:T, :2 * T] = False
    m[T:2 * T, :T] = False
    return m


def _transform(a: np.ndarray, k: int) -> np.ndarray:
    a = a[:, ::-1] if k // 4 else a
    return np.ascontiguousarray(np.rot90(a, k % 4))


def test_dihedral_grids_equal_the_grids_of_the_rotated_and_flipped_slides(tmp_path, monkeypatch):
    import histolatent.embed.grid as grid_module

    monkeypatch.setattr(grid_module, "_CHUNK", 2)  # bands of 2 rows and reads of 1 x 2 tiles: placement
    monkeypatch.setattr(grid_module, "_REGION", (T, 2 * T))  # across bands and regions is exercised
    h, w = 3 * T, 5 * T  # non-square: quarter turns change the grid's shape
    img, m = _slide(h, w), _mask(h, w)
    opts = dict(mpp=0.5, tile_px=T, slide_mpp=0.5, batch_size=5)
    out = compress_slide(img, quadrants, tmp_path / "d.zarr", dihedral=True, tissue=TissueMask(m, (w, h)), **opts)
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (8, 12, 5, 5) and mask.shape == (8, 5, 5)
    for k in range(8):
        ti, tm = _transform(img, k), _transform(m, k)
        ref = compress_slide(ti, quadrants, tmp_path / f"r{k}.zarr", tissue=TissueMask(tm, tm.shape[::-1]), **opts)
        g, mk, _ = read_slide_grid(ref)
        hk, wk = g.shape[1:]
        assert attrs["dihedral_shapes"][k] == [hk, wk]
        np.testing.assert_array_equal(mask[k, :hk, :wk], mk, err_msg=f"mask {k}")
        assert not mask[k, hk:].any() and not mask[k, :, wk:].any()  # the padding is background
        np.testing.assert_allclose(grid[k, :, :hk, :wk].astype(np.float32), g.astype(np.float32), atol=1e-3,
                                   err_msg=f"grid {k}")
        # the stored index matrix takes each cell of grid k back to its cell of grid 0
        back = np.array(attrs["dihedral_index"][k])
        for i2 in range(hk):
            for j2 in range(wk):
                j, i, _ = back @ [j2, i2, 1]
                assert mask[0, i, j] == mk[i2, j2]
    assert not np.allclose(grid[1, :, :3, :3], grid[0, :, :3, :3])  # the copies are not all the same


def test_dihedral_index_is_a_permutation_and_matches_numpy():
    a = np.arange(6).reshape(2, 3)
    ii, jj = np.mgrid[:2, :3]
    for k in range(8):
        want = _transform(a, k)
        i2, j2, shape = dihedral_index(k, ii, jj, (2, 3))
        assert shape == want.shape
        np.testing.assert_array_equal(want[i2, j2], a)
        back = np.array(dihedral_matrix(k, (2, 3)))
        np.testing.assert_array_equal(back @ np.stack([j2.ravel(), i2.ravel(), np.ones(6)]),
                                      np.stack([jj.ravel(), ii.ravel(), np.ones(6)]))


def test_rows_and_columns_are_not_swapped_on_a_non_square_slide(tmp_path):
    """A 2 x 7 grid whose colour ramps along x only: a transposed reader would fail the shape and values."""
    h, w = 2 * T, 7 * T
    img = np.zeros((h, w, 3), np.uint8)
    for j in range(7):
        img[:, j * T:(j + 1) * T] = (30 * j, 0, 0)
    img[:T, :, 1] = 200  # top row green
    out = compress_slide(img, lambda x: x.mean(dim=(2, 3)), tmp_path / "g.zarr", tile_px=T, slide_mpp=0.5,
                         tissue=TissueMask(np.ones((h, w), bool), (w, h)))
    grid, mask, attrs = read_slide_grid(out)
    assert grid.shape == (3, 2, 7) and attrs["grid_shape"] == [2, 7]
    np.testing.assert_allclose(grid[0, 1], np.arange(7) * 30 / 255, atol=2e-3)
    np.testing.assert_allclose(grid[1, :, 3], [200 / 255, 0], atol=2e-3)
    np.testing.assert_allclose(np.array(attrs["affine"]) @ [6, 1, 1], [6 * T, T, 1])


def test_manifest_verifies_and_catches_damage(tmp_path):
    h, w = 2 * T, 3 * T
    out = compress_slide(_slide(h, w), quadrants, tmp_path / "g.zarr", tile_px=T, slide_mpp=0.5,
                         tissue=TissueMask(np.ones((h, w), bool), (w, h)))
    man = json.loads((out / MANIFEST).read_text())
    assert man["shape"] == [12, 2, 3] and man["dtype"] == "float16" and man["n_tissue_tiles"] == 6
    assert set(man["stage_seconds"]) == {"tissue", "read", "decode", "transform", "forward", "write"}
    assert man["options"]["tile_px"] == T and man["options"]["encoder"] == "quadrants"
    assert verify_grid(out) is None and verify_grid(out, {"tile_px": T}) is None
    assert "tile_px" in verify_grid(out, {"tile_px": 32})
    import zarr

    zarr.open_group(str(out), mode="r+")["grid"][0, 0, 0] = 7.0  # one changed value
    assert "checksum" in verify_grid(out)
    (out / MANIFEST).unlink()
    assert "no manifest" in verify_grid(out)


def test_bad_input_is_refused_before_any_work(tmp_path):
    img = _slide(2 * T, 2 * T)
    with pytest.raises(InputError, match="precision"):
        compress_slide(img, quadrants, tmp_path / "a.zarr", tile_px=T, slide_mpp=0.5, precision="fp8")
    with pytest.raises(InputError, match="no such run folder"):
        compress_slide(img, tmp_path / "nothing", tmp_path / "a.zarr", tile_px=T, slide_mpp=0.5)
    (tmp_path / "enc.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="enc.json: encoder description missing"):
        resolve_encoder(tmp_path / "enc.pt")          # not TorchScript, and no JSON beside it
    with pytest.raises(InputError, match="encoder"):
        resolve_encoder(42)
    assert list(tmp_path.glob("*.zarr")) == []


class _Quadrants(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 8).flatten(1)


def test_a_users_torchscript_encoder_gives_the_same_grid_as_the_module(tmp_path):
    """A TorchScript file + its JSON (input size, mpp, normalisation) compresses like the module itself."""
    pt = tmp_path / "quadrants.pt"
    torch.jit.script(_Quadrants()).save(str(pt))
    (tmp_path / "quadrants.json").write_text(json.dumps(
        {"input_px": T, "mpp": 0.5, "code_size": 12, "normalization": {"range": [0, 1]}}))
    h, w = 3 * T, 5 * T
    img, tissue = _slide(h, w, seed=3), TissueMask(_mask(h, w), (w, h))
    ours = compress_slide(img, pt, tmp_path / "ts.zarr", tile_px=T, slide_mpp=0.5, tissue=tissue)
    ref = compress_slide(img, quadrants, tmp_path / "ref.zarr", tile_px=T, slide_mpp=0.5, tissue=tissue)
    g_ts, m_ts, a_ts = read_slide_grid(ours)
    g_ref, m_ref, _ = read_slide_grid(ref)
    assert g_ts.shape == (12, 3, 5)
    np.testing.assert_array_equal(m_ts, m_ref)
    np.testing.assert_array_equal(g_ts, g_ref)
    from histolatent.models.torchscript import load_torchscript_encoder

    assert a_ts["weights_hash"] == load_torchscript_encoder(pt).weights_hash[:16]   # the file, not the (no) weights
