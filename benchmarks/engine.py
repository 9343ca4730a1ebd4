"""Engine overhead, bf16 speed-up, and whether data keep up with the model at every shipped config.

- ``engine_overhead_pct``: steps/s of the reference autoencoder through ``histolatent.train.fit``
  (progress, metrics logging, NaN checks, per-step seeding, resumable sampler) vs a bare
  PyTorch loop (DataLoader + Adam) on the same model, data and batch size. Runs are
  interleaved and the median of the repeats is used, so load from other processes hits
  both alike.
- ``bf16_speedup``: engine steps/s with precision bf16-mixed vs 32-true.
  Both time the training loop only (from the first to the last step), not start-up. The bf16
  runs take a fifth of the steps (at least 20): on a CPU without native bf16 (``machine.cpu_native_bf16``)
  they are an order of magnitude slower, and a rate needs no more.
- ``data_fraction_<config>``: for every training config in ``configs/``, run as shipped
  (its model, dataset, batch size, precision and workers) for a few steps, the time the
  loop waited for its batch as a fraction of step time (wait + the model's step), from the
  engine's record in ``model.json`` (``timing``), in the steady state: steps 2..n. The
  first step's wait is the loader's start-up (worker processes, the first window rendered),
  paid once per run: ``details.data`` reports it (``first_data_s``, and the fraction with it,
  ``data_fraction_with_startup``) together with the other one-off seconds (dataset
  construction, run folder, figure) as ``one_off_share_of_shipped_run``, their share of the
  shipped run's length. Target: <= 0.10 each. Slide-model configs read a user's grids; here they get a SynthPath
  grid cohort (``synth.write_grids``) with the model's channels, written before the timing.
  A config whose 12 steps take under 10 s is timed again over as many steps as fill 10 s
  (at most its shipped steps), so that fast configs are measured past the loader's first batches.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from histolatent.bench import save_result
from histolatent.datasets import create_dataset
from histolatent.models import create_model
from histolatent.train import RunConfig, fit, load_run_config

MODEL = {"name": "autoencoder", "image_size": 32, "channels": [32, 64, 128], "latent_dim": 16}
DATA = {"name": "digits", "size": 32}
BATCH = 64
#: the training configs shipped with histolatent
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA_TARGET = 0.10


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


def _user_data(shipped, work: Path) -> list[str]:
    """Overrides that point a config at data the user brings: slide models get a SynthPath grid
    cohort (``histolatent synth grids``, 48 slides of up to 48 x 64 cells, 16 channels)."""
    if shipped.data.get("name") != "grid-crops":
        return []
    from histolatent.synth import write_grids

    grids = work / "synth-grids"
    if not grids.exists():
        write_grids(grids, channels=int(shipped.model.get("in_channels", 16)), progress=False)
    return [f"data.root={grids}", f"data.labels={grids / 'labels.csv'}"]


def data_time(config: Path, steps: int, out: Path) -> dict:
    """Run ``config`` as shipped for ``steps`` steps; the engine's record of data wait vs step time."""
    shipped = load_run_config(config)
    data = _user_data(shipped, out.parent / f"data-{shipped.model.get('in_channels', 16)}")
    t0 = time.perf_counter()
    # no validation within the steps (val_every past the end: plateau schedules need one set)
    run = fit(config, out=out, overrides=[f"train.steps={steps}", "train.val_every=1000000", "train.checkpoint_every=0",
                                          f"train.log_every={steps}", "train.progress=false",
                                          "train.early_stopping=null", "train.max_seconds=null", *data])
    wall = time.perf_counter() - t0
    timing = json.loads((run / "model.json").read_text())["timing"]
    in_steps = timing["data_s"] + timing["compute_s"]
    n = timing["steps"]
    # steady state: steps 2..n; the first step's wait is the loader's start-up (workers forked,
    # first window rendered), paid once per run and reported with the other one-off costs
    steady_data = timing["data_s"] - timing["first_data_s"]
    steady_compute = timing["compute_s"] * (n - 1) / n
    step_s = (steady_data + steady_compute) / (n - 1)
    outside = wall - in_steps + timing["first_data_s"]
    return {"steps": n, "data_fraction": steady_data / (steady_data + steady_compute),
            "data_fraction_with_startup": timing["data_fraction"],
            "data_s_per_step": timing["data_s_per_step"], "compute_s_per_step": timing["compute_s_per_step"],
            "first_data_s": timing["first_data_s"], "outside_steps_s": outside,
            "one_off_share_of_shipped_run": outside / (outside + shipped.train.steps * step_s),
            "shipped_steps": shipped.train.steps, "batch_size": shipped.train.batch_size,
            "num_workers": shipped.train.num_workers, "precision": shipped.train.precision,
            "dataset": shipped.data["name"], "model": shipped.model["name"]}


