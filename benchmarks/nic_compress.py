"""NIC part 1, whole-slide compression: end-to-end rate vs the encoder alone and vs the peers' loop,
flat memory, and the same bytes however the cohort runs.

Every slide is built here from SynthPath (``histolatent.synth.slide.write_slide``; the large
ones for the memory figure are a rendered SynthPath slide repeated as a mosaic, written
tile by tile as a pyramidal JPEG TIFF, because rendering 1.6 gigapixels would take minutes).
The encoder is built here too, never loaded: the NIC BiGAN encoder's shape (128-px tiles at
0.5 µm/px average-pooled to 64 px; 4 x [conv 128 3x3 stride 2 valid, LeakyReLU 0.2, BN];
linear 128), with seeded random weights: the speed of a forward pass does not depend on
what the weights learned.

Figures:

- ``encoder_forward_patches_per_s``: that encoder alone on the slide's tissue tiles, already
  in memory as uint8 (``encode_images``, batch 64, fp32);
- ``compress_patches_per_s``: ``compress_slide`` on the same slide, end to end (open, tissue
  detection, reads through the native-tile path, forward, zarr writes, checksum), same run;
  ``compress_fraction_of_encoder_bound`` = their ratio (target >= 0.7);
- ``naive_patches_per_s``: the loop the peers use, on the same tissue tiles (coordinates
  given to it for free): OpenSlide ``read_region`` per tile, PIL resize to 64 px, the same
  conv stack per batch of 64, each batch appended to an HDF5 file with h5py;
  ``compress_speedup_vs_naive`` = compress / naive (target >= 3);
- ``peak_rss_mb_small`` / ``peak_rss_mb_large`` and ``peak_rss_growth_40k_vs_10k``: peak RSS
  of ``compress_slide`` in a fresh process on a 10k x 10k and a 40k x 40k slide (quick:
  2k and 8k), mean-RGB encoder so that the slide's size, not the encoder, is what varies;
- ``same_grid_inline_vs_dask``, ``same_grid_after_sigkill``: the checksums of every grid of a
  3-slide cohort from 1 process (``scheduler="inline"``), from 2 Dask worker processes, and
  from a process SIGKILLed after its first slide and resumed, are identical (1 = yes).

Torch runs on one thread for every measurement (a shared 2-core machine); the compressor's
reads run in a second thread while the encoder runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from histolatent.bench import save_result

MPP = 0.5
TILE = 128


def bigan_encoder(seed: int = 0):
    """The NIC BiGAN encoder's shape, seeded; plain torch modules so Dask workers can unpickle it."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list = [nn.AvgPool2d(2)]
    layers += _core_layers()
    return nn.Sequential(*layers).eval()


def _core_layers() -> list:
    from torch import nn

    layers, c = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(c, 128, 3, 2), nn.LeakyReLU(0.2), nn.BatchNorm2d(128)]
        c = 128
    return layers + [nn.Flatten(), nn.Linear(128 * 3 * 3, 128)]


class MeanRGB:
    """The lower-bound encoder: mean colour of the tile."""

    name = "mean-rgb"

    def __call__(self, x):
        return x.mean(dim=(2, 3))


def _synth(path: Path, size: int, seed: int) -> Path:
    from histolatent.synth.slide import write_slide

    write_slide(path, (size, size), MPP, lesion="random", seed=seed)
    return path


def _mosaic(path: Path, size: int, source: Path) -> Path:
    """A ``size`` x ``size`` slide repeating a rendered SynthPath slide, written tile by tile."""
    from histolatent.io.slide import open_slide
    from histolatent.io.tiff_writer import write_pyramidal_tiff

    with open_slide(source) as s:
        src = s.read_level(0, 0, 0, *s.dimensions)
    sh, sw = src.shape[:2]

    def read(x, y, w, h):
        return src[np.arange(y, y + h)[:, None] % sh, np.arange(x, x + w)[None, :] % sw]

    return write_pyramidal_tiff(path, read, size=(size, size), mpp=MPP, tile_px=512)


