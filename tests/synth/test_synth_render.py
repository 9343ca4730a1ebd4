"""SynthPath tiles: determinism, ground truth consistency, stain re-rendering, validation."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.stain.optical_density import concentrations_from_od
from histolatent.synth import (
    CLEAN,
    TYPE_IDS,
    Scanner,
    Stain,
    render_tile,
    rerender,
    site_stain,
    stain_pair,
    stain_pairs,
)
from histolatent.synth.noise import Grid
from histolatent.synth.render import render_region
from histolatent.synth.stain import intensity_from_concentrations
from histolatent.synth.tissue import World, as_tissue


@pytest.fixture(scope="module")
def tile():
    return render_tile(192, mpp=0.5, seed=7, tissue="breast")


def test_same_seed_identical_bytes():
    a = render_tile(128, mpp=0.5, seed=3, stain=2)
    b = render_tile(128, mpp=0.5, seed=3, stain=2)
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.instances.tobytes() == b.instances.tobytes()
    assert a.concentrations.tobytes() == b.concentrations.tobytes()
    assert a.nuclei.equals(b.nuclei)
    c = render_tile(128, mpp=0.5, seed=4, stain=2)
    assert a.rgb.tobytes() != c.rgb.tobytes()


def test_tile_shapes_and_dtypes(tile):
    h, w = 192, 192
    assert tile.rgb.shape == (h, w, 3) and tile.rgb.dtype == np.uint8
    assert tile.instances.shape == (h, w) and tile.instances.dtype == np.int32
    assert tile.types.dtype == np.uint8 and tile.regions.dtype == np.uint8
    assert tile.concentrations.shape == (h, w, 3) and tile.concentrations.dtype == np.float32
    assert tile.stain_matrix.shape == (3, 3) and tile.mpp == 0.5
    assert (tile.concentrations >= 0).all()


def test_instance_mask_agrees_with_table(tile):
    inst, nuc = tile.instances, tile.nuclei
    ids = np.unique(inst[inst > 0])
    assert len(nuc) > 20
    np.testing.assert_array_equal(np.sort(nuc["instance_id"].to_numpy()), ids)
    counts = np.bincount(inst.ravel(), minlength=ids.max() + 1)
    yy, xx = np.indices(inst.shape)
    sx = np.bincount(inst.ravel(), weights=xx.ravel(), minlength=ids.max() + 1)
    sy = np.bincount(inst.ravel(), weights=yy.ravel(), minlength=ids.max() + 1)
    i = nuc["instance_id"].to_numpy()
    np.testing.assert_array_equal(counts[i], nuc["area_px"].to_numpy())
    np.testing.assert_allclose(sx[i] / counts[i], nuc["x"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(sy[i] / counts[i], nuc["y"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(nuc["area_um2"], nuc["area_px"] * 0.25)
    # the type map under every instance is that instance's type; no type without instance
    for iid, tid in zip(i, nuc["type_id"], strict=True):
        assert (tile.types[inst == iid] == tid).all()
    assert ((tile.types > 0) == (inst > 0)).all()
    assert set(nuc["type"]) <= set(TYPE_IDS)
    assert ((nuc["orientation"] >= 0) & (nuc["orientation"] < 2 * np.pi)).all()
    assert (nuc["major_axis_um"] >= nuc["minor_axis_um"]).all()


def test_nucleus_sizes_follow_types():
    t = render_tile(256, mpp=0.5, seed=1, tissue="lymphoid")
    nuc = t.nuclei
    lym = nuc[nuc["type"] == "lymphocyte"]
    assert len(lym) > 30
    r = lym["major_axis_um"] / 2
    assert r.between(2.8, 4.3).all()  # radius ~3-4 µm
    fib = render_tile(256, mpp=0.5, seed=2, tissue="stroma").nuclei
    fib = fib[fib["type"] == "fibroblast"]
    assert fib["aspect"].between(3.0, 6.0).all()


def test_rerender_changes_colour_only(tile):
    before = {k: getattr(tile, k).copy() for k in ("rgb", "instances", "concentrations")}
    a = rerender(tile, 0, scanner=CLEAN)
    b = rerender(tile, site_stain(5), scanner=CLEAN)
    for k, v in before.items():  # the input tile is untouched
        assert np.array_equal(getattr(tile, k), v)
    assert np.array_equal(a.instances, b.instances) and np.array_equal(a.concentrations, b.concentrations)
    assert not np.array_equal(a.rgb, b.rgb)
    for t in (a, b):  # deconvolving each image with its own stain recovers the same concentrations
        bg = np.array(t.stain.background, dtype=np.float64)
        exact = intensity_from_concentrations(t.concentrations, t.stain)  # before uint8 rounding
        c = concentrations_from_od(-np.log10(exact / bg), t.stain_matrix)
        np.testing.assert_allclose(c, t.concentrations, atol=2e-4)
        od = -np.log10(np.clip(t.rgb.astype(np.float64), 1, None) / bg)
        c = concentrations_from_od(od, t.stain_matrix)
        tissue = (t.rgb > 8).all(-1) & (t.rgb < 250).all(-1)
        err = np.abs(c - t.concentrations)[tissue]  # only uint8 quantisation is left
        assert np.median(err) < 0.02 and np.percentile(err, 99) < 0.08


def test_stain_pair_and_pairs():
    p = stain_pair(5, 96, 0.5, source=3, target=0)
    assert p.source.shape == p.target.shape == (96, 96, 3)
    assert not np.array_equal(p.source_matrix, p.target_matrix)
    pairs = list(stain_pairs(3, 64, 0.5, seed=1))
    assert len(pairs) == 3
    assert len({pp.source_stain.site for pp in pairs}) == 3
    again = next(iter(stain_pairs(1, 64, 0.5, seed=1)))
    assert again.source.tobytes() == pairs[0].source.tobytes()


def test_same_tissue_at_two_mpps():
    a = render_tile(128, mpp=0.5, seed=9)
    b = render_tile(256, mpp=0.25, seed=9)  # the same 64 µm square
    full_a = a.nuclei[~a.nuclei["truncated"]]
    gid_b = set(b.nuclei["gid"])
    assert len(full_a) > 5 and set(full_a["gid"]) <= gid_b


def test_adjacent_windows_join_without_seams():
    world = World(seed=11, tissue=as_tissue("breast"))
    whole = render_region(world, Grid(0.0, 0.0, 256, 128, 0.5))
    left = render_region(world, Grid(0.0, 0.0, 128, 128, 0.5))
    right = render_region(world, Grid(64.0, 0.0, 128, 128, 0.5))
    joined = np.concatenate([left.concentrations, right.concentrations], axis=1)
    np.testing.assert_allclose(joined, whole.concentrations, atol=2e-3)
    assert np.array_equal(np.concatenate([left.types, right.types], axis=1), whole.types)


def test_scanner_and_validation_errors():
    with pytest.raises(InputError, match="size_px"):
        render_tile(0)
    with pytest.raises(InputError, match="mpp"):
        render_tile(64, mpp=-1)
    with pytest.raises(InputError, match="tissue"):
        render_tile(64, tissue="liver")
    with pytest.raises(InputError, match="stain"):
        render_tile(64, stain=np.ones((3, 3)))  # rank 1
    with pytest.raises(InputError, match="jpeg_quality"):
        Scanner(jpeg_quality=0)
    jpg = render_tile(64, seed=1, scanner={"jpeg_quality": 50})
    raw = render_tile(64, seed=1, scanner=Scanner(jpeg_quality=None))
    assert not np.array_equal(jpg.rgb, raw.rgb)
    m = np.array(Stain().matrix)
    s = Stain(matrix=m)
    assert not np.shares_memory(s.matrix, m)
