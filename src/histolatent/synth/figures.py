"""Realism check: SynthPath next to real H&E at the same mpp (figure and table).

Both real samples come from :mod:`histolatent.samples`: ``cmu-small-region`` (Aperio,
0.499 µm/px) and ``target-image`` (tiatoolbox's normalisation target, treated as 0.5
µm/px). Every image, real or synthetic, goes through the same measurements:

- colour deconvolution with the Ruifrok–Johnston H&E vectors
  (:data:`histolatent.stain.HE_RUIFROK`) on tissue pixels (max OD > 0.12), giving
  haematoxylin and eosin concentration percentiles;
- a simple nucleus detector (haematoxylin, Otsu threshold, distance-transform peaks at
  least 2.5 µm apart) giving nuclei per mm² of tissue. On SynthPath the true count is
  known too, which calibrates the detector.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from histolatent.stain.optical_density import HE_RUIFROK, concentrations_from_od, od_from_rgb

PERCENTILES = (5, 25, 50, 75, 95)
#: SynthPath tiles of the comparison: (tissue preset, seed).
SYNTH_TILES = (("tumour", 11), ("breast", 12), ("normal", 13), ("stroma", 14), ("lymphoid", 15), ("breast", 16))


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Tissue pixels: maximum optical density over the channels above 0.12."""
    return od_from_rgb(rgb).max(axis=-1) > 0.12