def _tissue_tiles(path: Path):
    from histolatent.io.slide import open_slide
    from histolatent.tissue.grid import tile_grid
    from histolatent.tissue.mask import detect_tissue

    with open_slide(path) as s:
        return tile_grid(s, mpp=MPP, tile_px=TILE, min_tissue=0.5, mask=detect_tissue(s))


def _naive(path: Path, tiles, h5_path: Path) -> float:
    """Patches/s of the peers' loop: read_region per tile, PIL resize, encode per batch, append to HDF5."""
    import h5py
    import openslide
    import torch
    from PIL import Image

    core = bigan_encoder()[1:]  # the same weights, minus the pooling (PIL resizes instead)
    t0 = time.perf_counter()
    osr = openslide.OpenSlide(str(path))
    with h5py.File(h5_path, "w") as f, torch.no_grad():
        ds = f.create_dataset("features", shape=(0, 128), maxshape=(None, 128), dtype="float32", chunks=True)
        cs = f.create_dataset("coords", shape=(0, 2), maxshape=(None, 2), dtype="int64", chunks=True)
        batch, coords = [], []
        for i in range(len(tiles)):
            x, y = int(tiles.x[i]), int(tiles.y[i])
            img = osr.read_region((x, y), 0, (TILE, TILE)).convert("RGB").resize((TILE // 2, TILE // 2),
                                                                                Image.BILINEAR)
            batch.append(np.asarray(img))
            coords.append((x, y))
            if len(batch) == 64 or i == len(tiles) - 1:
                xb = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
                z = core(xb).numpy()
                n = ds.shape[0]
                ds.resize(n + len(z), axis=0)
                ds[n:] = z
                cs.resize(n + len(z), axis=0)
                cs[n:] = np.array(coords)
                batch, coords = [], []
    osr.close()
    return len(tiles) / (time.perf_counter() - t0)


def _peak_rss(slide: Path, out: Path) -> dict:
    """compress_slide in a fresh process; its peak RSS (MiB) and tiles."""
    code = (f"import resource, json, torch; torch.set_num_threads(1)\n"
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"from nic_compress import MeanRGB\n"
            f"from histolatent.embed.grid import compress_slide, read_manifest\n"
            f"compress_slide({str(slide)!r}, MeanRGB(), {str(out)!r}, mpp={MPP}, tile_px={TILE}, progress=False)\n"
            f"m = read_manifest({str(out)!r})\n"
            f"print(json.dumps({{'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
            f" 'tiles': m['n_tissue_tiles'], 'seconds': m['seconds']}}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cohort_child(src: str, out: str) -> None:
    """Entry point of the process that is SIGKILLed: the cohort, inline, one slide after another."""
    import torch

    torch.set_num_threads(1)
    from histolatent.embed.cohort import compress_cohort

    compress_cohort(src, bigan_encoder(), out, scheduler="inline", mpp=MPP, tile_px=TILE, progress=False)


def _reproducibility(src: Path, work: Path) -> dict:
    from histolatent.embed.cohort import compress_cohort

    kw = dict(mpp=MPP, tile_px=TILE, progress=False)
    one = compress_cohort(src, bigan_encoder(), work / "inline", scheduler="inline", **kw)
    two = compress_cohort(src, bigan_encoder(), work / "dask", workers=2, processes=True, torch_threads=1, **kw)
    killed = work / "killed"
    proc = subprocess.Popen([sys.executable, __file__, "cohort", str(src), str(killed)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = killed / f"{sorted(p.stem for p in src.glob('*.tiff'))[0]}.zarr" / "manifest.json"
    t0 = time.perf_counter()
    while not first.exists() and proc.poll() is None and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    was_running = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = len(list(killed.glob(".*.tmp")))
    resumed = compress_cohort(src, bigan_encoder(), killed, scheduler="inline", **kw)
    ref = one.set_index("slide_id").checksum.to_dict()
    return {
        "same_grid_inline_vs_dask": int(two.set_index("slide_id").checksum.to_dict() == ref),
        "same_grid_after_sigkill": int(resumed.set_index("slide_id").checksum.to_dict() == ref),
        "killed_mid_cohort": int(was_running),
        "temp_folders_left_by_kill": leftovers,
        "resume_status": resumed.set_index("slide_id").status.to_dict(),
        "checksums": ref,
        "dask_status": two.set_index("slide_id").status.to_dict(),
    }


def main(quick: bool = False) -> dict:
    import torch

    from histolatent.embed.encode import encode_images
    from histolatent.embed.grid import compress_slide, read_manifest, resolve_encoder
    from histolatent.io.slide import open_slide

    torch.set_num_threads(1)
    speed_px, small_px, large_px, cohort_px = (1536, 2048, 8192, 768) if quick else (6144, 10240, 40960, 2048)
    work = Path(tempfile.mkdtemp(prefix="nic-compress-"))
    t_build = time.perf_counter()
    speed = _synth(work / "speed.tiff", speed_px, seed=11)
    src = work / "cohort"
    src.mkdir()
    for k in range(3):
        _synth(src / f"c{k}.tiff", cohort_px, seed=20 + k)
    mosaic_src = _synth(work / "mosaic-source.tiff", 2048, seed=31)
    small = _mosaic(work / "small.tiff", small_px, mosaic_src)
    large = _mosaic(work / "large.tiff", large_px, mosaic_src)
    build_s = time.perf_counter() - t_build

    enc = bigan_encoder()
    model = resolve_encoder(enc)[0]  # the wrapper compress_slide uses: encode(x) = {"z": enc(x)}
    tiles = _tissue_tiles(speed)
    with open_slide(speed) as s:
        patches = s.read_tiles(tiles.x, tiles.y, TILE, TILE, mpp=MPP)
    encode_images(model, torch.rand(8, 3, TILE, TILE))  # warm-up
    t0 = time.perf_counter()
    encode_images(model, patches, batch_size=64)
    forward = len(patches) / (time.perf_counter() - t0)
    del patches

    t0 = time.perf_counter()
    compress_slide(speed, enc, work / "speed.zarr", mpp=MPP, tile_px=TILE, batch_size=64, progress=False)
    compress_s = time.perf_counter() - t0
    man = read_manifest(work / "speed.zarr")
    compress = man["n_tissue_tiles"] / compress_s
    naive = _naive(speed, tiles, work / "naive.h5")

    rss_small = _peak_rss(small, work / "small.zarr")
    rss_large = _peak_rss(large, work / "large.zarr")
    repro = _reproducibility(src, work / "repro")

    figures = {
        "encoder_forward_patches_per_s": forward,
        "compress_patches_per_s": compress,
        "compress_fraction_of_encoder_bound": compress / forward,
        "naive_patches_per_s": naive,
        "compress_speedup_vs_naive": compress / naive,
        "peak_rss_mb_small": rss_small["rss_mb"],
        "peak_rss_mb_large": rss_large["rss_mb"],
        "peak_rss_growth_40k_vs_10k": rss_large["rss_mb"] / rss_small["rss_mb"],
        "same_grid_inline_vs_dask": repro["same_grid_inline_vs_dask"],
        "same_grid_after_sigkill": repro["same_grid_after_sigkill"],
    }
    details = {"quick": quick, "speed_slide_px": speed_px, "tissue_tiles": int(man["n_tissue_tiles"]),
               "compress_stage_seconds": man["stage_seconds"], "compress_seconds": compress_s,
               "native_tiles": man["native_tiles"], "rss_slides_px": [small_px, large_px],
               "rss_small": rss_small, "rss_large": rss_large, "cohort_slide_px": cohort_px,
               "reproducibility": repro, "build_seconds": build_s, "torch_threads": 1,
               "load_average": os.getloadavg()}
    notes = ("quick mode: small slides, figures are indicative only. " if quick else "") + \
        "Encoder: NIC BiGAN shape, random weights, fp32, 1 torch thread; naive loop favoured " \
        "(tile coordinates given, tissue detection not timed)."
    save_result("nic_compress", figures, details=details, notes=notes)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "cohort":
        _cohort_child(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(main(quick="--quick" in sys.argv), indent=1))
