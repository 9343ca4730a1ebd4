"""Vahadane: exact two-stain LASSO, dictionary recovery, numpy/torch agreement, StainTools-like."""

from __future__ import annotations

import numpy as np
import torch

from histolatent.stain import VahadaneNormalizer, nn_lasso2, vahadane_dictionary
from histolatent.stain.optical_density import od_from_rgb
from histolatent.stain.torch_ops import nn_lasso2_torch


def test_nn_lasso2_is_the_exact_minimiser():
    rng = np.random.default_rng(0)
    s = np.abs(rng.normal(size=(2, 3)))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    od = np.abs(rng.normal(0.4, 0.4, size=(200, 3)))
    lam = 0.05
    c = nn_lasso2(od, s, lam)
    assert (c >= 0).all()

    # KKT conditions of min 1/2 |od - c S|^2 + lam sum(c), c >= 0: the gradient
    # c S S^T - od S^T + lam is zero where c > 0 and non-negative where c = 0
    grad = c @ s @ s.T - od @ s.T + lam
    assert np.abs(grad[c > 1e-12]).max() < 1e-9
    assert grad[c <= 1e-12].min() > -1e-9
    assert (c == 0).any() and (c > 0).all(axis=1).any()  # both kinds of solution occur
    ct = nn_lasso2_torch(torch.from_numpy(od.T[None]).float(), torch.from_numpy(s[None]), lam)
    assert np.abs(ct[0].T.numpy() - c).max() < 1e-4


def test_dictionary_recovers_sparse_stains(render_he, s_true):
    od = od_from_rgb(render_he(s_true, size=96, seed=11)).reshape(-1, 3)
    od = od[od.min(axis=1) > 0.03]
    s = vahadane_dictionary(od, lam=0.1 / np.log(10))
    assert np.abs(s - s_true).max() < 0.06


def test_numpy_and_torch_agree(he_pair):
    src, tgt = he_pair
    norm = VahadaneNormalizer().fit(tgt)
    batch = np.stack([src, src[:, ::-1].copy()])
    ref = norm.transform(batch)
    out = norm.transform(torch.from_numpy(batch).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_normalised_source_has_the_target_stains(he_pair):
    src, tgt = he_pair
    norm = VahadaneNormalizer().fit(tgt)
    out = norm.transform(src)
    assert np.abs(norm.stain_matrix(out) - norm.stain_matrix_).max() < 0.05
    assert np.abs(norm.stain_matrix(src) - norm.stain_matrix_).max() > 0.08
    c = norm.concentrations(src)
    assert c.shape == (*src.shape[:2], 2) and (c >= 0).all()
