"""DRL's transfer protocol on SynthPath data (papers/drl_deformation-representation-learning.txt §4).

One run, side by side, everything seeded and every size fixed up front (``SIZES``; nothing is
chosen on the test split that is scored):

1. **Data**, written once into a work folder: a PCam-layout folder of 96 px SynthPath patches
   at 0.972 µm/px, label tumour when the central 32 px hold lesion
   (:func:`histolatent.synth.write_pcam`; train / valid / test from disjoint slides), and a
   GLaS-layout folder of gland tiles at the same scale (:func:`histolatent.synth.write_glas`).
2. **Pretraining** through ``fit`` on the train split's images (labels unused), the shipped
   CPU presets with only the data, the step count and the loader changed: DRL
   (``configs/drl-cpu.yaml``: LSH + hard GCH + FEM, λ 0.5), Deep InfoMax
   (``configs/dim-cpu.yaml``), the VGG-VAE (``configs/vae-vgg-cpu.yaml``), all on the same
   16-32-64-64 VGG; and the ablations of Table IV, DRL with ``gch: none`` (LSH only),
   ``gch: soft`` and ``fem: false``. Random initialisation is the fourth method.
3. **Low-label classification** (Table III): :func:`histolatent.downstream.finetune` of the whole
   network on 0.1 / 1 / 10 / 100 % of the train labels (stratified subset of seed ``s``,
   fine-tuning seed ``s``, ``s`` in 0..seeds-1), accuracy on the test split; mean ± SD over
   seeds; DRL vs DIM paired over (seed, fraction): ``scipy.stats.ttest_rel`` and ``wilcoxon``.
4. **Linear separability** (Fig. 4a): each block's spatial mean (``encode()`` parts ``conv2`` ..
   ``conv4``) of the frozen encoder, :class:`~histolatent.downstream.probes.LogisticProbe` (C
   chosen on the valid split), test accuracy; ± SD over stratified bootstrap resamples of the
   train split.
5. **Segmentation transfer** (Table I): a U-Net decoder on each encoder (``finetune(task=
   "segment")``), all train tiles, GLaS object F1, object Dice and object Hausdorff on the test
   tiles; mean ± SD over seeds.
6. **Ablations** (Table IV): classification at 1 % labels and segmentation, same seeds.
7. **Speed**: DRL, DIM and VGG-VAE pretraining steps in fp32 and bf16-mixed, images/s of the
   engine's compute time, measured one after the other in this run (``machine.cpu_native_bf16``
   says whether bf16 is native here; emulated bf16 is slow).
8. **Figures** next to the JSON: ``drl/low_label.png`` (accuracy vs label fraction) and
   ``drl/deformation_tsne.png`` (t-SNE of DRL's global embedding F_G of test images and of
   their deformed copies, without and with GCH: the paper's Fig. 5).

Quick mode (``--quick``): tiny sizes, 2 seeds, written to a temporary folder only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from histolatent.bench import check_result_target, save_result

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SEED = 0
FRACTIONS = (0.001, 0.01, 0.1, 1.0)
#: pretrained methods -> (shipped config, model overrides)
PRETEXT = {"drl": ("drl-cpu", {}), "dim": ("dim-cpu", {}), "vae": ("vae-vgg-cpu", {})}
#: Table IV's rows that need their own pretraining ("lsh_hard" is the DRL run itself)
ABLATIONS = {"lsh_only": {"model.gch": "none"}, "lsh_soft": {"model.gch": "soft"}, "no_fem": {"model.fem": False}}
SIZES = {
    False: dict(pcam=(2048, 256, 400), pcam_slides=8, slide_px=2048, glas=(24, 12), glas_px=192,
                pretrain_steps=500, pretrain_batch=8, ft_steps=40, ft_batch=32, seeds=5,
                seg_steps=60, seg_batch=8, seg_tile=96, seg_crops=8, seg_seeds=5, probe_resamples=5,
                speed_steps=(20, 8), tsne_n=150),
    True: dict(pcam=(160, 48, 64), pcam_slides=2, slide_px=1024, glas=(4, 2), glas_px=96,
               pretrain_steps=12, pretrain_batch=8, ft_steps=4, ft_batch=16, seeds=2,
               seg_steps=3, seg_batch=4, seg_tile=64, seg_crops=2, seg_seeds=1, probe_resamples=2,
               speed_steps=(4, 2), tsne_n=30),
}


def pct_key(fraction: float) -> str:
    """0.001 -> "0p1pct", 0.01 -> "1pct"."""
    return f"{100 * fraction:g}".replace(".", "p") + "pct"


def write_data(work: Path, s: dict) -> tuple[Path, Path, dict]:
    from histolatent.synth import write_glas, write_pcam

    t = time.perf_counter()
    n_train, n_valid, n_test = s["pcam"]
    pcam = write_pcam(work / "pcam", n_train=n_train, n_valid=n_valid, n_test=n_test, seed=SEED,
                      slides=s["pcam_slides"], slide_px=s["slide_px"])
    t_pcam = time.perf_counter() - t
    glas = write_glas(work / "glas", n_train=s["glas"][0], n_test=s["glas"][1], seed=SEED, size_px=s["glas_px"],
                      mpp=0.972)
    info = json.loads((pcam / "synth.json").read_text())["splits"]
    return pcam, glas, {"pcam_seconds": round(t_pcam, 1), "glas_seconds": round(time.perf_counter() - t - t_pcam, 1),
                        "pcam_splits": info}


def pretext_config(name: str, pcam: Path, s: dict, overrides: dict | None = None, *, steps: int | None = None,
                   precision: str = "32-true") -> dict:
    """A shipped CPU preset on the PCam train split's images, with the benchmark's steps and loader."""
    from histolatent.config import load_yaml

    raw = load_yaml(CONFIGS / f"{name}.yaml")
    for key, value in (overrides or {}).items():
        *path, last = key.split(".")
        node = raw
        for p in path:
            node = node[p]
        node[last] = value
    raw["data"] = {"name": "pcam", "root": str(pcam)}
    raw["train"].update(steps=steps or s["pretrain_steps"], batch_size=s["pretrain_batch"], seed=SEED,
                        num_workers=0, val_every=0, checkpoint_every=0, progress=False, precision=precision,
                        log_every=max(1, (steps or s["pretrain_steps"]) // 5))
    return raw


def pretrain(work: Path, pcam: Path, s: dict) -> tuple[dict[str, Path], dict]:
    from histolatent.train import fit

    runs, info = {}, {}
    jobs = {m: cfg for m, cfg in PRETEXT.items()}
    jobs.update({a: ("drl-cpu", o) for a, o in ABLATIONS.items()})
    for method, (config, overrides) in jobs.items():
        t = time.perf_counter()
        runs[method] = fit(pretext_config(config, pcam, s, overrides), out=work / "pretext" / method)
        info[method] = {"config": config, "overrides": overrides, "steps": s["pretrain_steps"],
                        "seconds": round(time.perf_counter() - t, 1)}
        print(f"pretrained {method}: {info[method]['seconds']} s", flush=True)
    return runs, info


def classify(work: Path, runs: dict[str, Path], pcam: Path, s: dict, methods: dict[str, tuple[str, str]],
             fractions: tuple[float, ...]) -> tuple[dict, list[float]]:
    """``{method: {fraction: [accuracy per seed]}}`` and the seconds of each fine-tune."""
    from histolatent.downstream.finetune import finetune

    out: dict[str, dict[float, list[float]]] = {}
    seconds = []
    for method, (run_name, init) in methods.items():
        out[method] = {}
        for f in fractions:
            accs = []
            for seed in range(s["seeds"]):
                t = time.perf_counter()
                r = finetune(runs[run_name], task="classify", labels=f, data=pcam, seed=seed, init=init,
                             steps=s["ft_steps"], batch_size=s["ft_batch"],
                             out=work / "ft" / f"{method}-{pct_key(f)}-s{seed}")
                seconds.append(time.perf_counter() - t)
                accs.append(r.scores["accuracy"])
                shutil.rmtree(r.run, ignore_errors=True)
            out[method][f] = accs
            print(f"classify {method} {pct_key(f)}: {np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}", flush=True)
    return out, seconds


def segment(work: Path, runs: dict[str, Path], glas: Path, s: dict,
            methods: dict[str, tuple[str, str]]) -> tuple[dict, list[float]]:
    """``{method: {metric: [score per seed]}}`` of gland segmentation transfer."""
    from histolatent.downstream.finetune import finetune

    out, seconds = {}, []
    opts = [f"data.tile_px={s['seg_tile']}", "data.source_mpp=0.972", f"data.crops_per_image={s['seg_crops']}"]
    for method, (run_name, init) in methods.items():
        per: dict[str, list[float]] = {}
        for seed in range(s["seg_seeds"]):
            t = time.perf_counter()
            r = finetune(runs[run_name], task="segment", labels=1.0, data=glas, seed=seed, init=init,
                         steps=s["seg_steps"], batch_size=s["seg_batch"], out=work / "seg" / f"{method}-s{seed}",
                         overrides=opts)
            seconds.append(time.perf_counter() - t)
            for k, v in r.scores.items():
                per.setdefault(k, []).append(v)
            shutil.rmtree(r.run, ignore_errors=True)
        out[method] = per
        print(f"segment {method}: object Dice {np.mean(per['object_dice']):.3f}", flush=True)
    return out, seconds


def pcam_arrays(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from histolatent.io.pcam import PCamSplit

    src = PCamSplit(root, split)
    return np.stack([src.image(i) for i in range(len(src))]), np.asarray(src.labels, np.int64)


def linear_separability(runs: dict[str, Path], pcam: Path, s: dict, methods: dict[str, tuple[str, str]]) -> dict:
    """``{method: {convB: [test accuracy per bootstrap resample]}}`` of frozen-encoder linear probes."""
    import torch

    from histolatent.downstream.probes import Features, LogisticProbe, stratified_bootstrap
    from histolatent.embed import encode_images
    from histolatent.models import create_model, load_model

    data = {split: pcam_arrays(pcam, name) for split, name in (("train", "train"), ("val", "valid"),
                                                                 ("test", "test"))}
    parts = ["conv2", "conv3", "conv4"]
    out = {}
    for method, (run_name, init) in methods.items():
        if init == "random":
            cfg = json.loads((runs[run_name] / "model.json").read_text())["config"]
            torch.manual_seed(SEED)
            model = create_model("vgg-classifier", **{k: cfg[k] for k in ("image_size", "widths", "convs",
                                                                             "batch_norm", "in_channels")})
        else:
            model = load_model(runs[run_name])
        codes = {k: encode_images(model, x, parts=parts, batch_size=128) for k, (x, _) in data.items()}
        out[method] = {}
        for part in parts:
            accs = []
            for r in range(s["probe_resamples"]):
                idx = stratified_bootstrap(data["train"][1], np.random.default_rng([SEED, r]))
                p = LogisticProbe().fit(Features(codes["train"][part][idx].astype(np.float64)), data["train"][1][idx],
                                        Features(codes["val"][part].astype(np.float64)), data["val"][1])
                pred = p.classes_[p.predict_proba(Features(codes["test"][part].astype(np.float64))).argmax(1)]
                accs.append(float((pred == data["test"][1]).mean()))
            out[method][part] = accs
        print(f"linear {method}: " + ", ".join(f"{p} {np.mean(a):.3f}" for p, a in out[method].items()), flush=True)
    return out


def speed(work: Path, pcam: Path, s: dict) -> dict:
    """Images/s of the engine's compute time for each pretext model, fp32 then bf16-mixed."""
    from histolatent.train import fit

    out = {}
    fp32_steps, bf16_steps = s["speed_steps"]
    for method, (config, overrides) in PRETEXT.items():
        out[method] = {}
        for precision, steps in (("32-true", fp32_steps), ("bf16-mixed", bf16_steps)):
            raw = pretext_config(config, pcam, s, overrides, steps=steps, precision=precision)
            run = fit(raw, out=work / "speed" / f"{method}-{precision}")
            timing = json.loads((run / "model.json").read_text())["timing"]
            out[method][precision] = {"images_per_s": raw["train"]["batch_size"] / timing["compute_s_per_step"],
                                      "steps": timing["steps"], "compute_s_per_step": timing["compute_s_per_step"]}
        print(f"speed {method}: fp32 {out[method]['32-true']['images_per_s']:.1f} img/s, "
              f"bf16 {out[method]['bf16-mixed']['images_per_s']:.1f} img/s", flush=True)
    return out


