"""Probes recover known answers; aggregation to ROIs computes the right numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from histolatent.downstream.aggregation import aggregate_rois, angle_histograms
from histolatent.downstream.probes import (
    CyclicMaxProbe,
    Features,
    features_from_table,
    probe_representations,
    resampled_mauc,
    stratified_bootstrap,
)
from histolatent.embed.columns import columns_from_parts, part_array, part_columns, table_from_parts


def _split_tables(n: int, seed: int):
    """Cells with 3 classes; ``z_03`` carries the label, the other z columns are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    z = rng.normal(size=(n, 6))
    z[:, 3] += 2.0 * y
    return table_from_parts({"z": z}, pd.DataFrame({"label": y}))


def test_logistic_probe_finds_the_informative_column():
    tr, va, te = (_split_tables(n, s) for n, s in ((300, 0), (150, 1), (300, 2)))
    res = probe_representations(tr, va, te, {"all": ["z"], "signal": ["z_03"], "noise": ["z_00", "z_01"]},
                                "label", n_resamples=3)
    assert res["signal"].mean > 0.9 and res["all"].mean > 0.9
    assert abs(res["noise"].mean - 0.5) < 0.1
    assert len(res["all"].values) == 3 and res["all"].sd >= 0
    assert res["all"].to_dict()["hypers"]


def _cyclic_data(n: int, seed: int, m: int = 3, n_bins: int = 8):
    """Class = offset between the peaks of latents 0 and 1; every sample rolled by a random angle."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    h = np.full((n, m, n_bins), 0.02)
    h[np.arange(n), 0, 0] = 1.0
    h[np.arange(n), 1, 2 * y] = 1.0  # offsets 0, 2, 4 bins
    h[:, 2] = rng.random((n, n_bins))
    h += 0.05 * rng.random(h.shape)
    h /= h.sum(-1, keepdims=True)
    shift = rng.integers(0, n_bins, size=n)
    h = np.stack([np.roll(h[i], shift[i], axis=-1) for i in range(n)])
    return h, y


def test_cyclic_max_probe_is_rotation_invariant_and_beats_flat_logistic():
    (htr, ytr), (hva, yva), (hte, yte) = (_cyclic_data(n, s) for n, s in ((240, 0), (120, 1), (200, 2)))
    cyc = resampled_mauc(Features(cyclic=htr), ytr, Features(cyclic=hva), yva, Features(cyclic=hte), yte,
                         n_resamples=2, probe_kwargs={"lams": (1e-2, 1e-1)})
    flat = resampled_mauc(*(Features(flat=h.reshape(len(h), -1)) if i % 2 == 0 else h
                            for i, h in enumerate((htr, ytr, hva, yva, hte, yte))), n_resamples=2)
    assert cyc.mean > 0.9
    assert flat.mean < 0.75  # the absolute orientation is random: a flat model cannot use it
    p = CyclicMaxProbe(lams=(1e-2,)).fit(Features(cyclic=htr), ytr, Features(cyclic=hva), yva)
    a = p.predict_proba(Features(cyclic=hte))
    b = p.predict_proba(Features(cyclic=np.roll(hte, 3, axis=-1)))
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_cyclic_probe_combines_with_scalar_features():
    h, y = _cyclic_data(200, 3)
    rng = np.random.default_rng(4)
    h = rng.permutation(h.reshape(-1, 8)).reshape(h.shape)  # destroy the orientation signal
    s = (y + 0.3 * rng.normal(size=len(y)))[:, None]
    f = Features(flat=s, cyclic=h)
    res = resampled_mauc(f, y, f, y, f, y, n_resamples=0, probe_kwargs={"lams": (1e-1,)})
    assert res.mean > 0.9 and res.sd == 0.0


def test_stratified_bootstrap_keeps_class_counts():
    y = np.array([0] * 5 + [1] * 3 + [2] * 2)
    idx = stratified_bootstrap(y, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [5, 3, 2]


def test_columns_round_trip_and_feature_kinds():
    rng = np.random.default_rng(5)
    parts = {"z_iso": rng.normal(size=(4, 3)), "q_ori": rng.random((4, 3, 8)), "area": rng.random(4)}
    cols = columns_from_parts(parts)
    assert "z_iso_00" in cols and "q_ori_02_7" in cols and "area" in cols
    t = pd.DataFrame(cols)
    np.testing.assert_array_equal(part_array(t, "z_iso"), parts["z_iso"])
    np.testing.assert_array_equal(part_array(t, "q_ori"), parts["q_ori"])
    assert part_columns(t.columns, "z_iso") == ["z_iso_00", "z_iso_01", "z_iso_02"]
    f = features_from_table(t, ["z_iso", "q_ori", "area"])
    assert f.flat.shape == (4, 4) and f.cyclic.shape == (4, 3, 8)
    with pytest.raises(KeyError, match="mu"):
        features_from_table(t, ["mu"])


def test_aggregate_rois_means_distributions_and_area_stats():
    cells = pd.DataFrame({
        "roi_id": ["a", "a", "b", "b", "b"],
        "grade": [1, 1, 3, 3, 3],
        "area": [10.0, 20.0, 30.0, 30.0, 60.0],
    })
    q = np.zeros((5, 1, 4))
    q[[0, 2, 3, 4], 0, 0] = 1.0
    q[1, 0, 2] = 1.0
    cells = table_from_parts({"z_iso": np.arange(10.0).reshape(5, 2), "q_ori": q,
                              "z_ori": np.array([[0.1], [math.pi], [0.2], [0.3], [3 * math.pi / 2]])}, cells)
    agg = aggregate_rois(cells, parts=["z_iso", "q_ori"], angle_parts=["z_ori"], n_bins=4, area="area", keep=["grade"])
    assert agg["roi_id"].tolist() == ["a", "b"] and agg["n_cells"].tolist() == [2, 3]
    assert agg["grade"].tolist() == [1, 3]
    np.testing.assert_allclose(part_array(agg, "z_iso"), [[1.0, 2.0], [6.0, 7.0]])
    np.testing.assert_allclose(part_array(agg, "q_ori")[0, 0], [0.5, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(part_array(agg, "z_ori_hist")[1, 0], [2 / 3, 0.0, 0.0, 1 / 3])
    np.testing.assert_allclose(agg["mna"], [15.0, 40.0])
    np.testing.assert_allclose(agg["sdna"], [5.0, np.std([30.0, 30.0, 60.0])])
    cells.loc[4, "grade"] = 2
    with pytest.raises(ValueError, match="grade"):
        aggregate_rois(cells, keep=["grade"])


def test_angle_histograms_rows_sum_to_one():
    a = np.random.default_rng(6).random((50, 3)) * 2 * math.pi
    h = angle_histograms(a, 8)
    assert h.shape == (3, 8)
    np.testing.assert_allclose(h.sum(1), 1.0)
