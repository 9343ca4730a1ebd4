"""``histolatent probe`` (:func:`probe_table`) on ROIs: aggregation, then probes with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from histolatent.errors import InputError


def test_probe_command_aggregates_rois(tmp_path):
    from histolatent.cli.probe import command as probe
    from histolatent.embed.columns import table_from_parts

    rng = np.random.default_rng(3)
    n_roi, per = 60, 6
    roi = np.repeat(np.arange(n_roi), per)
    grade = np.repeat(rng.integers(1, 4, n_roi), per)
    split = np.repeat(np.array(["train"] * 30 + ["val"] * 12 + ["test"] * 18), per)
    area = rng.normal(40 + 15 * grade, 5)
    parts = {"z_iso": rng.normal(size=(len(roi), 4)) + 0.8 * grade[:, None], "q_ori": rng.dirichlet(np.ones(8), (len(roi), 2)),
             "z_ori": rng.random((len(roi), 2)) * 6.28}
    table_from_parts(parts, pd.DataFrame({"roi_id": roi, "grade": grade, "split": split, "area": area})).to_parquet(
        tmp_path / "cells.parquet")
    probe(tmp_path / "cells.parquet", label="grade", features=["z_iso", "mna,sdna", "z_ori"], split="split",
          roi="roi_id", area="area", resamples=2, seed=0, out=tmp_path / "r.json")
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res) == {"z_iso", "mna,sdna", "z_ori"}  # z_ori: ROI histograms, rotation-invariant probe
    assert res["z_iso"]["mean"] > 0.8 and res["mna,sdna"]["mean"] > 0.8
    assert res["z_ori"]["mean"] < 0.8  # random angles carry no grade


def test_probe_table_names_what_is_missing_before_fitting(tmp_path):
    from histolatent.downstream.probes import probe_table

    t = pd.DataFrame({"z_00": [0.0, 1.0], "label": [0, 1], "split": ["train", "test"]})
    with pytest.raises(InputError, match="part 'w'"):
        probe_table(t, label="label", features=["w"])
    with pytest.raises(InputError, match="'val'"):
        probe_table(t, label="label", features=["z"])
    with pytest.raises(InputError, match="does not exist"):
        probe_table(tmp_path / "none.parquet", label="label", features=["z"])
