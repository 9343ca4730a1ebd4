"""Stain normalisation quality against ground truth (SynthPath) and on the real sample.

**Ground truth.** ``histolatent.synth.render.stain_pairs`` renders the same tissue under a
random site's stain (through a scanner model: blur, noise) and under the target stain
(clean Beer-Lambert): the second is exactly what a perfect normaliser would output for the
first. Each method is fitted on *other* tissue rendered in the target stain (8 tiles,
never the evaluated ones) and applied to >= 50 sources; PSNR, SSIM, colour-histogram
correlation, Hellinger distance and the RMS Euclidean distance (paper 4's table) are
computed against the truth, per pair, and averaged.

Methods: ``none`` (the source as is), Macenko, Reinhard, Vahadane, and the neural
colourisation normaliser (paper 4, Sec. 3.1) trained on crops of the same 8 target tiles,
keeping the source's lightness (default) or matching it to the target's by moments or by
quantiles (``lightness``).

**Real sample.** A 1024 x 1024 crop of CMU-1-Small-Region normalised to the tiatoolbox
target image with every method (the colouriser trained on crops of the target image); no
ground truth exists, so only the histogram metrics against the target image are reported
(over tissue pixels of both, since the crop holds much more glass than the target), plus a
side-by-side figure.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from histolatent import samples
from histolatent.bench import results_dir, save_result
from histolatent.io.slide import open_slide
from histolatent.metrics.stain import stain_metrics
from histolatent.stain import (
    MacenkoNormalizer,
    ReinhardNormalizer,
    VahadaneNormalizer,
    tissue_pixel_mask,
)
from histolatent.synth.render import stain_pairs
from histolatent.train.colorizer import ColorizationNormalizer
from histolatent.viz.stain import stain_comparison_figure

METRICS = ("psnr", "ssim", "hist_correlation", "hellinger", "euclidean")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "hist_correlation": True, "hellinger": False, "euclidean": False}


def _colorizer(steps: int, seed: int = 0) -> ColorizationNormalizer:
    return ColorizationNormalizer(steps=steps, crop_px=64, batch_size=16, seed=seed)


def _methods(target_tiles: list[np.ndarray], steps: int) -> tuple[dict, dict]:
    timings = {}
    fitted = {}
    for name, norm in [("macenko", MacenkoNormalizer()), ("reinhard", ReinhardNormalizer()),
                       ("vahadane", VahadaneNormalizer()), ("colorizer", _colorizer(steps))]:
        t0 = time.perf_counter()
        fitted[name] = norm.fit(target_tiles)
        timings[name] = time.perf_counter() - t0
    for mode in ("moments", "quantiles"):  # the same network, another lightness
        variant = ColorizationNormalizer.from_dict(fitted["colorizer"].to_dict())
        variant.lightness = mode
        fitted[f"colorizer+{mode}"] = variant
    return fitted, timings


def ground_truth(n_pairs: int, steps: int) -> tuple[dict, dict, dict]:
    pairs = list(stain_pairs(n_pairs, size_px=256, mpp=0.5, seed=0))
    style = [p.target for p in stain_pairs(8, size_px=256, mpp=0.5, seed=12345)]  # other tissue
    shown = max(style, key=lambda im: float((im.min(axis=-1) < 200).mean()))  # the most tissue
    methods, timings = _methods(style, steps)
    rows: dict[str, list[dict]] = {"none": []}
    rows.update({m: [] for m in methods})
    example = {}
    for i, p in enumerate(pairs):
        rows["none"].append(stain_metrics(p.source, p.target))
        for name, norm in methods.items():
            out = norm.transform(p.source)
            rows[name].append(stain_metrics(out, p.target))
            if i == 1:
                example[name] = out
    example_pair = pairs[1]
    summary = {m: {k: statistics.fmean(r[k] for r in rs) for k in METRICS} for m, rs in rows.items()}
    sd = {m: {k: statistics.pstdev([r[k] for r in rs]) for k in METRICS} for m, rs in rows.items()}
    extra = {"per_pair": rows, "sd": sd, "fit_seconds": timings,
             "colorizer_history": methods["colorizer"].history_, "n_pairs": len(pairs),
             "source_sites": [p.source_stain.site for p in pairs]}
    fig = stain_comparison_figure(example_pair.source, shown, example, results_dir() / "stain_quality.png",
                                  truth=example_pair.target,
                                  metrics={m: {k: rows[m][1][k] for k in ("psnr", "ssim", "hellinger")}
                                           for m in example},
                                  title="SynthPath pair: source site stain -> reference stain")
    extra["figure"] = str(fig)
    return summary, extra, methods


def real_sample(steps: int) -> tuple[dict, str]:
    from PIL import Image

    target = np.asarray(Image.open(samples.path("target-image")).convert("RGB")).copy()
    with open_slide(samples.path("cmu-small-region")) as slide:
        crop = slide.read(600, 1300, 1024, 1024)
    t_mask = tissue_pixel_mask(target)

    def metrics(img: np.ndarray) -> dict:  # colour histograms of tissue pixels only
        return stain_metrics(img, target, mask_output=tissue_pixel_mask(img), mask_reference=t_mask)

    outputs, table = {}, {"none": metrics(crop)}
    for name, norm in [("macenko", MacenkoNormalizer()), ("reinhard", ReinhardNormalizer()),
                       ("vahadane", VahadaneNormalizer()), ("colorizer", _colorizer(steps))]:
        outputs[name] = norm.fit(target).transform(crop)
        table[name] = metrics(outputs[name])
    fig = stain_comparison_figure(crop, target, outputs, results_dir() / "stain_real_sample.png",
                                  metrics={m: {k: v for k, v in table[m].items()} for m in outputs},
                                  title="CMU-1-Small-Region crop -> tiatoolbox target (no ground truth)")
    return table, str(fig)


def main(quick: bool = False) -> dict:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: see benchmarks/stain_speed.py
    try:
        steps = 150 if quick else 500
        summary, extra, _ = ground_truth(12 if quick else 60, steps)
        real, real_fig = real_sample(steps)
    finally:
        torch.set_num_threads(old)
    figures: dict = {}
    for m, vals in summary.items():
        for k, v in vals.items():
            figures[f"{m}_{k}"] = v
    figures["n_pairs"] = extra["n_pairs"]
    for variant in ("colorizer", "colorizer+moments", "colorizer+quantiles"):
        wins = [k for k in METRICS if (summary[variant][k] > summary["macenko"][k]) == HIGHER_IS_BETTER[k]]
        figures[f"{variant}_beats_macenko_on"] = ", ".join(wins) or "none"
    details = {**extra, "summary": summary, "real_sample": real, "real_sample_figure": real_fig,
               "colorizer_steps": steps}
    lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for m, vals in summary.items():
        lines.append(f"| {m} | " + " | ".join(f"{vals[k]:.4g}" for k in METRICS) + " |")
    notes = ("Ground truth: SynthPath stain pairs (256 px, 0.5 um/px), mean over pairs; higher is better for "
             "psnr/ssim/hist_correlation, lower for hellinger/euclidean. Methods fitted on 8 other target-stain "
             "tiles.\n\n" + "\n".join(lines))
    save_result("stain_quality", figures, details=details, notes=notes)
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str))
    print(Path(results_dir()) / "stain_quality.json")
