"""Demo stage: a small InfoGAN (paper 4) on SynthPath nuclei, scored on held-out cells.

A minute-sized version of ``benchmarks/infogan.py``: the model, its Wasserstein / gradient
penalty curves, generated cells per class (Fig. 7C), held-out accuracy against k-means on
pixels, and the nuclei of the tiatoolbox target image coloured by class (Fig. 7B).
"""

from __future__ import annotations

from histolatent.machine import torch_threads
from histolatent.report import Section

TYPES = ["epithelial", "lymphocyte", "fibroblast"]


def infogan(ctx) -> Section:
    """Train a small InfoGAN, score it on held-out cells, classify real nuclei."""
    import numpy as np
    from PIL import Image

    from histolatent import samples
    from histolatent.datasets import create_dataset
    from histolatent.downstream.kmeans_baselines import kmeans_baseline, pixel_features
    from histolatent.embed import classify_images
    from histolatent.metrics.classification import classification_report
    from histolatent.nuclei.patches import PatchSpec, extract_patches
    from histolatent.nuclei.pipeline import cells_from_image
    from histolatent.train import RunConfig, fit, load_model
    from histolatent.viz.gan import (
        class_grid_figure,
        cluster_overlay,
        confusion_figure,
        wgan_curves,
    )

    with torch_threads(1):  # a small model on a shared CPU: one thread is fastest
        size = 32
        data = {"name": "synth-nuclei-crops", "size_px": size, "mpp": 0.5, "types": TYPES, "stain_jitter": 1.0,
                "sites": 2, "n_train": 300 if ctx.quick else 600, "n_val": 20, "n_test": 150 if ctx.quick else 300}
        steps = 15 if ctx.quick else 60
        # the benchmark's CPU settings (benchmarks/infogan.py), far fewer steps
        model = {"name": "infogan", "image_size": size, "arch": "dcgan", "g_channels": 16, "d_channels": 32,
                 "z_dim": 8, "conditional_bn": True, "augment_stain": 0.2, "lr_generator": 6e-4,
                 "lr_critic": 6e-4, "lr_q": 1.2e-3}
        cfg = RunConfig(model=model, data=data, train={"steps": steps, "batch_size": 80, "seed": ctx.seed,
                                                       "precision": "bf16-mixed", "log_every": 5, "progress": False})
        run = fit(cfg, out=ctx.runs / "infogan-nuclei")
        gan = load_model(run)
        opts = {k: v for k, v in data.items() if k != "name"}
        train = create_dataset("synth-nuclei-crops", split="train", **opts)
        test = create_dataset("synth-nuclei-crops", split="test", **opts)
        cls, _ = classify_images(gan, test.images)
        y = test.labels.numpy()
        rep = classification_report(y, cls, n_clusters=3, class_names=TYPES)
        km = kmeans_baseline(pixel_features(train.images_uint8), pixel_features(test.images_uint8), y, n_clusters=3,
                             seed=ctx.seed, class_names=TYPES)
        grid = class_grid_figure(gan, ctx.figures / "infogan-classes.png", n_rows=5, seed=ctx.seed)
        curves = wgan_curves(run / "metrics.csv", ctx.figures / "infogan-wgan.png")
        conf = confusion_figure(np.asarray(rep["confusion"]), ctx.figures / "infogan-confusion.png",
                                class_names=TYPES, title="held-out test cells")
        rgb = np.asarray(Image.open(samples.path("target-image")).convert("RGB"))[:400, :400]
        cells = cells_from_image(rgb, mpp=0.5, method="watershed", slide_id="target-image")
        patches, kept = extract_patches(rgb, cells[["x", "y"]].to_numpy(), PatchSpec(size, 0.5), mpp=0.5,
                                        edge="reflect")
        real_cls, _ = classify_images(gan, patches)
        overlay = cluster_overlay(rgb, cells["x"].to_numpy()[kept], cells["y"].to_numpy()[kept], real_cls,
                                  ctx.figures / "infogan-target.png", radius_px=7.0,
                                  title="tiatoolbox target (crop): nuclei coloured by InfoGAN class")
    rows = []
    for name, r in (("InfoGAN q(c|x)", rep), ("k-means on pixels", km)):
        row = {"method": name, "accuracy": r["accuracy"]}
        row.update({f"F1 {t}": float(r["f1"][j]) for j, t in enumerate(TYPES)})
        rows.append(row)
    tables = [("This run: held-out accuracy and per-class F1", rows)]
    figures = [(grid, "Generated cells: rows = fixed z, columns = class c (Fig. 7C)."),
               (curves, "Wasserstein estimate, gradient penalty, critic gradient norm, MI term."),
               (conf, "Confusion matrix on held-out cells."),
               (overlay, "Real nuclei (LoG + watershed) of the target image coloured by class.")]
    tables += _benchmark_table(figures)
    text = (f"A small InfoGAN (WGAN-GP, λ = 10, 5 critic steps per generator step, 3-class code, MI weight 1) "
            f"trained for {steps} generator steps on {data['n_train']} SynthPath nucleus crops (3 types, random "
            f"rotation, 2 stains), scored on {data['n_test']} held-out cells after Hungarian matching. A run this "
            f"short shows the pipeline, not the method's accuracy: see benchmarks/results/infogan.json. Run "
            f"folder: {run}.")
    return Section("InfoGAN nucleus classes (paper 4)", text=text, figures=figures, tables=tables)


def _benchmark_table(figures: list) -> list:
    """The last saved benchmark (benchmarks/results/infogan.json), if any: mean ± SD over seeds."""
    import json

    from histolatent.bench import results_dir

    path = results_dir() / "infogan.json"
    if not path.is_file():
        return []
    f = json.loads(path.read_text())["figures"]
    rows = []
    for key, name in (("infogan", "InfoGAN q(c|x)"), ("kmeans_pixels", "k-means on pixels"),
                      ("kmeans_features", "k-means on autoencoder z")):
        row = {"method": name, "accuracy": f"{f[f'{key}_accuracy']:.3f} ± {f[f'{key}_accuracy_sd']:.3f}"}
        row.update({f"F1 {t}": f"{f[f'{key}_f1_{t}']:.3f}" for t in TYPES})
        rows.append(row)
    png = results_dir() / "infogan" / "infogan-grids-over-training.png"
    if png.is_file():
        figures.append((png, "Benchmark, seed 0: generated cells per class during training."))
    return [(f"Benchmark ({f.get('seeds')} seeds x {f.get('steps_per_seed')} steps, held-out test)", rows)]
