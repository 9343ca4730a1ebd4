"""Nuclei: LoG detection, watershed and U-Net segmentation on held-out SynthPath tiles,
speed, paper 4's stain-normalisation claim, and the real samples.

Figures (held-out SynthPath tiles, world seeds disjoint from all training data, 0.5 µm/px,
256 x 256 px; half under the reference stain, half under a lab never seen in training):

- ``log_detection_f1``: LoG centres vs true centroids, one-to-one within 4 µm, pooled F1;
- ``unet_dice``, ``unet_aji``: the U-Net (paper §3.2 architecture, widths x0.25 for the
  CPU) trained through the engine on SynthPath tiles with stain augmentation (random site
  stains per tile + HED augmentation per step); pixel Dice of the nucleus foreground, AJI;
- ``watershed_dice``, ``watershed_aji``: the classical LoG-seeded watershed;
- ``log_watershed_nuclei_per_s``: nuclei per second of LoG + watershed (one call of
  ``segment_watershed``, haematoxylin included) on a 2048 x 2048 tile;
- ``unet_tiles_per_s``: 256 x 256 tiles per second through ``segment_unet`` (probabilities
  and instances), one tile per call;
- ``unet_dice_shifted_raw`` / ``unet_dice_shifted_normalised``: Yuan & Suh's claim (§4.1.1)
  that stain normalisation helps segmentation: a U-Net trained under the reference stain
  only (no augmentation) is tested on tiles under strongly shifted stains (random labs at
  twice the default site variation), raw and after Macenko normalisation to the reference.

Torch runs single-threaded here: on this shared 2-core machine two OpenMP threads spin-wait
for each other and train up to ten times slower (measured: 0.5 vs 5 s per step).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from histolatent.bench import results_dir, save_result

MPP = 0.5
TILE = 256


def _train(out: Path, steps: int, overrides: list[str]) -> tuple[Path, float]:
    from histolatent.train import fit

    t0 = time.perf_counter()
    run = fit("configs/unet-nuclei.yaml", out=out,
              overrides=[f"train.steps={steps}", "train.progress=false", "train.checkpoint_every=0",
                         f"train.val_every={max(1, steps // 2)}", *overrides])
    return run, time.perf_counter() - t0


def _pairs(tiles):
    return [(t.rgb, t.instances) for t in tiles]


def main(quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    figs_dir = results_dir() / "nuclei"
    figs_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-nuclei-"))
    try:
        return _run(quick, work, figs_dir, load_before)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(quick: bool, work: Path, figs_dir: Path, load_before: float) -> dict:
    from histolatent.io.geojson_export import validate_feature_collection, write_geojson
    from histolatent.io.tables import read_cell_table, write_cell_table
    from histolatent.models import load_model
    from histolatent.nuclei.evaluate import HELDOUT_SITE, evaluate_method, heldout_tiles
    from histolatent.nuclei.unet import segment_unet
    from histolatent.nuclei.watershed import segment_watershed
    from histolatent.stain.macenko import MacenkoNormalizer
    from histolatent.synth.render import render_tile
    from histolatent.synth.stain import site_stain

    n_per_stain = 3 if quick else 12
    steps_main, steps_ref = (30, 20) if quick else (400, 300)

    # -- held-out tiles: the same tissue under the reference stain and a held-out lab ------
    ref_tiles = heldout_tiles(n_per_stain, size_px=TILE, mpp=MPP, stain=0)
    lab_tiles = heldout_tiles(n_per_stain, size_px=TILE, mpp=MPP, stain=HELDOUT_SITE, offset=n_per_stain)
    test = _pairs(ref_tiles) + _pairs(lab_tiles)
    n_true = int(sum(len(t.nuclei) for t in ref_tiles + lab_tiles))

    per_log, log_s = evaluate_method(test, mpp=MPP, method="log")
    per_ws, ws_s = evaluate_method(test, mpp=MPP, method="watershed")

    # -- U-Net with stain augmentation (the benchmark model) -------------------------------
    run_main, t_main = _train(work / "unet-main", steps_main, [])
    net = load_model(run_main)
    per_unet, unet_s = evaluate_method(test, mpp=MPP, method="unet", model=net)
    per_ref_stain = {"reference": evaluate_method(_pairs(ref_tiles), mpp=MPP, method="unet", model=net)[1],
                     "held-out lab": evaluate_method(_pairs(lab_tiles), mpp=MPP, method="unet", model=net)[1]}

    # -- speed -----------------------------------------------------------------------------
    big = render_tile(2048, mpp=MPP, seed=9_500_000, tissue="breast")
    times, counts = [], []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        lab = segment_watershed(big.rgb, mpp=MPP)
        times.append(time.perf_counter() - t0)
        counts.append(int(lab.max()))
    ws_speed = counts[0] / float(np.median(times))
    speed_tiles = [t.rgb for t in ref_tiles[:8]]
    segment_unet(speed_tiles[0], net, mpp=MPP)  # warm-up
    t0 = time.perf_counter()
    reps = 1 if quick else 2
    for _ in range(reps):
        for rgb in speed_tiles:
            segment_unet(rgb, net, mpp=MPP, tile_px=TILE, overlap_px=0)
    unet_tps = reps * len(speed_tiles) / (time.perf_counter() - t0)

    # -- paper 4's claim: trained under one stain, tested on shifted stains ----------------
    run_ref, t_ref = _train(work / "unet-reference-stain", steps_ref,
                            ["data.stains=reference", "model.stain_augment=0.0"])
    ref_net = load_model(run_ref)
    shifted = []
    for i in range(n_per_stain):
        site = 9_100_000 + i
        shifted.append(heldout_tiles(1, size_px=TILE, mpp=MPP, stain=site_stain(site, strength=2.0),
                                     offset=2 * n_per_stain + i)[0])
    target_tiles = heldout_tiles(4, size_px=TILE, mpp=MPP, stain=0, offset=3 * n_per_stain)
    norm = MacenkoNormalizer().fit([t.rgb for t in target_tiles])
    sh = _pairs(shifted)
    _, ref_same = evaluate_method(_pairs(ref_tiles), mpp=MPP, method="unet", model=ref_net)
    _, ref_raw = evaluate_method(sh, mpp=MPP, method="unet", model=ref_net)
    _, ref_norm = evaluate_method(sh, mpp=MPP, method="unet", model=ref_net, transform=norm.transform)
    _, aug_raw = evaluate_method(sh, mpp=MPP, method="unet", model=net)
    _, ws_raw = evaluate_method(sh, mpp=MPP, method="watershed")
    _, ws_norm = evaluate_method(sh, mpp=MPP, method="watershed", transform=norm.transform)

    # -- real samples ------------------------------------------------------------------------
    real = _real_samples(figs_dir, net)

    # -- cell table round trip and GeoJSON validity -----------------------------------------
    from histolatent.nuclei.pipeline import cells_from_image

    cells = cells_from_image(ref_tiles[0].rgb, mpp=MPP, slide_id="synth-0")
    p = write_cell_table(cells, work / "cells.parquet")
    back = read_cell_table(p)
    round_trip = bool(back.drop(columns="polygon").equals(cells.drop(columns="polygon"))
                      and all(np.array_equal(a, b) for a, b in zip(back.polygon, cells.polygon, strict=True)))
    import json

    gj = json.loads(write_geojson(cells, work / "cells.geojson").read_text())
    gj_errors = validate_feature_collection(gj)
    from histolatent.viz.nuclei import overlay_figure

    t = lab_tiles[0]
    overlay_figure(t.rgb, figs_dir / "synth-unet.png", labels=segment_unet(t.rgb, net, mpp=MPP), truth=t.instances,
                   title="held-out SynthPath tile (held-out lab stain): U-Net (yellow) vs truth (green)")
    overlay_figure(t.rgb, figs_dir / "synth-watershed.png", labels=segment_watershed(t.rgb, mpp=MPP),
                   truth=t.instances, title="held-out SynthPath tile: LoG + watershed (yellow) vs truth (green)")

    figures = {
        "log_detection_f1": log_s["f1"],
        "unet_dice": unet_s["dice"],
        "unet_aji": unet_s["aji"],
        "watershed_dice": ws_s["dice"],
        "watershed_aji": ws_s["aji"],
        "log_watershed_nuclei_per_s": ws_speed,
        "unet_tiles_per_s": unet_tps,
        "unet_dice_shifted_raw": ref_raw["dice"],
        "unet_dice_shifted_normalised": ref_norm["dice"],
    }
    details = {
        "test_tiles": len(test), "test_true_nuclei": n_true, "tile_px": TILE, "mpp": MPP,
        "stains": {"reference": 0, "held_out_lab": HELDOUT_SITE},
        "match_distance_um": 4.0,
        "log": log_s, "watershed": ws_s, "unet": unet_s, "unet_by_stain": per_ref_stain,
        "unet_object_f1": unet_s.get("f1"),
        "unet_main": {"steps": steps_main, "train_seconds": t_main, "config": "configs/unet-nuclei.yaml",
                      "parameters": int(sum(p.numel() for p in net.parameters()))},
        "speed": {"watershed_2048_seconds": times, "watershed_2048_nuclei": counts[0],
                  "true_nuclei_2048": len(big.nuclei), "unet_tile_px": TILE, "torch_threads": 1},
        "stain_shift": {
            "train": f"reference stain only, no augmentation, {steps_ref} steps ({t_ref:.0f} s)",
            "test": f"{n_per_stain} tiles, each under a random lab at site_stain(strength=2.0)",
            "normaliser": "Macenko fitted on 4 held-out reference-stain tiles",
            "unet_reference_same_stain": ref_same, "unet_reference_shifted_raw": ref_raw,
            "unet_reference_shifted_normalised": ref_norm, "unet_augmented_shifted_raw": aug_raw,
            "watershed_shifted_raw": ws_raw, "watershed_shifted_normalised": ws_norm},
        "real_samples": real,
        "cell_table_round_trip": round_trip,
        "geojson_valid": not gj_errors, "geojson_features": len(gj["features"]),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
    }
    notes = (f"{len(test)} held-out SynthPath tiles ({TILE}² px at {MPP} µm/px; {n_per_stain} reference stain + "
             f"{n_per_stain} held-out lab), {n_true} true nuclei. Detection: one-to-one within 4 µm. U-Net: paper "
             f"§3.2 architecture at width 0.25 (8->128 channels), {steps_main} steps bf16-mixed on 1 thread "
             f"({t_main:.0f} s). Stain shift: U-Net trained under the reference stain only; tested raw vs Macenko-"
             f"normalised on labs at 2x the default variation. Torch single-threaded (shared 2-core machine; "
             f"load average {load_before:.1f}). Figures in benchmarks/results/nuclei/.")
    save_result("nuclei", figures, details=details, notes=notes)
    return figures


def _real_samples(figs_dir: Path, net) -> dict:
    """Counts and MNA on the tiatoolbox target image and the whole CMU-1-Small-Region slide."""
    from PIL import Image

    from histolatent import samples
    from histolatent.io.slide import open_slide
    from histolatent.nuclei.detect import detect_log
    from histolatent.nuclei.pipeline import cells_from_image, cells_from_slide, slide_summary
    from histolatent.viz.nuclei import overlay_figure

    out = {}
    target = np.asarray(Image.open(samples.path("target-image")).convert("RGB"))
    t0 = time.perf_counter()
    ws = cells_from_image(target, mpp=0.5, slide_id="target-image")
    unet = cells_from_image(target, mpp=0.5, method="unet", model=net, slide_id="target-image")
    det = detect_log(target, mpp=0.5)
    out["target-image"] = {"mpp": 0.5, "log_count": len(det), "watershed": slide_summary(ws),
                           "unet": slide_summary(unet), "seconds": time.perf_counter() - t0}
    overlay_figure(target, figs_dir / "target-watershed.png", polygons=list(ws.polygon),
                   points=det[["x", "y"]].to_numpy(), crop=(330, 330, 260, 260),
                   title=f"tiatoolbox target @0.5 µm/px: {len(det)} LoG centres, {len(ws)} watershed nuclei")
    overlay_figure(target, figs_dir / "target-unet.png", polygons=list(unet.polygon), crop=(330, 330, 260, 260),
                   title=f"tiatoolbox target @0.5 µm/px: {len(unet)} U-Net nuclei")
    # its nuclei are 15-25 µm across at 0.5 µm/px, lymphocytes ~9 µm: it looks like a 40x (0.25 µm/px) image
    ws25 = cells_from_image(target, mpp=0.25, slide_id="target-image")
    unet25 = cells_from_image(target, mpp=0.25, method="unet", model=net, slide_id="target-image")
    out["target-image@0.25"] = {"mpp": 0.25, "log_count": len(detect_log(target, mpp=0.25)),
                                "watershed": slide_summary(ws25), "unet": slide_summary(unet25)}
    overlay_figure(target, figs_dir / "target-unet-0.25.png", polygons=list(unet25.polygon),
                   crop=(330, 330, 260, 260), title=f"tiatoolbox target read as 0.25 µm/px: {len(unet25)} U-Net nuclei")
    path = samples.path("cmu-small-region")
    t0 = time.perf_counter()
    ws = cells_from_slide(path, method="watershed")
    log = cells_from_slide(path, method="log")
    out["cmu-small-region"] = {"mpp": 0.499, "log_count": len(log), "watershed": slide_summary(ws),
                               "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    unet = cells_from_slide(path, method="unet", model=net)
    out["cmu-small-region"]["unet"] = slide_summary(unet)
    out["cmu-small-region"]["unet_seconds"] = time.perf_counter() - t0
    x, y, w, h = 800, 1300, 1024, 1024
    with open_slide(path) as s:
        crop = s.read(x, y, w, h)
    for name, table in (("watershed", ws), ("unet", unet)):
        sel = table[(table.x >= x) & (table.x < x + w) & (table.y >= y) & (table.y < y + h)]
        polys = [p - np.tile([x, y], len(p) // 2) for p in sel.polygon]
        pts = log[(log.x >= x) & (log.x < x + w) & (log.y >= y) & (log.y < y + h)][["x", "y"]].to_numpy() - [x, y]
        overlay_figure(crop, figs_dir / f"cmu-{name}.png", polygons=polys,
                       points=pts if name == "watershed" else None, crop=(350, 350, 300, 300),
                       title=f"CMU-1-Small-Region ({x},{y})+{w}px: {len(sel)} {name} nuclei")
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