def tsne_panels(runs: dict[str, Path], pcam: Path, s: dict) -> dict:
    """DRL's F_G of test images and of their deformed copies, without GCH (LSH only) and with it."""
    import torch

    from histolatent.models import load_model

    x, _ = pcam_arrays(pcam, "test")
    x = torch.from_numpy(x[: s["tsne_n"]]).permute(0, 3, 1, 2).float() / 255.0
    panels = {}
    for title, name in (("DRL without GCH (LSH only)", "lsh_only"), ("DRL (LSH + hard GCH)", "drl")):
        model = load_model(runs[name])
        with torch.no_grad():
            x_hat = model.deform(x, torch.Generator().manual_seed(SEED))
            panels[title] = (model.encode(x)["f_global"].numpy(), model.encode(x_hat)["f_global"].numpy())
    return panels


def mean_sd(v: list[float]) -> tuple[float, float]:
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def finite_mean_sd(v: list[float]) -> tuple[float | None, float | None]:
    """Mean ± SD of the finite values (a seed whose test tiles hold no predicted gland has an
    infinite object Hausdorff; the count of those is reported beside it); None when none is finite."""
    finite = [x for x in v if np.isfinite(x)]
    return mean_sd(finite) if finite else (None, None)


def paired_tests(a: list[float], b: list[float]) -> dict:
    from scipy.stats import ttest_rel, wilcoxon

    d = np.asarray(a) - np.asarray(b)
    out = {"n_pairs": len(d), "mean_difference": float(d.mean())}
    out["ttest_p"] = float(ttest_rel(a, b).pvalue) if np.any(d != d[0]) else float("nan")
    out["wilcoxon_p"] = float(wilcoxon(a, b).pvalue) if np.any(d != 0) else float("nan")
    return out


