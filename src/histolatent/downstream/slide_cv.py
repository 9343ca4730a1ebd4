"""Cross-validation of slide-level models on compressed slides (NIC §4.5-4.6).

The paper divides the slides into four equal partitions and runs four rounds, each training
on two partitions, validating on the third (the learning-rate plateaus) and testing on the
fourth, rotating them so that every slide is tested once by a model that never saw it. It
reports the AUC (classification) or Spearman correlation (regression) of all held-out
predictions together ("All"), mean and SD over weight initialisations.

:func:`cross_validate_slides` does that for any slide model (``slide-cnn``, ``attention-mil``)
from one run config: the partitions depend only on the slides, their labels and
``partition_seed``, so two learners given the same cohort run on the same folds. Every
round trains through :func:`histolatent.train.fit` (its run folder records its slides in
``data.splits``) and predicts its test slides with :func:`histolatent.embed.predict_grids`
(T crops x 8 dihedral views). Written to ``out``: one run folder per seed and fold,
``predictions.parquet`` (every held-out slide, per seed), ``folds.csv`` (the metric of each
round), ``partitions.json`` and ``summary.json``: the metric over all held-out slides for each
seed, its mean and SD over seeds, and the mean and SD of the per-fold metrics.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.config import apply_overrides, load_yaml
from histolatent.datasets.grid_crops import (
    GridCropsConfig,
    fold_splits,
    slide_partitions,
    split_slides,
)
from histolatent.embed.slides import predict_grids
from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic
from histolatent.io.grids import GRID_SUFFIX, find_grid_stores
from histolatent.io.labels import read_slide_labels
from histolatent.io.tables import write_table
from histolatent.metrics.auc import roc_auc
from histolatent.metrics.correlation import spearman
from histolatent.models import model_class
from histolatent.models.slide_base import SlideModel
from histolatent.train import fit
from histolatent.train.config import validate_run_config

__all__ = ["SlideCV", "cross_validate_slides", "slide_metric", "slide_run_config", "train_slide_model",
           "with_label_scale"]

#: What a task is scored by (NIC: AUC for metastasis, Spearman for proliferation).
METRICS = {"binary": "auc", "regression": "spearman"}


@dataclass(frozen=True)
class SlideCV:
    """The outcome of :func:`cross_validate_slides`.

    Attributes
    ----------
    predictions : DataFrame
        One row per held-out slide and seed: ``slide_id, label, prediction, std, views, seed,
        fold, model, run``.
    folds : DataFrame
        One row per seed and fold: ``seed, fold, n_train, n_val, n_test, <metric>, run``.
    summary : dict
        ``metric``, ``per_seed`` (the metric over all held-out slides of each seed), ``mean`` and
        ``sd`` over seeds, ``fold_mean`` and ``fold_sd`` over every round.
    partitions : list of list of str
    out : Path
    """

    predictions: pd.DataFrame
    folds: pd.DataFrame
    summary: dict
    partitions: list[list[str]]
    out: Path


def slide_metric(task: str, labels: Sequence[float], predictions: Sequence[float]) -> float:
    """AUC (``binary``) or Spearman's rho (``regression``); NaN where it is undefined (one class,
    a constant)."""
    fn = {"binary": roc_auc, "regression": spearman}.get(task)
    if fn is None:
        raise InputError(f"task: expected one of {list(METRICS)}, got {task!r}")
    try:
        return float(fn(np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)))
    except ValueError:
        return float("nan")


def _sd(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _mean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if len(v) else float("nan")


def slide_run_config(config: Any, overrides: list[str] | None = None) -> tuple[dict, str]:
    """``(run config dict, source)``: ``config`` (mapping or YAML path) with ``overrides``, checked
    to be a slide model on ``grid-crops`` data with one task (``model.task`` filled from
    ``data.task``); every key validated. Errors name the source."""
    if isinstance(config, Mapping):
        raw, source = copy.deepcopy(dict(config)), "<config>"
    elif isinstance(config, (str, os.PathLike)):
        raw, source = load_yaml(config), str(config)
    else:
        raise InputError(f"config: expected a mapping or a YAML path, got {type(config).__name__}")
    raw = apply_overrides(raw, overrides or [])
    validate_run_config(raw, source=source)  # every key checked before the first round
    if raw["data"].get("name") != "grid-crops":
        raise InputError(f"{source}: data.name must be 'grid-crops' (slides as grids with labels), "
                         f"got {raw['data'].get('name')!r}")
    cls = model_class(raw["model"]["name"])
    if not issubclass(cls, SlideModel):
        raise InputError(f"{source}: model {raw['model']['name']!r} is not a slide-level model (a SlideModel: "
                         f"it must predict a slide label from grid crops)")
    task = raw["data"].get("task", "binary")
    if raw["model"].setdefault("task", task) != task:
        raise InputError(f"{source}: model.task {raw['model']['task']!r} differs from data.task {task!r}")
    return raw, source


def with_label_scale(raw: dict, train_labels: Sequence[float]) -> dict:
    """A copy of ``raw`` with a regression model's ``target_mean`` / ``target_std`` set from its
    training labels (where the config does not set them); classification configs are copied as
    they are."""
    out = copy.deepcopy(raw)
    if out["model"].get("task") != "regression":
        return out
    y = np.asarray(train_labels, dtype=np.float64)
    out["model"].setdefault("target_mean", float(y.mean()) if len(y) else 0.0)
    out["model"].setdefault("target_std", float(y.std()) if len(y) and y.std() > 0 else 1.0)
    return out


def train_slide_model(config: Mapping[str, Any] | str | os.PathLike | None = None, *,
                      out: str | os.PathLike | None = None, overrides: list[str] | None = None,
                      resume: str | os.PathLike | None = None) -> Path:
    """Train one slide model through :func:`histolatent.train.fit`; returns the run folder.

    The config is checked as :func:`cross_validate_slides` checks it (a slide model on
    ``grid-crops``, one task) before any work; ``data.splits`` (or the label table's
    ``split`` column, or fold 0 of the default partitions) picks the slides. ``resume``
    continues a run folder from its last checkpoint (its own config is used).
    """
    if resume is not None:
        return fit(None, overrides=overrides, out=out, resume=resume)
    if config is None:
        raise InputError("config: give a run config (YAML) to start a run, or resume= to continue one")
    raw, _ = slide_run_config(config, overrides)
    data = GridCropsConfig(**{k: v for k, v in raw["data"].items() if k != "name"})
    table = read_slide_labels(data.labels, task=data.task)
    train = split_slides(data, "train", table)
    truth = dict(zip(table["slide_id"], table["label"], strict=True))
    return fit(with_label_scale(raw, [truth[s] for s in train if s in truth]), out=out)


def cross_validate_slides(config: Mapping[str, Any] | str | os.PathLike, *, out: str | os.PathLike,
                          folds: int = 4, seeds: Sequence[int] = (0,), partition_seed: int = 0, crops: int = 10,
                          dihedral: bool = True, overrides: list[str] | None = None) -> SlideCV:
    """Train and test a slide model on rotating partitions of a cohort (module docstring).

    Parameters
    ----------
    config : mapping or YAML path
        A run config whose ``model`` is a slide model and whose ``data`` is ``grid-crops``
        (``root``, ``labels``, ``task``, ``crop`` ...); ``data.splits`` is set per round.
    out : path
        Folder for the runs and tables (``seed-S/fold-F/`` run folders).
    folds : int
        Partitions (the paper's 4): each round tests one, validates on the next, trains on the rest.
    seeds : ints
        Training seeds (weight initialisations and data order); the partitions stay the same.
    partition_seed : int
        Seed of the label-stratified partitions.
    crops, dihedral : int, bool
        Test-time crops and dihedral averaging (:func:`histolatent.embed.predict_grid`).
    overrides : list of "a.b=value"
        Applied to ``config`` first.
    """
    raw, source = slide_run_config(config, overrides)
    data = raw["data"]
    task = data.get("task", "binary")
    if int(folds) < 3:
        raise InputError(f"folds: expected at least 3 (train / validation / test), got {folds}")
    if not seeds:
        raise InputError("seeds: give at least one training seed")
    labels = read_slide_labels(data["labels"], task=task)
    stores = find_grid_stores(data["root"])
    truth = dict(zip(labels["slide_id"], labels["label"], strict=True))
    unlabelled = sorted(set(stores) - set(truth))
    if unlabelled:
        raise InputError(f"labels {data['labels']!r}: no label for the grid(s) {unlabelled[:10]} in {data['root']!r}")
    missing = sorted(set(truth) - set(stores))
    if missing:
        raise InputError(f"{data['root']!r}: no grid store for the labelled slide(s) {missing[:10]}")
    ids = sorted(stores)
    parts = slide_partitions(ids, [truth[s] for s in ids], n=int(folds), seed=partition_seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "partitions.json", json.dumps({"partition_seed": partition_seed, "partitions": parts},
                                                          indent=1) + "\n")
    metric = METRICS[task]
    preds, rounds = [], []
    for seed in seeds:
        for f in range(int(folds)):
            splits = fold_splits(parts, f)
            cfg = with_label_scale(raw, [truth[s] for s in splits["train"]])
            cfg["data"]["splits"] = splits
            cfg.setdefault("train", {})["seed"] = int(seed)
            cfg["out"] = None
            run = fit(cfg, out=out / f"seed-{seed}" / f"fold-{f}")
            table = predict_grids(run, [Path(data["root"]) / f"{s}{GRID_SUFFIX}" for s in splits["test"]],
                                  labels=data["labels"], crops=crops, dihedral=dihedral, seed=int(seed))
            table = table.assign(seed=int(seed), fold=f, run=str(run))
            preds.append(table)
            rounds.append({"seed": int(seed), "fold": f, "n_train": len(splits["train"]), "n_val": len(splits["val"]),
                           "n_test": len(splits["test"]),
                           metric: slide_metric(task, table["label"], table["prediction"]), "run": str(run)})
    predictions = pd.concat(preds, ignore_index=True)
    predictions = predictions[["slide_id", "label", "prediction", "std", "views", "seed", "fold", "model", "run"]]
    per_seed = {int(s): slide_metric(task, g["label"], g["prediction"]) for s, g in predictions.groupby("seed")}
    fold_table = pd.DataFrame(rounds)
    summary = {"metric": metric, "task": task, "model": raw["model"]["name"], "folds": int(folds),
               "seeds": [int(s) for s in seeds], "n_slides": len(ids), "per_seed": per_seed,
               "mean": _mean(per_seed.values()), "sd": _sd(per_seed.values()),
               "fold_mean": _mean(fold_table[metric]), "fold_sd": _sd(fold_table[metric]), "source": source}
    write_table(predictions, out / "predictions.parquet")
    write_table(fold_table, out / "folds.csv")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return SlideCV(predictions, fold_table, summary, parts, out)
