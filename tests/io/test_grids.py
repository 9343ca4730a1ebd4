"""Grid stores read by window: a window is the slice of the grid, zero outside, for every dihedral grid."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.io.grids import (
    GridStore,
    dihedral_transform,
    find_grid_stores,
    read_slide_grid,
    verify_grid,
    write_slide_grid,
)


def _grid(c: int = 3, h: int = 5, w: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = rng.normal(size=(c, h, w)).astype(np.float16).astype(np.float32)  # exact after the float16 store
    mask = rng.random((h, w)) < 0.6
    return grid * mask, mask


def test_a_written_grid_verifies_and_reads_back(tmp_path):
    grid, mask = _grid()
    out = write_slide_grid(tmp_path / "a.zarr", grid, mask, attrs={"mpp": 64.0})
    assert verify_grid(out) is None
    g, m, attrs = read_slide_grid(out)
    assert g.dtype == np.float16 and np.array_equal(g.astype(np.float32), grid) and np.array_equal(m, mask)
    assert attrs["mpp"] == 64.0 and attrs["slide"] == "a"
    with pytest.raises(InputError, match="exists"):
        write_slide_grid(out, grid, mask)
    with pytest.raises(InputError, match="mask"):
        write_slide_grid(tmp_path / "b.zarr", grid, mask[:, :-1])


@pytest.mark.parametrize(("top", "left", "h", "w"), [(0, 0, 5, 9), (1, 2, 3, 4), (-2, -3, 4, 6), (3, 6, 4, 5),
                                                     (-1, -1, 8, 12), (6, 0, 2, 2)])
@pytest.mark.parametrize("keep", [True, False])
def test_a_window_is_the_slice_of_the_grid_zero_outside(tmp_path, top, left, h, w, keep, monkeypatch):
    grid, mask = _grid()  # 5 x 9: not square, so rows and columns cannot be swapped unnoticed
    store = GridStore(write_slide_grid(tmp_path / "s.zarr", grid, mask))
    monkeypatch.setattr(store, "KEEP_BYTES", 10**6 if keep else 0)  # cut in memory, or read from zarr
    padded = np.zeros((3, 5 + 20, 9 + 20), np.float32)
    padded[:, 10:15, 10:19] = grid
    pmask = np.zeros((25, 29), bool)
    pmask[10:15, 10:19] = mask
    want = padded[:, top + 10:top + 10 + h, left + 10:left + 10 + w]
    assert np.array_equal(store.window(top, left, h, w), want)
    assert np.array_equal(store.mask_window(top, left, h, w), pmask[top + 10:top + 10 + h, left + 10:left + 10 + w])
    assert bool(store._kept) == (keep and top < 5 and left < 9 and top + h > 0 and left + w > 0)


def test_dihedral_transform_is_the_group_of_numpy_flips_and_turns():
    a = np.arange(6).reshape(2, 3)
    got = {k: dihedral_transform(a, k) for k in range(8)}
    assert np.array_equal(got[1], np.rot90(a)) and np.array_equal(got[4], a[:, ::-1])
    assert np.array_equal(got[6], np.rot90(a[:, ::-1], 2))
    assert len({g.tobytes() + bytes(g.shape) for g in got.values()}) == 8  # eight different transforms
    with pytest.raises(InputError, match="0..7"):
        dihedral_transform(a, 8)


def test_find_grid_stores_names_slides_by_store(tmp_path):
    grid, mask = _grid()
    for sid in ("s2", "s1"):
        write_slide_grid(tmp_path / "g" / f"{sid}.zarr", grid, mask)
    (tmp_path / "g" / "notes").mkdir()
    found = find_grid_stores(tmp_path / "g")
    assert list(found) == ["s1", "s2"] and found["s1"].name == "s1.zarr"
    assert list(find_grid_stores([tmp_path / "g" / "s2.zarr"])) == ["s2"]
    with pytest.raises(InputError, match="no .zarr stores"):
        find_grid_stores(tmp_path / "g" / "notes")
    with pytest.raises(InputError, match="neither"):
        find_grid_stores(tmp_path / "missing")


def test_a_store_without_dihedral_grids_refuses_k(tmp_path):
    grid, mask = _grid()
    store = GridStore(write_slide_grid(tmp_path / "s.zarr", grid, mask))
    assert not store.dihedral and store.shape == (5, 9) and store.channels == 3
    again = pickle.loads(pickle.dumps(store))  # what a loader worker receives: the path, reopened
    assert np.array_equal(again.window(1, 1, 2, 3), store.window(1, 1, 2, 3))
    with pytest.raises(InputError, match="dihedral"):
        store.window(0, 0, 2, 2, k=1)
    with pytest.raises(InputError, match="not a slide grid"):
        GridStore(tmp_path / "nothing.zarr")