def data_section(steps: int, names: list[str] | None = None, min_seconds: float = 0.0) -> tuple[dict, dict]:
    """data_fraction_<config> for every shipped config (or those named), default torch threads.

    A config whose ``steps`` take less than ``min_seconds`` is run again for as many steps as
    fill ``min_seconds`` (at most its shipped steps): a dozen 20-ms steps are over before the
    loader settles, and say little.
    """
    found = sorted(CONFIGS.glob("*.yaml"))
    configs = [c for c in found if names is None or c.stem in names]
    per: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in configs:
            r = per[c.stem] = data_time(c, steps, Path(tmp) / c.stem)
            step_s = r["data_s_per_step"] + r["compute_s_per_step"]
            more = min(r["shipped_steps"], int(min_seconds / max(step_s, 1e-6)))
            if more > steps:
                r = per[c.stem] = data_time(c, more, Path(tmp) / f"{c.stem}-long")
            step_s = r["data_s_per_step"] + r["compute_s_per_step"]
            print(f"{c.stem}: data {100 * r['data_fraction']:.1f} % of step time "
                  f"({r['data_s_per_step']:.3f} s of {step_s:.3f} s per step)", flush=True)
    figures = {f"data_fraction_{k.replace('-', '_')}": round(v["data_fraction"], 4) for k, v in per.items()}
    if per:
        figures["data_fraction_max"] = round(max(v["data_fraction"] for v in per.values()), 4)
        figures["data_fractions_within_target"] = all(v["data_fraction"] <= DATA_TARGET for v in per.values())
    return figures, {"per_config": per, "steps": steps, "configs": [c.name for c in configs],
                     "torch_threads": torch.get_num_threads()}


def main(quick: bool = False, threads: int = 1) -> dict:
    default_threads = torch.get_num_threads()
    # One thread on both sides: on a shared 2-core machine a second OpenMP thread spin-waits
    # for a core and makes timings swing 10x; the ratio is what this benchmark is about.
    torch.set_num_threads(threads)
    steps = 30 if quick else 150
    repeats = 1 if quick else 5
    bf16_steps = max(20, steps // 5)
    bare, eng, bf16 = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            bare.append(bare_loop_steps_per_s(steps))
            eng.append(engine_steps_per_s(steps, "32-true", Path(tmp) / f"fp32-{r}"))
            bf16.append(engine_steps_per_s(bf16_steps, "bf16-mixed", Path(tmp) / f"bf16-{r}"))
    # data vs model: the configs as a user runs them, with torch's default threads
    torch.set_num_threads(default_threads)
    data_steps = int(os.environ.get("HISTOLATENT_ENGINE_DATA_STEPS", 3 if quick else 12))
    only = os.environ.get("HISTOLATENT_ENGINE_CONFIGS")  # e.g. "se2n-vae,vae": a subset
    data_figures, data_details = data_section(data_steps, only.split(",") if only else None,
                                              min_seconds=2.0 if quick else 10.0)
    b, e, h = statistics.median(bare), statistics.median(eng), statistics.median(bf16)
    figures = {
        "engine_overhead_pct": round(100.0 * (b / e - 1.0), 2),
        "bf16_speedup": round(h / e, 3),
        "bare_steps_per_s": round(b, 2),
        "engine_fp32_steps_per_s": round(e, 2),
        "engine_bf16_steps_per_s": round(h, 2),
        **data_figures,
    }
    notes = (f"Reference autoencoder (channels 32-64-128, 32x32 digits, batch {BATCH}), {steps} steps x "
             f"{repeats} interleaved repeats ({bf16_steps} steps for bf16), medians, torch threads {threads}. Engine runs log every step "
             "(worst case) with the progress bar on. Overhead = bare/engine - 1. Data fractions: each shipped "
             f"config for {data_steps} steps as shipped (workers, precision, batch), torch threads "
             f"{default_threads}; wait for the batch / (wait + model step) over steps 2..n (the first step's "
             "loader start-up is reported with the one-off costs in details.data); target <= "
             f"{DATA_TARGET}; configs whose {data_steps} steps took under 10 s were timed again over 10 s of steps.")
    if not quick:
        save_result("engine", figures, details={"bare": bare, "engine_fp32": eng, "engine_bf16": bf16,
                                                "steps": steps, "bf16_steps": bf16_steps, "repeats": repeats,
                                                "batch_size": BATCH,
                                                "torch_threads": threads, "data": data_details},
                    notes=notes)
    return figures


if __name__ == "__main__":
    print(main())
