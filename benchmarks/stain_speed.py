"""Stain normalisation and tile reading speed against the reference tools, side by side.

All on real 256 x 256 tissue tiles of CMU-1-Small-Region (level 0, 0.499 um/px), target =
the tiatoolbox H&E image:

- ``macenko_speedup_vs_torchstain``: our batched torch path (one call on the whole batch,
  default settings: every pixel of a 256 x 256 tile in the estimate) vs torchstain 1.4's
  torch Macenko one tile at a time (its only mode), same tiles, same target, same thread
  count; tiles/s ratio. ``macenko_fast_*``: the same with ``max_fit_pixels=16384`` (the
  stain matrix and percentiles from every 4th pixel, the transform on all), and how many
  pixels then stay within 2 grey levels of the default.
- ``vahadane_speedup_vs_staintools``: our batched Vahadane vs StainTools 2.1 (SPAMS
  dictionary learning + LASSO per tile); StainTools runs on a subset (about 1 s a tile).
- ``tile_read_speedup_vs_openslide``: reading every 256 x 256 tile of the slide's grid with
  ``Slide.read`` (native JPEG tiles) vs ``openslide.OpenSlide.read_region`` + ``np.asarray``,
  fresh handles each round; pixels are checked identical for every tile.

Rounds are interleaved (ours, theirs, ours, ...) and the median of the per-round ratios
is reported, so that load from other processes on the machine hits both alike. Torch runs
single-threaded on both sides (``threads=1``): on this shared 2-core machine a second
intra-op thread spends most of its time waiting for a core (a 262k-element multiply took
20 ms with 2 threads and 0.02-0.1 ms with 1 while other jobs ran), which would measure the
scheduler, not the code.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch

from histolatent import samples
from histolatent.bench import save_result
from histolatent.io.slide import open_slide
from histolatent.stain import MacenkoNormalizer, VahadaneNormalizer
from histolatent.tissue import tile_grid


def _tiles(slide, n: int) -> np.ndarray:
    grid = tile_grid(slide, mpp=slide.mpp, tile_px=256, stride_px=128, min_tissue=0.9)
    idx = np.linspace(0, len(grid) - 1, min(n, len(grid))).round().astype(int)
    return np.stack([grid.read(slide, int(i)) for i in idx])


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def macenko_round(ours: MacenkoNormalizer, ref, x: torch.Tensor) -> tuple[float, float]:
    t_ours = _timed(lambda: ours.transform(x))
    t_ref = _timed(lambda: [ref.normalize(t, stains=False) for t in x])
    return len(x) / t_ours, len(x) / t_ref


def vahadane_round(ours: VahadaneNormalizer, x: torch.Tensor, ref_file: str, target_file: str) -> tuple[float, float]:
    t_ours = _timed(lambda: ours.transform(x))
    return len(x) / t_ours, _staintools_rate(ref_file, target_file)


def _staintools_rate(tiles_file: str, target_file: str) -> float:
    """StainTools Vahadane tiles/s, timed in a child process (fit and import excluded).

    SPAMS leaves OpenMP/OpenBLAS worker threads spinning after it returns; in the same
    process they cut the throughput of anything that runs next (ours fell from about 30 to
    5 tiles/s after one StainTools call), so the reference runs in its own interpreter.
    """
    import subprocess
    import sys

    code = ("import sys, time, numpy as np, staintools\n"
            "tiles = np.load(sys.argv[1]); target = np.load(sys.argv[2])\n"
            "n = staintools.StainNormalizer(method='vahadane'); n.fit(target)\n"
            "t0 = time.perf_counter()\n"
            "[n.transform(t) for t in tiles]\n"
            "print(len(tiles) / (time.perf_counter() - t0))\n")
    out = subprocess.run([sys.executable, "-c", code, tiles_file, target_file], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1",
                                          "OPENBLAS_NUM_THREADS": "1"})
    return float(out.stdout.strip().splitlines()[-1])


def read_round(path, coords: list[tuple[int, int]]) -> tuple[float, float, bool]:
    import openslide

    with open_slide(path) as slide:
        t0 = time.perf_counter()
        ours = [slide.read(x, y, 256, 256) for x, y in coords]
        t_ours = time.perf_counter() - t0
    osr = openslide.OpenSlide(str(path))
    t0 = time.perf_counter()
    theirs = [np.asarray(osr.read_region((x, y), 0, (256, 256)))[..., :3] for x, y in coords]
    t_ref = time.perf_counter() - t0
    osr.close()
    same = all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    return len(coords) / t_ours, len(coords) / t_ref, same


def main(quick: bool = False, threads: int = 1) -> dict:
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _main(quick)
    finally:
        torch.set_num_threads(old_threads)


def _main(quick: bool) -> dict:
    import torchstain
    from PIL import Image

    rounds = 3 if quick else 5
    target = np.asarray(Image.open(samples.path("target-image")).convert("RGB")).copy()
    path = samples.path("cmu-small-region")
    with open_slide(path) as slide:
        tiles = _tiles(slide, 32 if quick else 64)
        W, H = slide.dimensions
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()

    mac = MacenkoNormalizer().fit(target)
    ref_mac = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    ref_mac.fit(torch.from_numpy(target).permute(2, 0, 1))
    fast = MacenkoNormalizer(max_fit_pixels=16384).fit(target)
    fast.stain_matrix_, fast.max_concentrations_ = mac.stain_matrix_, mac.max_concentrations_  # same target
    mac.transform(x[:2])
    ref_mac.normalize(x[0], stains=False)
    mac_rounds, fast_rounds = [], []
    for _ in range(rounds):
        mac_rounds.append(macenko_round(mac, ref_mac, x))
        fast_rounds.append(macenko_round(fast, ref_mac, x))
    exact_out, fast_out = mac.transform(x).int(), fast.transform(x).int()
    ref_out = torch.stack([ref_mac.normalize(t, stains=False)[0].permute(2, 0, 1) for t in x]).int()
    fast_dev = (fast_out - exact_out).abs().amax(dim=1)
    exact_vs_ref = (exact_out - ref_out).abs().amax(dim=1)

    vah = VahadaneNormalizer().fit(target)
    ref_tiles = tiles[:: max(1, len(tiles) // (3 if quick else 6))]
    vah.transform(x[:2])
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/tiles.npy", ref_tiles)
        np.save(f"{tmp}/target.npy", target)
        vah_rounds = [vahadane_round(vah, x, f"{tmp}/tiles.npy", f"{tmp}/target.npy")
                      for _ in range(max(2, rounds - 2))]

    coords = [(cx, cy) for cy in range(0, H - 255, 256) for cx in range(0, W - 255, 256)]
    read_rounds = [read_round(path, coords) for _ in range(rounds)]
    identical = all(r[2] for r in read_rounds)

    def summary(rs):
        return {"ours_per_s": statistics.median(r[0] for r in rs), "ref_per_s": statistics.median(r[1] for r in rs),
                "ratio_median": statistics.median(r[0] / r[1] for r in rs),
                "ratios": [r[0] / r[1] for r in rs]}

    m, mf = summary(mac_rounds), summary(fast_rounds)
    v, r = summary(vah_rounds), summary(read_rounds)
    figures = {
        "macenko_speedup_vs_torchstain": m["ratio_median"],
        "macenko_fast_speedup_vs_torchstain": mf["ratio_median"],
        "macenko_fast_pixels_within_2_levels_of_exact": float((fast_dev <= 2).float().mean()),
        "macenko_pixels_within_2_levels_of_torchstain": float((exact_vs_ref <= 2).float().mean()),
        "vahadane_speedup_vs_staintools": v["ratio_median"],
        "tile_read_speedup_vs_openslide": r["ratio_median"] if identical else 0.0,
        "macenko_tiles_per_s": m["ours_per_s"],
        "torchstain_macenko_tiles_per_s": m["ref_per_s"],
        "vahadane_tiles_per_s": v["ours_per_s"],
        "staintools_vahadane_tiles_per_s": v["ref_per_s"],
        "native_reads_per_s": r["ours_per_s"],
        "openslide_reads_per_s": r["ref_per_s"],
        "tile_read_pixels_identical": bool(identical),
    }
    details = {"macenko": m, "macenko_fast": mf, "vahadane": v, "tile_read": r, "n_tiles": len(tiles),
               "n_staintools_tiles": len(ref_tiles), "n_read_tiles": len(coords), "rounds": rounds,
               "torch_threads": torch.get_num_threads(),
               "macenko_config": mac.to_dict()["params"], "vahadane_config": vah.to_dict()["params"]}
    notes = ("Real 256x256 tissue tiles of CMU-1-Small-Region (level 0), target = tiatoolbox image. Ours: "
             "one batched torch call (float32 ln(1+I) with the OD offset and unit changes folded into the batched "
             "products, int16-bin histogram percentiles, one exp2 per output value); torchstain 1.4 torch "
             "backend one tile at a time; StainTools 2.1 Vahadane with spams-bin, timed in a child process (single-threaded BLAS) because SPAMS leaves spinning worker threads behind. Median of interleaved "
             "rounds. Tile reads: every tile of the 256-px grid, fresh handles, pixels compared.")
    save_result("stain_speed", figures, details=details, notes=notes)
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
