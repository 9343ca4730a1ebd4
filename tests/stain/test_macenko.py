"""Macenko: recovers known stain vectors, numpy/torch agree, masks exclude background."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from histolatent.errors import InputError
from histolatent.stain import MacenkoNormalizer, StainNormalizer, macenko_stain_matrix


def test_recovers_known_stain_matrix(render_he, s_true):
    img = render_he(s_true, size=128, seed=3)
    s = macenko_stain_matrix(img, background=255.0)
    assert np.abs(s - s_true).max() < 0.05  # angle percentiles sit at the extreme mixtures


def test_normalising_a_target_onto_itself_is_near_identity(render_he, s_true):
    img = render_he(s_true, size=96, seed=4)
    norm = MacenkoNormalizer(background=255.0).fit(img)
    out = norm.transform(img)
    assert np.abs(out.astype(int) - img).mean() < 1.5


def test_transform_moves_source_towards_target(he_pair):
    src, tgt = he_pair
    norm = MacenkoNormalizer(background=255.0).fit(tgt)
    out = norm.transform(src)
    s_out = norm.stain_matrix(out)
    assert np.abs(s_out - norm.stain_matrix_).max() < np.abs(norm.stain_matrix(src) - norm.stain_matrix_).max()
    assert np.abs(s_out - norm.stain_matrix_).max() < 0.05


def test_numpy_and_torch_paths_agree_to_one_level(he_pair):
    src, tgt = he_pair
    norm = MacenkoNormalizer().fit(tgt)
    batch = np.stack([src, np.roll(src, 7, axis=0), src[::-1].copy()])
    ref = norm.transform(batch)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)
    out8 = norm.transform(x).permute(0, 2, 3, 1).numpy()
    outf = norm.transform(x.float() / 255).permute(0, 2, 3, 1).numpy()
    assert np.abs(out8.astype(int) - ref).max() <= 1
    assert np.abs(np.rint(outf * 255).astype(int) - ref).max() <= 1
    assert (out8 != ref).mean() < 0.01


def test_mask_excludes_background_from_the_estimate(he_pair):
    src, tgt = he_pair
    norm = MacenkoNormalizer(background=255.0).fit(tgt)
    polluted = src.copy()
    polluted[:, :16] = (30, 160, 60)  # a green ink band: dark, would be "stained" by OD
    mask = np.ones(src.shape[:2], bool)
    mask[:, :16] = False
    clean = norm.stain_matrix(src)
    assert np.abs(norm.stain_matrix(polluted, mask=mask) - clean).max() < 0.02
    assert np.abs(norm.stain_matrix(polluted) - clean).max() > 0.05


def test_json_round_trip(tmp_path, he_pair):
    src, tgt = he_pair
    norm = MacenkoNormalizer(alpha=2.0).fit(tgt)
    path = norm.save(tmp_path / "m.json")
    json.loads(path.read_text())
    back = StainNormalizer.load(path)
    assert isinstance(back, MacenkoNormalizer) and back.alpha == 2.0
    assert np.array_equal(back.transform(src), norm.transform(src))
    bad = norm.to_dict()
    bad["state"]["stain_matrix"] = [[1, 2]]
    with pytest.raises(InputError, match="stain_matrix"):
        StainNormalizer.from_dict(bad)
    with pytest.raises(InputError, match="unknown stain normalizer"):
        StainNormalizer.from_dict({"method": "nope"})


def test_unfitted_and_unfittable():
    with pytest.raises(InputError, match="not fitted"):
        MacenkoNormalizer().transform(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="stained pixels"):
        MacenkoNormalizer().fit(np.full((32, 32, 3), 250, np.uint8))


def test_fixed_source_normalises_pieces_like_the_whole(he_pair):
    src, tgt = he_pair
    norm = MacenkoNormalizer(background=255.0).fit(tgt)
    whole = norm.transform(src)
    norm.fix_source(src)
    pieces = np.concatenate([norm.transform(src[:, :20]), norm.transform(src[:, 20:])], axis=1)
    assert np.array_equal(pieces, whole)  # no seams: one source estimate for both halves
    # a glass tile has too little tissue for its own estimate; with a fixed source it is normalised
    # anyway, with the source's stains: OD @ pinv(S_src) diag(c_target / c_src) S_target
    glass = np.full((8, 8, 3), 250, np.uint8)
    out = norm.transform(glass)
    assert norm.last_skipped.tolist() == [False]
    s_src, c_src = norm.source_
    m = np.linalg.pinv(s_src) @ np.diag(norm.max_concentrations_ / c_src) @ norm.stain_matrix_
    od = np.log10(256.0 / 251.0) * np.ones(3)
    want = np.clip(np.rint(256.0 * 10.0 ** -(od @ m) - 1.0), 0, 255)
    assert np.array_equal(out, np.broadcast_to(want, glass.shape)) and not np.array_equal(out, glass)
    x = torch.from_numpy(src).permute(2, 0, 1)[None]
    assert np.abs(norm.transform(x)[0].permute(1, 2, 0).numpy().astype(int) - whole).max() <= 1
    norm.fix_source(None)
    assert norm.source_ is None
    np.testing.assert_array_equal(norm.transform(glass), glass)  # its own estimate again: skipped, unchanged
    assert norm.last_skipped.tolist() == [True]
