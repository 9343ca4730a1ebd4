"""Slide cross-validation: the folds partition the slides, each slide is tested once per seed by
a model that never saw it, both learners share the folds, the metrics are those of the table,
and a cohort with an obvious lesion is recovered (AUC 1, Spearman high)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.conftest import REPO

from histolatent.downstream.slide_cv import (
    cross_validate_slides,
    slide_metric,
    slide_run_config,
    train_slide_model,
)
from histolatent.errors import InputError
from histolatent.metrics.auc import roc_auc
from histolatent.metrics.correlation import spearman
from histolatent.synth import write_grids

GRIDS = dict(size=(10, 12), channels=4, strength=4.0, radius=(0.25, 0.4))
MODELS = {"slide-cnn": {"filters": 8, "hidden": 8}, "attention-mil": {"instance_dim": 8, "attention_dim": 4}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_grids(tmp_path_factory.mktemp("cv") / "grids", n=16, seed=5, **GRIDS)


def _config(root, model="slide-cnn", steps=2, task="binary", **model_opts):
    return {"model": {"name": model, "in_channels": 4, "crop": 12, "lr": 1e-2, **MODELS[model], **model_opts},
            "data": {"name": "grid-crops", "root": str(root), "labels": str(root / "labels.csv"), "crop": 12,
                     "task": task, "samples_per_slide": 8, "eval_crops": 2},
            "train": {"steps": steps, "batch_size": 8, "progress": False, "log_every": 50}}


def test_folds_partition_the_slides_and_each_is_tested_once_per_seed(cohort, tmp_path):
    cv = cross_validate_slides(_config(cohort), out=tmp_path / "cv", seeds=(0, 1), crops=1, dihedral=False)
    ids = sorted(pd.read_csv(cohort / "labels.csv")["slide_id"])
    assert sorted(s for p in cv.partitions for s in p) == ids and [len(p) for p in cv.partitions] == [4, 4, 4, 4]
    assert sorted(cv.predictions["seed"].unique()) == [0, 1]
    for _, g in cv.predictions.groupby("seed"):
        assert sorted(g["slide_id"]) == ids  # every slide once per seed
    for row in cv.folds.itertuples():
        splits = yaml.safe_load(open(f"{row.run}/config.yaml"))["data"]["splits"]
        assert splits["test"] == cv.partitions[row.fold] and splits["val"] == cv.partitions[(row.fold + 1) % 4]
        sets = [set(splits[k]) for k in ("train", "val", "test")]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert sets[0] | sets[1] | sets[2] == set(ids)
        tested = cv.predictions.query("seed == @row.seed and fold == @row.fold")
        assert set(tested["slide_id"]) == sets[2]  # tested by the round that never trained on them
        assert row.auc == pytest.approx(roc_auc(tested["label"], tested["prediction"]))
    for seed in (0, 1):
        g = cv.predictions.query("seed == @seed")
        assert cv.summary["per_seed"][seed] == pytest.approx(roc_auc(g["label"], g["prediction"]))
    per = list(cv.summary["per_seed"].values())
    assert cv.summary["mean"] == pytest.approx(np.mean(per)) and cv.summary["sd"] == pytest.approx(np.std(per, ddof=1))
    assert cv.summary["fold_mean"] == pytest.approx(cv.folds["auc"].mean())
    assert pd.read_parquet(tmp_path / "cv" / "predictions.parquet").equals(cv.predictions)
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["metric"] == "auc"


def test_both_learners_run_on_the_same_folds(cohort, tmp_path):
    a = cross_validate_slides(_config(cohort, "slide-cnn"), out=tmp_path / "a", crops=1, dihedral=False)
    b = cross_validate_slides(_config(cohort, "attention-mil"), out=tmp_path / "b", crops=1, dihedral=False)
    assert a.partitions == b.partitions
    fold_of = {m: dict(zip(cv.predictions["slide_id"], cv.predictions["fold"], strict=True)) for m, cv in
               (("cnn", a), ("mil", b))}
    assert fold_of["cnn"] == fold_of["mil"]
    assert set(a.predictions["model"]) == {"slide-cnn"} and set(b.predictions["model"]) == {"attention-mil"}


def test_an_obvious_lesion_is_recovered_by_cross_validation(cohort, tmp_path):
    cv = cross_validate_slides(_config(cohort, "attention-mil", steps=30), out=tmp_path / "cv", crops=2,
                               dihedral=False)
    assert cv.summary["per_seed"][0] >= 0.95, cv.predictions


def test_regression_is_scored_by_spearman(tmp_path):
    root = write_grids(tmp_path / "grids", n=12, seed=6, **GRIDS)
    labels = pd.read_csv(root / "labels.csv")
    labels[["slide_id", "lesion_fraction"]].rename(columns={"lesion_fraction": "label"}).to_csv(
        root / "labels.csv", index=False)
    cv = cross_validate_slides(_config(root, "attention-mil", steps=2, task="regression"), out=tmp_path / "cv",
                               folds=3, crops=1, dihedral=False)
    assert cv.summary["metric"] == "spearman" and "spearman" in cv.folds
    for row in cv.folds.itertuples():  # each round's model standardises by its own training labels
        saved = yaml.safe_load(open(f"{row.run}/config.yaml"))
        y = labels.set_index("slide_id").loc[saved["data"]["splits"]["train"], "lesion_fraction"]
        assert saved["model"]["target_mean"] == pytest.approx(y.mean())
        assert saved["model"]["target_std"] == pytest.approx(y.std(ddof=0))
    assert cv.summary["per_seed"][0] == pytest.approx(spearman(cv.predictions["label"], cv.predictions["prediction"]))


def test_bad_setups_are_refused_before_training(cohort, tmp_path):
    with pytest.raises(InputError, match="not a slide-level model"):
        cross_validate_slides({**_config(cohort), "model": {"name": "autoencoder"}}, out=tmp_path / "x")
    cfg = _config(cohort)
    cfg["model"]["task"] = "regression"
    with pytest.raises(InputError, match="differs from data.task"):
        cross_validate_slides(cfg, out=tmp_path / "x")
    with pytest.raises(InputError, match="at least 3"):
        cross_validate_slides(_config(cohort), out=tmp_path / "x", folds=2)
    assert np.isnan(slide_metric("binary", [1, 1], [0.2, 0.3]))  # one class: no AUC, not an error


def test_train_slide_model_checks_the_config_then_fits_and_resumes(cohort, tmp_path):
    cfg = _config(cohort)
    cfg["train"]["checkpoint_every"] = 2
    run = train_slide_model(cfg, out=tmp_path / "run")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["task"] == "binary" and saved["data"]["name"] == "grid-crops"
    again = train_slide_model(resume=run, overrides=["train.steps=4"])
    assert again == run and json.loads((run / "model.json").read_text())["step"] == 4
    with pytest.raises(InputError, match="not a slide-level model"):
        train_slide_model({**cfg, "model": {"name": "autoencoder"}}, out=tmp_path / "x")
    with pytest.raises(InputError, match="grid-crops"):
        train_slide_model({**cfg, "data": {"name": "digits"}}, out=tmp_path / "x")


@pytest.mark.parametrize("name", ["slide-cnn", "slide-cnn-cpu", "attention-mil", "attention-mil-cpu"])
def test_shipped_slide_configs_are_valid_slide_runs(name):
    raw, _ = slide_run_config(REPO / "configs" / f"{name}.yaml")
    assert raw["model"]["crop"] == raw["data"]["crop"] and raw["model"]["task"] == raw["data"]["task"]
    if name == "slide-cnn":  # the paper's defaults, written out
        from histolatent.models.slide_cnn import SlideCNNConfig

        assert {k: v for k, v in raw["model"].items() if k != "name"} == {
            k: v for k, v in SlideCNNConfig().model_dump(mode="json").items() if k in raw["model"]}
        assert raw["train"]["batch_size"] == 16 and raw["train"]["scheduler"]["factor"] == 0.1
        assert raw["train"]["scheduler"]["min_lr"] == 1e-5
