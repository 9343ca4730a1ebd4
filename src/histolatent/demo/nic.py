"""Demo stage: Neural Image Compression of a small SynthPath slide to a grid, and its figure."""

from __future__ import annotations

from histolatent.report import Section


def compression(ctx) -> Section:
    """A 2048 x 2048 SynthPath slide -> a (3, H, W) mean-RGB grid (+ its dihedral copies), in seconds."""
    from histolatent.embed.grid import compress_slide, read_manifest
    from histolatent.synth.slide import write_slide
    from histolatent.viz.nic import write_grid_figure

    work = ctx.out / "nic"
    work.mkdir(parents=True, exist_ok=True)
    size = 1024 if ctx.quick else 2048
    truth = write_slide(work / "slide.tiff", (size, size), 0.5, lesion="random", seed=ctx.seed)

    def mean_rgb(x):
        return x.mean(dim=(2, 3))

    store = compress_slide(truth.path, mean_rgb, work / "slide.zarr", mpp=0.5, tile_px=64, overwrite=True,
                           progress=False)
    png = write_grid_figure(store, ctx.figures / "nic_compression.png")
    man = read_manifest(store)
    rows = [{"stage": k, "seconds": v} for k, v in man["stage_seconds"].items()]
    return Section(
        "Neural Image Compression: a slide as a grid of tile codes",
        text=f"A {size} x {size} SynthPath slide (label {truth.label}) compressed with "
             f"compress_slide: {man['n_tissue_tiles']} tissue tiles of 64 px at 0.5 µm/px, grid "
             f"{'x'.join(map(str, man['shape']))} float16, checksum {man['checksum'][:12]}. The encoder here is "
             "mean-RGB (the paper's lower bound); `histolatent compress` takes a trained run. "
             "Right: the grid's first three principal components as RGB.",
        figures=[(png, "Thumbnail | PCA of the grid (background white).")],
        tables=[("seconds per stage", rows)],
    )