def he_concentrations(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) Ruifrok H and E concentrations of the (tissue) pixels of ``rgb``."""
    od = od_from_rgb(rgb)
    if mask is None:
        mask = od.max(axis=-1) > 0.12
    return concentrations_from_od(od[mask], HE_RUIFROK)


def detect_nuclei(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """Centres (N, 2) (x, y px) of nuclei found by a simple haematoxylin detector."""
    import cv2
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu

    od = od_from_rgb(rgb)
    tissue = od.max(axis=-1) > 0.12
    h = concentrations_from_od(od, HE_RUIFROK)[..., 0]
    h = cv2.GaussianBlur(h, (0, 0), 0.6 / mpp)
    if tissue.sum() < 100:
        return np.zeros((0, 2))
    thr = max(float(threshold_otsu(h[tissue])), 0.25)
    fg = h > thr
    fg = ndi.binary_opening(fg, iterations=max(1, int(round(0.75 / mpp))))
    dist = ndi.distance_transform_edt(fg)
    dist = cv2.GaussianBlur(dist.astype(np.float32), (0, 0), 0.75 / mpp)
    labels, _ = ndi.label(fg)
    min_area = np.pi * (1.5 / mpp) ** 2
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area
    small[0] = False
    labels[small[labels]] = 0
    peaks = peak_local_max(dist, min_distance=max(1, int(round(2.5 / mpp))), labels=labels, exclude_border=False)
    return peaks[:, ::-1].astype(np.float64)


def _real_images() -> dict[str, tuple[np.ndarray, float]]:
    """The two real samples as arrays with their mpp."""
    import cv2
    import openslide

    from histolatent import samples

    out = {}
    s = openslide.OpenSlide(str(samples.path("cmu-small-region")))
    try:
        w, h = s.dimensions
        out["cmu-small-region"] = (np.asarray(s.read_region((0, 0), 0, (w, h)).convert("RGB")),
                                   float(s.properties.get("openslide.mpp-x", 0.499)))
    finally:
        s.close()
    t = cv2.imread(str(samples.path("target-image")), cv2.IMREAD_COLOR)[..., ::-1]
    out["target-image"] = (np.ascontiguousarray(t), 0.5)
    return out


def _synth_tiles(size_px: int = 1024, mpp: float = 0.5) -> list[tuple[str, object]]:
    from histolatent.synth.render import render_tile

    return [(f"{preset} #{seed}", render_tile(size_px, mpp, seed, None, preset)) for preset, seed in SYNTH_TILES]


def _row(name: str, images: list[tuple[np.ndarray, float]], true_counts: list[int] | None = None) -> dict:
    conc, n_det, area_mm2, n_true = [], 0, 0.0, 0
    tissue_frac = []
    for k, (rgb, mpp) in enumerate(images):
        mask = tissue_mask(rgb)
        conc.append(he_concentrations(rgb, mask))
        area = float(mask.sum()) * (mpp * 1e-3) ** 2
        area_mm2 += area
        n_det += len(detect_nuclei(rgb, mpp))
        tissue_frac.append(float(mask.mean()))
        if true_counts is not None:
            n_true += true_counts[k]
    c = np.concatenate(conc)
    row = {"source": name, "images": len(images), "tissue_fraction": float(np.mean(tissue_frac))}
    for j, stain in enumerate("HE"):
        for p, v in zip(PERCENTILES, np.percentile(c[:, j], PERCENTILES), strict=True):
            row[f"{stain}_p{p}"] = float(v)
    row["nuclei_per_mm2_detected"] = n_det / area_mm2 if area_mm2 else float("nan")
    row["nuclei_per_mm2_true"] = n_true / area_mm2 if (true_counts is not None and area_mm2) else float("nan")
    return row


def realism_table(*, size_px: int = 1024, mpp: float = 0.5) -> pd.DataFrame:
    """H/E concentration percentiles and nuclear density: the two real samples vs SynthPath.

    Rows: ``cmu-small-region``, ``target-image``, ``synthpath`` (all comparison tiles)
    and one row per SynthPath preset. Columns: ``H_p5`` ... ``H_p95``, ``E_p5`` ...
    ``E_p95`` (Ruifrok deconvolution, tissue pixels), ``nuclei_per_mm2_detected`` (same
    detector for all), ``nuclei_per_mm2_true`` (SynthPath ground truth), ``tissue_fraction``.
    """
    rows = [_row(name, [(img, m)]) for name, (img, m) in _real_images().items()]
    tiles = _synth_tiles(size_px, mpp)
    rows.append(_row("synthpath", [(t.rgb, t.mpp) for _, t in tiles], [len(t.nuclei) for _, t in tiles]))
    by_preset: dict[str, list] = {}
    for name, t in tiles:
        by_preset.setdefault(name.split(" ")[0], []).append(t)
    for preset, ts in by_preset.items():
        rows.append(_row(f"synthpath:{preset}", [(t.rgb, t.mpp) for t in ts], [len(t.nuclei) for t in ts]))
    return pd.DataFrame(rows)


def _tissue_crop(img: np.ndarray, size: int, k: int) -> np.ndarray:
    """The ``k``-th most tissue-rich non-overlapping ``size`` crop of ``img``."""
    mask = tissue_mask(img)
    h, w = mask.shape
    cands = []
    for y in range(0, h - size + 1, size // 2):
        for x in range(0, w - size + 1, size // 2):
            cands.append((float(mask[y:y + size, x:x + size].mean()), y, x))
    cands.sort(reverse=True)
    chosen: list[tuple[int, int]] = []
    for _, y, x in cands:
        if all(abs(y - a) >= size or abs(x - b) >= size for a, b in chosen):
            chosen.append((y, x))
        if len(chosen) > k:
            break
    y, x = chosen[min(k, len(chosen) - 1)]
    return img[y:y + size, x:x + size]


def realism_figure(out_path: str | os.PathLike, *, crop_px: int = 512, mpp: float = 0.5,
                   table: pd.DataFrame | None = None) -> Path:
    """Save a PNG comparing SynthPath tiles with crops of the real samples at ``mpp``.

    Top row: real crops (CMU-1-Small-Region x 2, target image x 2); middle row: SynthPath
    tiles of four presets; bottom row: H and E concentration histograms (tissue pixels)
    and nuclear densities (detected; SynthPath also true).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from histolatent.io.atomic import atomic_path
    from histolatent.synth.render import render_tile

    real = _real_images()
    cmu, cmu_mpp = real["cmu-small-region"]
    tgt, tgt_mpp = real["target-image"]
    crops = [("CMU-1-Small-Region", _tissue_crop(cmu, crop_px, 0)), ("CMU-1-Small-Region", _tissue_crop(cmu, crop_px, 1)),
             ("target image", tgt[:crop_px, :crop_px]), ("target image", tgt[-crop_px:, -crop_px:])]
    synth = [(f"SynthPath {p} #{s}", render_tile(crop_px, mpp, s, None, p).rgb) for p, s in SYNTH_TILES[:4]]
    if table is None:
        table = realism_table(mpp=mpp)
    fig = plt.figure(figsize=(16, 13), dpi=90)
    gs = fig.add_gridspec(3, 4, height_ratios=[1, 1, 0.8])
    for k, (title, img) in enumerate(crops + synth):
        ax = fig.add_subplot(gs[k // 4, k % 4])
        ax.imshow(img)
        ax.set_title(f"{title} ({crop_px} px, {mpp} µm/px)", fontsize=9)
        ax.axis("off")
    sources = {"cmu-small-region": (cmu, cmu_mpp), "target-image": (tgt, tgt_mpp)}
    synth_big = _synth_tiles(1024, mpp)
    colours = {"cmu-small-region": "tab:blue", "target-image": "tab:orange", "synthpath": "tab:purple"}
    concs = {n: he_concentrations(img) for n, (img, _) in sources.items()}
    concs["synthpath"] = np.concatenate([he_concentrations(t.rgb) for _, t in synth_big])
    for j, (stain, lim) in enumerate((("haematoxylin", 2.0), ("eosin", 0.8))):
        ax = fig.add_subplot(gs[2, j])
        bins = np.linspace(-0.2 if j else 0.0, lim, 80)
        for n, c in concs.items():
            ax.hist(c[:, j], bins=bins, density=True, histtype="step", lw=1.8, color=colours[n], label=n)
        ax.set_title(f"{stain} concentration (Ruifrok deconvolution, tissue px)", fontsize=9)
        ax.legend(fontsize=8)
    ax = fig.add_subplot(gs[2, 2])
    names = list(table["source"])
    det = table["nuclei_per_mm2_detected"].to_numpy()
    true = table["nuclei_per_mm2_true"].to_numpy()
    x = np.arange(len(names))
    ax.bar(x - 0.2, det, 0.4, label="detected")
    ax.bar(x + 0.2, np.nan_to_num(true), 0.4, label="true (SynthPath)")
    ax.set_xticks(x, [n.replace("synthpath:", "sp:") for n in names], rotation=60, fontsize=7, ha="right")
    ax.set_title("nuclei per mm² of tissue", fontsize=9)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(gs[2, 3])
    ax.axis("off")
    show = table[table["source"].isin(["cmu-small-region", "target-image", "synthpath"])]
    cells = [[f"{v:.2f}" if isinstance(v, float) and abs(v) < 100 else (f"{v:.0f}" if isinstance(v, float) else str(v))
              for v in r] for r in show[["source", "H_p5", "H_p50", "H_p95", "E_p5", "E_p50", "E_p95",
                                         "nuclei_per_mm2_detected"]].itertuples(index=False)]
    tab = ax.table(cellText=cells, colLabels=["source", "H p5", "H p50", "H p95", "E p5", "E p50", "E p95", "nuc/mm²"],
                   loc="center", fontsize=7)
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    fig.suptitle("SynthPath vs real H&E at the same mpp", fontsize=12)
    fig.tight_layout()
    out = Path(out_path)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
