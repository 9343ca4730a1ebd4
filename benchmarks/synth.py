"""SynthPath speed and memory: one 1024² tile on one core, and a 20,000² slide written tile by tile.

Questions: does rendering a 1024 x 1024 tile at 0.5 µm/px (default tissue, default scanner:
blur + noise, no JPEG) take <= 0.2 s on one core? Does writing a 20,000 x 20,000 pyramidal
JPEG TIFF stay under 1.5 GB peak RSS (memory must not grow with the slide), and how long
does it take?

Both are measured in fresh child processes so that the numbers are the child's own:
- the tile child pins itself to one CPU (``sched_setaffinity``), sets every thread pool
  (OpenMP/BLAS/OpenCV) to one thread, renders one warm-up tile then ``N`` tiles of
  different seeds, and reports the median CPU time of the process (single-threaded, so
  CPU seconds = seconds on one core even when other jobs share the core) and the median
  wall time;
- the slide child writes the slide to a temporary folder and reports its peak resident
  set (``VmHWM`` from /proc, and ``ru_maxrss``), CPU and wall seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from histolatent.bench import save_result

_ENV1 = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

_TILE = textwrap.dedent("""
    import json, os, time
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import cv2, numpy as np
    cv2.setNumThreads(1)
    from histolatent.synth import render_tile
    render_tile(1024, mpp=0.5, seed=0)
    cpu, wall, nuc = [], [], []
    for s in range(1, N + 1):
        t, c = time.perf_counter(), time.process_time()
        tile = render_tile(1024, mpp=0.5, seed=s)
        cpu.append(time.process_time() - c); wall.append(time.perf_counter() - t); nuc.append(len(tile.nuclei))
    print(json.dumps({"cpu": cpu, "wall": wall, "nuclei": nuc}))
""")

_SLIDE = textwrap.dedent("""
    import json, os, resource, time
    import cv2
    cv2.setNumThreads(1)
    from histolatent.synth import Lesion, write_slide
    t, c = time.perf_counter(), time.process_time()
    truth = write_slide(PATH, (SIZE, SIZE), 0.5, Lesion(center=(0.45, 0.55), radius_um=SIZE * 0.5 * 0.12, grade=3),
                        seed=1, tile_px=512, quality=90)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    import openslide
    s = openslide.OpenSlide(PATH)
    print(json.dumps({"wall": wall, "cpu": cpu, "vmhwm_kb": hwm,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "bytes": os.path.getsize(PATH), "levels": s.level_count,
                      "level_dimensions": s.level_dimensions, "mpp": float(s.properties["openslide.mpp-x"]),
                      "label": truth.label, "lesion_fraction": truth.lesion_fraction}))
""")


def _child(code: str, env_extra: dict[str, str] | None = None) -> tuple[dict, float]:
    env = {**os.environ, **_ENV1, **(env_extra or {})}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - t


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main(quick: bool = False) -> dict:
    n_tiles = 3 if quick else 7
    size = 4096 if quick else 20000
    load_before = os.getloadavg()
    tile, _ = _child(_TILE.replace("N + 1", f"{n_tiles} + 1"))
    with tempfile.TemporaryDirectory(prefix="histolatent-bench-synth-") as tmp:
        path = os.path.join(tmp, "slide.tiff")
        slide, child_wall = _child(_SLIDE.replace("PATH", repr(path)).replace("SIZE", str(size)))
    load_after = os.getloadavg()
    key = "slide_20k" if not quick else "slide_4k"
    figures = {
        "tile_1024_seconds": round(_median(tile["cpu"]), 4),
        f"{key}_peak_rss_gb": round(max(slide["vmhwm_kb"], slide["maxrss_kb"]) / 2**20, 3),
        f"{key}_seconds": round(slide["wall"], 1),
    }
    details = {
        "tile": {"cpu_seconds": tile["cpu"], "wall_seconds": tile["wall"], "median_wall": _median(tile["wall"]),
                 "nuclei": tile["nuclei"], "size_px": 1024, "mpp": 0.5},
        "slide": {**slide, "size_px": [size, size], "cpu_seconds": slide["cpu"], "child_wall_with_startup": child_wall,
                  "megapixels_per_cpu_second": size * size / 1e6 / slide["cpu"]},
        "loadavg_before": load_before, "loadavg_after": load_after,
    }
    notes = ("tile_1024_seconds = median CPU seconds of a single-threaded child pinned to one core (1024² px at "
             "0.5 µm/px, default tissue and scanner); wall times are in details and are longer whenever other jobs "
             "share the core (see loadavg). Slide figures come from a child that wrote a "
             f"{size:,}² px JPEG TIFF pyramid tile by tile; peak RSS is its VmHWM.")
    save_result("synth", figures, details=details, notes=notes)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
