"""Test-time prediction of slides: the 8 dihedral views are the right ones, an invariant grid
is left alone, dihedral stores are read at the same tissue, and slide models trained through
fit on synthetic grids predict held-out slides (AUC ~ 1) and attend to the lesion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from histolatent.embed.slides import predict_grid, predict_grids, slide_attention
from histolatent.errors import InputError
from histolatent.io.grids import write_slide_grid
from histolatent.metrics.auc import roc_auc
from histolatent.models import create_model, load_model
from histolatent.synth import write_grids
from histolatent.train import fit


class Probe(nn.Module):
    """A 'model' whose prediction is one cell of the crop: shows which views it was given."""

    def __init__(self, row: int, col: int) -> None:
        super().__init__()
        self.row, self.col = row, col
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, mask=None):
        return {"prediction": x[:, 0, self.row, self.col] + self.w}


def _one_cell_grid(tmp_path, h=9, w=12):
    """Random codes everywhere, tissue only at (4, 6): every crop is centred there."""
    grid = np.random.default_rng(0).normal(size=(2, h, w)).astype(np.float16).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[4, 6] = True
    return write_slide_grid(tmp_path / "one.zarr", grid, mask), grid


def test_the_eight_views_are_the_dihedral_transforms_of_the_crop(tmp_path):
    store, grid = _one_cell_grid(tmp_path)
    crop = grid[0, 4 - 2:4 + 3, 6 - 2:6 + 3]  # R = 5 around (4, 6)
    corners = [crop[0, 0], crop[0, -1], crop[-1, 0], crop[-1, -1]]
    plain = predict_grid(Probe(0, 0), store, crops=1, crop=5, dihedral=False)
    assert plain.views == 1 and plain.prediction == pytest.approx(crop[0, 0])
    tta = predict_grid(Probe(0, 0), store, crops=1, crop=5)
    # each corner comes to the top left under exactly two of the 8 flips / quarter turns
    assert tta.views == 8 and tta.prediction == pytest.approx(np.mean(corners), abs=1e-6)
    centre = predict_grid(Probe(2, 2), store, crops=1, crop=5)
    assert centre.prediction == pytest.approx(crop[2, 2]) and centre.std == pytest.approx(0, abs=1e-7)


def test_tta_of_a_dihedral_invariant_grid_changes_nothing(tmp_path):
    torch.manual_seed(0)
    # three layers: a 6-cell crop keeps some extent (8 stride-2 layers would leave one cell)
    net = create_model("slide-cnn", in_channels=3, crop=6, filters=8, hidden=8, strides=[2, 1, 1]).eval()
    code = np.array([0.5, -1.0, 2.0], np.float32)
    flat = write_slide_grid(tmp_path / "flat.zarr", np.broadcast_to(code[:, None, None], (3, 20, 20)).copy(),
                            np.pad(np.ones((8, 8), bool), 6))  # every crop lies inside the constant grid
    a = predict_grid(net, flat, crops=4, dihedral=True)
    b = predict_grid(net, flat, crops=4, dihedral=False)
    assert a.prediction == pytest.approx(b.prediction, abs=1e-6) and a.std == pytest.approx(0, abs=1e-6)
    rough = write_slide_grid(tmp_path / "rough.zarr", np.random.default_rng(1).normal(size=(3, 20, 20)),
                             np.pad(np.ones((8, 8), bool), 6))
    assert predict_grid(net, rough, crops=4).prediction != pytest.approx(
        predict_grid(net, rough, crops=4, dihedral=False).prediction, abs=1e-6)


def test_a_dihedral_store_is_read_at_the_same_tissue_under_each_transform(tmp_path):
    from histolatent.embed.grid import compress_slide
    from histolatent.tissue.mask import TissueMask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6 * 8, 9 * 8, 3), dtype=np.uint8)
    tissue = TissueMask(rng.random((6, 9)) < 0.6, (9 * 8, 6 * 8))
    store = compress_slide(image, lambda x: x.mean(dim=(2, 3)), tmp_path / "s.zarr", tile_px=8, mpp=1.0,
                           slide_mpp=1.0, tissue=tissue, dihedral=True, progress=False)
    one = predict_grid(Probe(2, 2), store, crops=1, crop=5)
    assert one.views == 8 and one.std < 1e-3  # mean RGB sees no rotation: the centre cell is the same code
    p = predict_grid(Probe(2, 2), store, crops=3, crop=5)
    codes = image.reshape(6, 8, 9, 8, 3).mean(axis=(1, 3))[..., 0] / 255.0
    assert p.prediction == pytest.approx(np.mean([codes[r, c] for r, c in p.centres]), abs=2e-3)


def test_predict_grids_table_labels_and_errors(tmp_path):
    root = write_grids(tmp_path / "g", n=3, size=(8, 10), channels=4, seed=0)
    net = create_model("slide-cnn", in_channels=4, crop=4, filters=8, hidden=8)
    table = predict_grids(net, root, out=tmp_path / "p.parquet", labels=root / "labels.csv", crops=2)
    assert table.columns.tolist() == ["slide_id", "prediction", "std", "views", "crop", "model", "weights_hash",
                                      "label"]
    assert table["slide_id"].tolist() == ["slide_0000", "slide_0001", "slide_0002"]
    assert table["label"].tolist() == [0.0, 1.0, 0.0] and (table["views"] == 16).all()
    assert pd.read_parquet(tmp_path / "p.parquet").equals(table)
    again = predict_grids(net, [root / "slide_0001.zarr"], crops=2)
    assert again["prediction"].iloc[0] == table["prediction"].iloc[1]  # same seed, same crops, same answer
    pd.DataFrame({"slide_id": ["slide_0000"], "label": [1]}).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(InputError, match=r"no label for slide\(s\) \['slide_0001'"):
        predict_grids(net, root, labels=tmp_path / "few.csv")
    with pytest.raises(InputError, match="channels"):
        predict_grids(create_model("slide-cnn", in_channels=5, crop=4, filters=8, hidden=8), root)
    (root / "slide_0002.zarr" / "manifest.json").unlink()
    with pytest.raises(InputError, match=r"slide_0002\.zarr.*no manifest"):
        predict_grids(net, root)


def _train(tmp_path, model: dict, steps: int) -> tuple:
    # an obvious pattern: a lesion of 25-40 % of the grid's side whose codes move 4 SDs along one direction
    grids = dict(size=(10, 12), channels=4, strength=4.0, radius=(0.25, 0.4))
    train = write_grids(tmp_path / "train", n=24, seed=1, **grids)
    test = write_grids(tmp_path / "test", n=12, seed=2, **grids)
    cfg = {"model": {"in_channels": 4, "crop": 12, **model},
           "data": {"name": "grid-crops", "root": str(train), "labels": str(train / "labels.csv"), "crop": 12,
                    "samples_per_slide": 16, "splits": {"train": [f"slide_{i:04d}" for i in range(24)]}},
           "train": {"steps": steps, "batch_size": 16, "seed": 0, "progress": False, "log_every": 20}}
    run = fit(cfg, out=tmp_path / "run")
    return run, test


def test_slide_cnn_trained_through_fit_predicts_held_out_slides(tmp_path):
    run, test = _train(tmp_path, {"name": "slide-cnn", "filters": 16, "hidden": 16, "lr": 1e-2}, steps=40)
    table = predict_grids(run, test, labels=test / "labels.csv", crops=4, out=tmp_path / "pred.csv")
    assert table["crop"].eq(12).all()  # the run's data.crop
    assert roc_auc(table["label"], table["prediction"]) >= 0.95, table


def test_attention_mil_trained_through_fit_predicts_and_attends_to_the_lesion(tmp_path):
    run, test = _train(tmp_path, {"name": "attention-mil", "instance_dim": 16, "attention_dim": 8, "lr": 1e-2},
                       steps=40)
    table = predict_grids(run, test, labels=test / "labels.csv", crops=2, dihedral=False)
    assert roc_auc(table["label"], table["prediction"]) >= 0.95, table
    model = load_model(run)
    from PIL import Image

    for sid in table.loc[table["label"] == 1, "slide_id"]:
        a = slide_attention(model, test / f"{sid}.zarr")
        lesion = np.asarray(Image.open(test / f"{sid}_lesion.png")) > 0
        assert a.shape == lesion.shape and a.sum() == pytest.approx(1, abs=1e-5)
        assert a[lesion].mean() > 2 * a[~lesion & (a > 0)].mean()  # lesion cells get more attention
