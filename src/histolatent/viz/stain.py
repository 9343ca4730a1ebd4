"""Stain-normalisation figures: side-by-side comparison of methods, with metrics."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from histolatent.io.atomic import atomic_path  # noqa: E402


def stain_comparison_figure(source: np.ndarray, target: np.ndarray, outputs: Mapping[str, np.ndarray],
                            path: str | os.PathLike, *, truth: np.ndarray | None = None,
                            metrics: Mapping[str, Mapping[str, float]] | None = None,
                            title: str | None = None, max_px: int = 512) -> Path:
    """Source, target, each method's output (and the true target rendering), side by side.

    Parameters
    ----------
    source : numpy.ndarray
        ``(H, W, 3)`` uint8 image that was normalised.
    target : numpy.ndarray
        ``(h, w, 3)`` uint8 image of the target style (any size).
    outputs : mapping of str to numpy.ndarray
        Method name -> normalised ``(H, W, 3)`` uint8 image, in display order.
    path : path-like
        PNG to write (atomically).
    truth : numpy.ndarray, optional
        The true normalised image (SynthPath's target rendering of the same tissue).
    metrics : mapping, optional
        Method name -> {metric: value}; shown under each output (up to three metrics).
    title : str, optional
        Figure title.
    max_px : int
        Panels are shown downsampled to at most this many pixels a side.

    Returns
    -------
    Path
        ``path``.
    """
    panels: list[tuple[str, np.ndarray, str]] = [("source", source, ""), ("target style", target, "")]
    if truth is not None:
        panels.append(("truth", truth, ""))
    for name, img in outputs.items():
        sub = ""
        if metrics and name in metrics:
            sub = "\n".join(f"{k} {v:.3g}" for k, v in list(metrics[name].items())[:3])
        panels.append((name, img, sub))
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img, sub) in zip(axes.ravel(), panels, strict=False):
        arr = np.asarray(img)[..., :3]
        step = max(1, int(np.ceil(max(arr.shape[:2]) / max_px)))
        ax.imshow(arr[::step, ::step], interpolation="lanczos" if step > 1 else "nearest")
        ax.set_title(name, fontsize=10)
        if sub:
            ax.text(0.5, -0.02, sub, transform=ax.transAxes, ha="center", va="top", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def real_sample_stain_demo(path: str | os.PathLike, *, crop: tuple[int, int, int, int] = (600, 1300, 1024, 1024),
                           methods: tuple[str, ...] = ("macenko", "reinhard", "vahadane"),
                           colorizer_steps: int = 0) -> dict:
    """The demo report's stain stage: a crop of CMU-1-Small-Region normalised to the
    tiatoolbox target with each method, as a side-by-side figure plus a metrics table.

    Parameters
    ----------
    path : path-like
        PNG to write.
    crop : (x, y, w, h)
        Level-0 region of the slide.
    methods : tuple of str
        Classical normalisers to run.
    colorizer_steps : int
        Also train the neural colourisation normaliser (paper 4) for this many steps on
        crops of the target (0 = skip; about 500 steps for a fair result, 1-3 minutes).

    Returns
    -------
    dict
        ``{"figure": Path, "metrics": {method: {metric: value}}}``; without ground truth
        the metrics compare colour histograms of tissue pixels with the target image's
        (paper 4's table).
    """
    from PIL import Image

    from histolatent import samples
    from histolatent.io.slide import open_slide
    from histolatent.metrics.stain import stain_metrics
    from histolatent.stain import create_normalizer, tissue_pixel_mask

    target = np.asarray(Image.open(samples.path("target-image")).convert("RGB")).copy()
    with open_slide(samples.path("cmu-small-region")) as slide:
        source = slide.read(*crop)
    names = list(methods)
    if colorizer_steps:
        import histolatent.train  # noqa: F401  (registers the neural normaliser)

        names.append("colorizer")
    t_mask = tissue_pixel_mask(target)

    def metrics(img: np.ndarray) -> dict:  # tissue pixels only: the crop holds far more glass
        return stain_metrics(img, target, mask_output=tissue_pixel_mask(img), mask_reference=t_mask)

    outputs, table = {}, {"unnormalised": metrics(source)}
    for name in names:
        kwargs = {"steps": colorizer_steps, "batch_size": 16} if name == "colorizer" else {}
        outputs[name] = create_normalizer(name, **kwargs).fit(target).transform(source)
        table[name] = metrics(outputs[name])
    fig = stain_comparison_figure(source, target, outputs, path, metrics=table,
                                  title="CMU-1-Small-Region -> tiatoolbox target")
    return {"figure": fig, "metrics": table}
