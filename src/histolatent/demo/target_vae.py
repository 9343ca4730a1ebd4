"""Demo stage: a small TARGET-VAE run on SynthPath digits(U) through the engine (< 60 s).

Unsupervised pose inference (rotation, translation), the canonical-pose renderings, the latent
map and multi-object detection on a larger canvas. The numbers of a properly trained model are
in ``benchmarks/results/target_vae.json``; this run is a few hundred images long.
"""

from __future__ import annotations

from histolatent.machine import torch_threads
from histolatent.report import Section


def target_vae(ctx) -> Section:
    """Train a tiny TARGET-VAE (P8) on digits(U), then show pose, canonical pose and detections."""

    from histolatent.train import RunConfig, fit

    steps = 40 if ctx.quick else 150
    model_cfg = {"name": "target-vae", "pool": 2, "pool_filter": "binomial", "kernel_size": 14, "padding": 2, "channels": 16,
                 "n_rotations": 8, "z_dim": 2, "fourier_features": 64, "gen_hidden": 64, "t_prior_std": 0.2,
                 "temperature": 0.5, "lr": 2e-3}
    cfg = RunConfig(model=model_cfg, data={"name": "synth-digits", "mode": "U", "n": 4000, "n_eval": 200},
                    train={"steps": steps, "batch_size": 25, "seed": ctx.seed, "precision": "bf16-mixed",
                           "log_every": 10, "progress": False})
    with torch_threads(1):  # small ops on a shared 2-core machine: one thread is faster
        run = fit(cfg, out=ctx.runs / "target-vae-digits")
        return _report(ctx, run, steps)


def _report(ctx, run, steps: int) -> Section:
    import math

    import torch

    from histolatent.metrics.circular import (
        circular_correlation,
        relative_angles,
        translation_correlation,
    )
    from histolatent.metrics.clustering import cluster_accuracy
    from histolatent.synth.digits import multi_digit_canvas, rerender_digits, rotated_digits
    from histolatent.train import load_model
    from histolatent.viz.pose import angle_scatter, canonical_grid, detection_figure, latent_map

    model = load_model(run)

    x_np, table = rotated_digits(200, "U", "test", seed=ctx.seed + 1)
    x = torch.from_numpy(x_np)[:, None]
    # the same digits unrotated (same shift): the rotation score is relative to them (paper §4.2)
    x0 = torch.from_numpy(rerender_digits(table))[:, None]
    with torch.no_grad():
        e, e0 = model.encode(x), model.encode(x0)
    rel = relative_angles(e["theta"].numpy(), e0["theta"].numpy())
    rot = circular_correlation(table["angle"].to_numpy(), rel)
    tx, ty = translation_correlation(e["t"].numpy(), table[["dx", "dy"]].to_numpy())
    acc = cluster_accuracy(e["z"].numpy(), table["label"].to_numpy(), n_init=5)

    figs = []
    p = angle_scatter(table["angle"], rel, ctx.figures / "target_vae_angles.png", labels=table["label"],
                      title=f"predicted vs true rotation (circular corr {rot:.2f})")
    figs.append((p, "Predicted rotation (relative to the unrotated digit) against the true one, by digit (Fig. 2)."))
    with torch.no_grad():
        k = 10
        recon = model.decode(e["z"][:k], e["theta"][:k], e["t"][:k])
        canon = model.decode(e["z"][:k])
    p = canonical_grid(x[:k], recon, canon, ctx.figures / "target_vae_canonical.png")
    figs.append((p, "Inputs, reconstructions at the inferred pose, and the same codes at theta = 0, t = 0."))
    p = latent_map(e["z"], table["label"], ctx.figures / "target_vae_latent.png", title="z (z_dim = 2) by digit")
    figs.append((p, "The rotation- and translation-invariant code z, coloured by digit (Fig. 3)."))
    canvas, truth = multi_digit_canvas(1, 150, (3, 3), "U", "test", seed=ctx.seed)
    objs = model.detect(torch.from_numpy(canvas)[:, None], max_objects=3, threshold=0.01)[0]
    with torch.no_grad():
        zs = torch.stack([o["z"] for o in objs])
        rendered = model.compose(objs, 150)
        p = detection_figure(canvas[0], objs, model.decode(zs), ctx.figures / "target_vae_detection.png",
                             rendered=rendered, truth=truth[["x", "y"]].to_numpy())
    figs.append((p, "Several digits on a 150x150 canvas: peaks of the attention map -> objects with z, theta, t "
                    "(appendix A.4); crosses mark the true centres."))
    rows = [{"measure": "rotation circular correlation", "value": rot, "paper (MNIST(U), P8)": 0.859},
            {"measure": "translation correlation x / y", "value": f"{tx:.3f} / {ty:.3f}", "paper (MNIST(U), P8)":
             "0.972 / 0.971"},
            {"measure": "KMeans clustering accuracy (z = 2)", "value": acc, "paper (MNIST(U), P8)": 0.571}]
    text = (f"TARGET-VAE (P8, z = 2) trained for {steps} steps of 25 images ({steps * 25} images, "
            f"{math.ceil(steps * 25 / 4000 * 100)} % of one epoch of 4,000) through the training engine on "
            "SynthPath digits(U) — far too short to converge; the benchmark `target_vae` has the numbers of "
            f"longer runs. Run folder: {run}.")
    return Section("TARGET-VAE: unsupervised pose and content", text=text, figures=figs,
                   tables=[("Pose and content on 200 held-out digits", rows)])
