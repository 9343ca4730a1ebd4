"""Engine overhead and bf16 speed-up, measured side by side in one run.

- ``engine_overhead_pct``: steps/s of the reference autoencoder through ``histolatent.train.fit``
  (progress, metrics logging, NaN checks, per-step seeding, resumable sampler) vs a bare
  PyTorch loop (DataLoader + Adam) on the same model, data and batch size. Runs are
  interleaved and the median of the repeats is used, so load from other processes hits
  both alike.
- ``bf16_speedup``: engine steps/s with precision bf16-mixed vs 32-true.
Both time the training loop only (from the first to the last step), not start-up.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from histolatent.bench import save_result
from histolatent.datasets import create_dataset
from histolatent.models import create_model
from histolatent.train import RunConfig, fit

MODEL = {"name": "autoencoder", "image_size": 32, "channels": [32, 64, 128], "latent_dim": 16}
DATA = {"name": "digits", "size": 32}
BATCH = 64


def bare_loop_steps_per_s(steps: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = create_model(**MODEL)
    opt = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    ds = create_dataset("digits", split="train", size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    model.train()
    done = 0
    t0 = None
    while done < steps:
        for batch in loader:
            x = batch["image"]
            loss = F.mse_loss(model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # the engine reads its loss terms every step too
            done += 1
            if done == 1:  # like the engine's figure: time from the end of step 1
                t0 = time.perf_counter()
            if done == steps:
                break
    return (steps - 1) / (time.perf_counter() - t0)


def engine_steps_per_s(steps: int, precision: str, out: Path) -> float:
    cfg = RunConfig(model=MODEL, data=DATA, train={"steps": steps, "batch_size": BATCH, "precision": precision,
                                                   "log_every": 1, "progress": True})
    run = fit(cfg, out=out)
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    # elapsed_s counts from the loop start; row 0 is logged after the first step
    first, last = float(rows[0]["elapsed_s"]), float(rows[-1]["elapsed_s"])
    return (int(rows[-1]["step"]) - int(rows[0]["step"])) / (last - first)


def main(quick: bool = False, threads: int = 1) -> dict:
    # One thread on both sides: on a shared 2-core machine a second OpenMP thread spin-waits
    # for a core and makes timings swing 10x; the ratio is what this benchmark is about.
    torch.set_num_threads(threads)
    steps = 30 if quick else 150
    repeats = 1 if quick else 5
    bare, eng, bf16 = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            bare.append(bare_loop_steps_per_s(steps))
            eng.append(engine_steps_per_s(steps, "32-true", Path(tmp) / f"fp32-{r}"))
            bf16.append(engine_steps_per_s(steps, "bf16-mixed", Path(tmp) / f"bf16-{r}"))
    b, e, h = statistics.median(bare), statistics.median(eng), statistics.median(bf16)
    figures = {
        "engine_overhead_pct": round(100.0 * (b / e - 1.0), 2),
        "bf16_speedup": round(h / e, 3),
        "bare_steps_per_s": round(b, 2),
        "engine_fp32_steps_per_s": round(e, 2),
        "engine_bf16_steps_per_s": round(h, 2),
    }
    notes = (f"Reference autoencoder (channels 32-64-128, 32x32 digits, batch {BATCH}), {steps} steps x "
             f"{repeats} interleaved repeats, medians, torch threads {threads}. Engine runs log every step "
             "(worst case) with the progress bar on. Overhead = bare/engine - 1.")
    if not quick:
        save_result("engine", figures, details={"bare": bare, "engine_fp32": eng, "engine_bf16": bf16,
                                                "steps": steps, "repeats": repeats, "batch_size": BATCH,
                                                "torch_threads": threads},
                    notes=notes)
    return figures


if __name__ == "__main__":
    print(main())