def main(quick: bool = False) -> dict:
    import torch

    from histolatent.machine import cpu_native_bf16
    from histolatent.viz.transfer import deformation_embedding_figure, low_label_figure

    out_dir = Path(tempfile.mkdtemp(prefix="drl-quick-")) if quick else None
    check_result_target("drl", out_dir=out_dir)
    results = out_dir if out_dir is not None else Path(os.environ.get("HISTOLATENT_BENCH_RESULTS",
                                                                      "benchmarks/results"))
    torch.set_num_threads(1)
    s = SIZES[quick]
    work = Path(tempfile.mkdtemp(prefix="drl-bench-"))
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    try:
        pcam, glas, data_info = write_data(work, s)
        timing["data"] = time.perf_counter() - t0
        t = time.perf_counter()
        runs, pre_info = pretrain(work, pcam, s)
        timing["pretrain"] = time.perf_counter() - t
        main4 = {"drl": ("drl", "pretrained"), "dim": ("dim", "pretrained"), "vae": ("vae", "pretrained"),
                 "random_init": ("drl", "random")}
        t = time.perf_counter()
        low, ft_seconds = classify(work, runs, pcam, s, main4, FRACTIONS)
        timing["classify"] = time.perf_counter() - t
        t = time.perf_counter()
        abl, abl_seconds = classify(work, runs, pcam, s, {a: (a, "pretrained") for a in ABLATIONS}, (0.01,))
        timing["ablation_classify"] = time.perf_counter() - t
        t = time.perf_counter()
        seg_methods = {**main4, **{a: (a, "pretrained") for a in ABLATIONS}}
        seg, seg_seconds = segment(work, runs, glas, s, seg_methods)
        timing["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        lin = linear_separability(runs, pcam, s, main4)
        timing["linear"] = time.perf_counter() - t
        t = time.perf_counter()
        spd = speed(work, pcam, s)
        timing["speed"] = time.perf_counter() - t
        t = time.perf_counter()
        fig_dir = results / "drl"
        low_label_figure({m.replace("_", " "): v for m, v in low.items()}, fig_dir / "low_label.png",
                         title="PCam-like SynthPath, fine-tuned end to end")
        deformation_embedding_figure(tsne_panels(runs, pcam, s), fig_dir / "deformation_tsne.png", seed=SEED)
        timing["figures"] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures: dict = {}
    for m, by_f in low.items():
        for f, accs in by_f.items():
            figures[f"{m}_acc_{pct_key(f)}"], figures[f"{m}_acc_{pct_key(f)}_sd"] = mean_sd(accs)
    drl_all = [a for f in FRACTIONS for a in low["drl"][f]]
    dim_all = [a for f in FRACTIONS for a in low["dim"][f]]
    test = paired_tests(drl_all, dim_all)
    figures["drl_vs_dim_mean_difference"] = test["mean_difference"]
    figures["drl_vs_dim_ttest_rel_p"] = test["ttest_p"]
    figures["drl_vs_dim_wilcoxon_p"] = test["wilcoxon_p"]
    figures["drl_beats_random_by_0p10_at_1pct"] = figures["drl_acc_1pct"] >= figures["random_init_acc_1pct"] + 0.10
    figures["drl_beats_dim_at_1pct"] = figures["drl_acc_1pct"] > figures["dim_acc_1pct"]
    for m, parts in lin.items():
        for p, accs in parts.items():
            figures[f"linear_{m}_{p}_acc"], figures[f"linear_{m}_{p}_acc_sd"] = mean_sd(accs)
    for m, per in seg.items():
        for k, v in per.items():
            figures[f"seg_{m}_{k}"], figures[f"seg_{m}_{k}_sd"] = finite_mean_sd(v)
        figures[f"seg_{m}_object_hausdorff_n_inf"] = int(np.sum(~np.isfinite(per["object_hausdorff"])))
    rows = {"random_init": low["random_init"][0.01], "lsh_only": abl["lsh_only"][0.01],
            "lsh_hard": low["drl"][0.01], "lsh_soft": abl["lsh_soft"][0.01], "no_fem": abl["no_fem"][0.01]}
    for row, accs in rows.items():
        figures[f"ablation_{row}_acc_1pct"], figures[f"ablation_{row}_acc_1pct_sd"] = mean_sd(accs)
        seg_row = seg["drl" if row == "lsh_hard" else row]
        for k in ("object_dice", "f1", "object_hausdorff"):
            figures[f"ablation_{row}_{k}"] = finite_mean_sd(seg_row[k])[0]
    for m, by_p in spd.items():
        figures[f"pretrain_{m}_fp32_images_per_s"] = by_p["32-true"]["images_per_s"]
        figures[f"pretrain_{m}_bf16_images_per_s"] = by_p["bf16-mixed"]["images_per_s"]
        figures[f"pretrain_{m}_bf16_speedup"] = by_p["bf16-mixed"]["images_per_s"] / by_p["32-true"]["images_per_s"]
    figures["cpu_native_bf16"] = cpu_native_bf16()
    seconds = time.perf_counter() - t0
    figures["seconds"] = seconds
    details = {
        "quick": quick, "seed": SEED, "sizes": s, "fractions": list(FRACTIONS), "data": data_info,
        "pretraining": pre_info, "low_label": {m: {pct_key(f): v for f, v in by.items()} for m, by in low.items()},
        "ablation_classify_1pct": {m: by[0.01] for m, by in abl.items()}, "drl_vs_dim": test,
        "linear_separability": lin, "segmentation": seg, "speed": spd,
        "seconds": {k: round(v, 1) for k, v in timing.items()},
        "finetune_seconds_mean": {"classify": float(np.mean(ft_seconds + abl_seconds)),
                                  "segment": float(np.mean(seg_seconds))},
        "figures_written": ["drl/low_label.png", "drl/deformation_tsne.png"],
    }
    n_ft = len(ft_seconds)
    notes = (("QUICK MODE: tiny sizes; the numbers say nothing about the methods. " if quick else "") +
             f"SynthPath PCam-like folder {s['pcam']} train/valid/test 96 px patches at 0.972 µm/px from "
             f"{s['pcam_slides']} slides of {s['slide_px']} px per split; GLaS-like folder {s['glas']} train/test "
             f"tiles of {s['glas_px']} px at 0.972 µm/px. Pretraining: the CPU presets (VGG 16-32-64-64, one conv "
             f"a block) for {s['pretrain_steps']} steps of batch {s['pretrain_batch']} on the train images, one "
             f"pretraining seed (0). Classification fine-tuning: {n_ft} runs, whole network, Adam 1e-3, "
             f"{s['ft_steps']} steps of batch min({s['ft_batch']}, labelled), linear head, flips and quarter turns, "
             f"{s['seeds']} seeds (label subset seed = training seed), test accuracy; DRL vs DIM paired over "
             f"(seed, fraction). Linear probes: frozen encoders, block means, C on valid, {s['probe_resamples']} "
             f"bootstrap resamples of train. Segmentation: U-Net decoder, all train tiles, {s['seg_steps']} steps "
             f"of batch {s['seg_batch']} of {s['seg_tile']} px crops, {s['seg_seeds']} seeds, GLaS object metrics "
             f"on whole test tiles (means over the seeds with a finite value; *_n_inf counts the others; "
             f"the reader's val split is its test split, and nothing is chosen on either). "
             f"DRL is pretrained once, with λ = 0.5 (the paper's classification value), for both tasks. "
             f"Ablations at 1 % labels and on segmentation; lsh_hard is the DRL run. Speed: "
             f"{s['speed_steps'][0]} fp32 and {s['speed_steps'][1]} bf16-mixed steps each, images/s of compute "
             f"time. All sizes were fixed before any test score was seen. Total {seconds / 60:.1f} min.")
    save_result("drl", figures, details=details, notes=notes, out_dir=out_dir)
    if quick:
        print(f"quick result (not for benchmarks/results): {out_dir / 'drl.json'}")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=1))
