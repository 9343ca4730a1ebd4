"""Fine-tune a pretrained encoder on few labels: DRL's transfer protocol (papers/drl_*.txt §4.C).

:func:`finetune` takes a pretext run (``drl``, ``dim`` or any model whose VGG encoder is
named ``backbone``), builds the task network of the same backbone (``vgg-classifier`` for
``classify``, ``vgg-segmenter`` for ``segment``; the Feature Enhance Module and the pretext
heads are not transferred), copies the encoder's weights into it (``train.init_from``; or
leaves it randomly initialised, ``init="random"``, the paper's baseline) and trains the whole
network through :func:`histolatent.train.fit` on a stratified, seeded fraction of the labels
(``data.label_fraction``, ``data.label_seed``). It then scores the held-out test split:
accuracy (classify), or GLaS object F1, object Dice and object Hausdorff (segment; predicted
glands are the 4-connected components of the foreground), and writes them to
``finetune.json`` in the run folder.

Data: a PCam folder (``classify``) or a GLaS folder (``segment``) in the official layouts,
or any data entry (``{"name": ..., ...}``) of a registered labelled data set. SynthPath writes
both layouts (:func:`histolatent.synth.write_pcam`, :func:`histolatent.synth.write_glas`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from histolatent.datasets import create_dataset
from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic
from histolatent.metrics.glas import glas_scores
from histolatent.models import load_model
from histolatent.train import fit

__all__ = ["FinetuneResult", "evaluate_classifier", "evaluate_segmenter", "finetune", "parse_label_fraction"]

MODELS = {"classify": "vgg-classifier", "segment": "vgg-segmenter"}
DATASETS = {"classify": "pcam", "segment": "glas"}
#: backbone options copied from the pretext model's config
BACKBONE = ("widths", "convs", "batch_norm", "in_channels", "mpp")
RESULT = "finetune.json"


def parse_label_fraction(labels: float | str) -> float:
    """``0.01``, ``"0.01"`` or ``"1%"`` -> 0.01; must lie in (0, 1].

    >>> parse_label_fraction("1%"), parse_label_fraction("0.1%"), parse_label_fraction(1)
    (0.01, 0.001, 1.0)
    """
    text = str(labels).strip()
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"labels {labels!r}: expected a fraction (0.01) or a percentage (1%)") from None
    if not 0 < value <= 1:
        raise InputError(f"labels {labels!r}: the fraction must lie in (0, 1] (0.01 or 1%)")
    return round(value, 12)


@dataclass(frozen=True)
class FinetuneResult:
    """A fine-tuning run and its test scores."""

    run: Path
    task: str
    label_fraction: float
    n_labelled: int
    init: str
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run": str(self.run)}


def _pretext_config(run: str | os.PathLike) -> dict[str, Any]:
    path = Path(run) / "model.json"
    if not path.is_file():
        raise InputError(f"run {str(run)!r}: no model.json; not a finished histolatent run")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        config = dict(meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{str(path)!r}: not a model.json written by histolatent ({err})") from None
    missing = [k for k in ("widths", "convs") if k not in config]
    if missing:
        raise InputError(f"run {str(run)!r}: model {meta.get('name')!r} has no VGG backbone "
                         f"(no {', '.join(missing)} in its config); fine-tuning needs drl, dim or another VGG model")
    return config


def _data_entry(task: str, data: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, Mapping):
        if "name" not in data:
            raise InputError("data: a data entry needs a 'name' (pcam, glas, ...)")
        return dict(data)
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"data {str(data)!r}: not a folder (a PCam or GLaS folder, or a data entry)")
    return {"name": DATASETS[task], "root": str(root)}


def finetune(run: str | os.PathLike, *, task: Literal["classify", "segment"] = "classify",
             labels: float | str = 0.01, data: str | os.PathLike | Mapping[str, Any], seed: int = 0,
             label_seed: int | None = None, init: Literal["pretrained", "random"] = "pretrained",
             head: Literal["linear", "mlp"] = "linear", steps: int = 500, batch_size: int = 64,
             lr: float | None = None, out: str | os.PathLike | None = None,
             overrides: list[str] | None = None) -> FinetuneResult:
    """Fine-tune the encoder of ``run`` on a fraction of the labels; score the test split.

    Parameters
    ----------
    run : path
        The pretrained (pretext) run; with ``init="random"`` only its backbone shape is used.
    task : {"classify", "segment"}
        A linear/MLP head on the pooled last block, or a U-Net decoder on the blocks.
    labels : float or str
        Fraction of the train split's labels (``0.01`` or ``"1%"``; images for ``segment``).
    data : path or mapping
        A PCam folder (classify), a GLaS folder (segment) or a data entry of a registered set.
    seed : int
        Training seed (head initialisation, batch order, augmentation).
    label_seed : int, optional
        Seed of the stratified label subset (default: ``seed``).
    init : {"pretrained", "random"}
        Start from the pretext encoder, or from random weights (the baseline).
    head, steps, batch_size, lr
        Classifier head; optimisation steps; batch size (cut to the labelled items); Adam's
        rate (default the model's: 1e-3).
    out : path, optional
        Run folder (default ``runs/<model>-<time>``).
    overrides : list of "a.b=value"
        More run-config overrides (``model.image_size=...``, ``data.tile_px=...``, ``train.precision=bf16``).

    Returns
    -------
    FinetuneResult
        The run folder, the label fraction, the number of labelled items and the test scores.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from histolatent.io.pcam import write_pcam_split
    >>> from histolatent.train import fit
    >>> tmp = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for split, n in (("train", 40), ("valid", 8), ("test", 8)):
    ...     y = np.arange(n) % 2
    ...     x = (rng.integers(0, 100, (n, 32, 32, 3)) + 120 * y[:, None, None, None]).astype(np.uint8)
    ...     _ = write_pcam_split(tmp, split, x, y)
    >>> tiny = {"name": "drl", "image_size": 32, "widths": [4, 8], "convs": [1, 1], "local_block": 1,
    ...         "fem_channels": 2, "disc_channels": [8, 8, 8], "prior_hidden": [8]}
    >>> pre = fit({"model": tiny, "data": {"name": "pcam", "root": tmp},
    ...            "train": {"steps": 2, "batch_size": 8, "progress": False}}, out=f"{tmp}/drl")
    >>> r = finetune(pre, labels="50%", data=tmp, steps=3, batch_size=8, out=f"{tmp}/ft")
    >>> r.n_labelled, sorted(r.scores)
    (20, ['accuracy'])
    """
    if task not in MODELS:
        raise InputError(f"task {task!r}: expected one of {sorted(MODELS)}")
    if init not in ("pretrained", "random"):
        raise InputError(f"init {init!r}: expected 'pretrained' or 'random'")
    if steps < 1 or batch_size < 1:
        raise InputError(f"steps {steps} and batch_size {batch_size} must be >= 1")
    fraction = parse_label_fraction(labels)
    pretext = _pretext_config(run)
    model: dict[str, Any] = {"name": MODELS[task], **{k: pretext[k] for k in BACKBONE if k in pretext}}
    if task == "classify":
        model["head"] = head
        model["image_size"] = pretext.get("image_size", 96)
    if lr is not None:
        model["lr"] = lr
    entry = {**_data_entry(task, data), "label_fraction": fraction,
             "label_seed": seed if label_seed is None else label_seed}
    if task == "segment" and "mpp" in pretext:
        entry.setdefault("mpp", pretext["mpp"])
    train = {"steps": steps, "batch_size": batch_size, "seed": seed, "progress": False, "val_every": 0,
             "init_from": str(Path(run)) if init == "pretrained" else None}
    raw = {"model": model, "data": entry, "train": train}
    from histolatent.config import apply_overrides

    raw = apply_overrides(raw, overrides or [])
    opts = {k: v for k, v in raw["data"].items() if k != "name"}
    n_labelled = len(create_dataset(raw["data"]["name"], split="train", seed=seed, **opts))
    raw["train"]["batch_size"] = min(int(raw["train"]["batch_size"]), n_labelled)
    run_dir = fit(raw, out=out)
    net = load_model(run_dir)
    test = create_dataset(raw["data"]["name"], split="test", seed=seed, **opts)
    scores = evaluate_classifier(net, test) if task == "classify" else evaluate_segmenter(net, test)
    result = FinetuneResult(run=Path(run_dir), task=task, label_fraction=fraction, n_labelled=n_labelled,
                            init=init, scores=scores)
    write_text_atomic(Path(run_dir) / RESULT, json.dumps(result.to_dict(), indent=2) + "\n")
    return result


@torch.no_grad()
def evaluate_classifier(model, dataset, *, batch_size: int = 256) -> dict[str, float]:
    """``{"accuracy"}`` of ``model.predict`` over every item of ``dataset`` (``image``, ``label``)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    right = total = 0
    model.eval()
    for batch in loader:
        pred = model.predict(batch["image"]).argmax(1).cpu()
        right += int((pred == batch["label"].view(-1)).sum())
        total += len(pred)
    return {"accuracy": right / total}


@torch.no_grad()
def evaluate_segmenter(model, dataset) -> dict[str, float]:
    """Mean GLaS object F1, Dice and Hausdorff over the whole images of ``dataset`` (``full(k)``)."""
    import cv2

    model.eval()
    per = []
    for k in range(len(dataset.index)):
        rgb, inst = dataset.full(k)
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]
        fg = (model.predict(x)[0].argmax(0) > 0).cpu().numpy().astype(np.uint8)
        _, pred = cv2.connectedComponents(fg, connectivity=4)
        per.append(glas_scores(pred, inst))
    return {key: float(np.mean([p[key] for p in per])) for key in per[0]}
