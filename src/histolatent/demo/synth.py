"""Demo stage: SynthPath next to the real samples, and one tile with its ground truth."""

from __future__ import annotations

from histolatent.report import Section


def synthpath(ctx) -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from skimage.segmentation import find_boundaries

    from histolatent.synth import render_tile
    from histolatent.synth.figures import realism_figure

    realism = realism_figure(ctx.figures / "synth-realism.png")
    tile = render_tile(512, 0.5, ctx.seed, None, "breast")
    overlay = tile.rgb.copy()
    overlay[find_boundaries(tile.instances, mode="outer")] = (0, 255, 0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    axes[0].imshow(tile.rgb)
    axes[0].set_title("SynthPath tile (512 px @ 0.5 µm/px)")
    axes[1].imshow(overlay)
    axes[1].set_title(f"true outlines ({len(tile.nuclei)} nuclei)")
    axes[2].imshow(tile.concentrations[..., 0], cmap="Blues")
    axes[2].set_title("true haematoxylin concentration")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    gt = ctx.figures / "synth-ground-truth.png"
    fig.savefig(gt, dpi=85)
    plt.close(fig)
    counts = tile.nuclei["type"].value_counts()
    rows = [{"type": t, "nuclei": int(n),
             "mean area µm²": float(np.mean(tile.nuclei.loc[tile.nuclei["type"] == t, "area_um2"]))}
            for t, n in counts.items()]
    return Section(
        "SynthPath: synthetic H&E with ground truth",
        text="SynthPath renders H&E in optical density (Beer–Lambert) with nuclei of known type, outline "
             "and orientation, so every method below is scored against ground truth. The first figure "
             "puts SynthPath tiles next to crops of the two real samples at the same mpp with their "
             "haematoxylin/eosin concentration histograms and nuclear densities.",
        figures=[(realism, "SynthPath vs real H&E at 0.5 µm/px: crops, H/E histograms, nuclei per mm²."),
                 (gt, "One SynthPath tile, its true nucleus outlines and haematoxylin concentration.")],
        tables=[("Nuclei in the tile, by true type", rows)])
