"""One training engine for every method, on Lightning Fabric.

``fit(config)`` trains the registered model named in ``config.model`` on the registered
dataset named in ``config.data`` -- or on data handed to it in memory (``data=``: arrays, a
mapping of arrays or a torch ``Dataset``) -- and returns the run folder. The model owns its
update rule (``training_step(batch, optimizers, step)``); the engine owns everything around
it: devices and precision, DDP, seeds, resumable data order, checkpoints, validation, LR
schedules, early stopping, a time budget, NaN detection, progress and metrics.

Determinism: each step re-seeds torch/numpy/random from (seed, rank, step), and batch ``s``
is a pure function of (seed, s, rank); with the same thread count a resumed run ends with
bitwise the same weights as an uninterrupted one. (Not with ``scheduler.horizon=time``,
whose learning rate follows the wall clock.)

Progress goes to the ``histolatent`` logger and to ``train.log`` in the run folder (steps,
rate, ETA, loss terms, the share of step time spent waiting for data), and to a bar when
stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.config import apply_overrides, dump_yaml, load_yaml
from histolatent.datasets import create_dataset
from histolatent.errors import InputError, TrainingError
from histolatent.io.atomic import check_output, write_text_atomic
from histolatent.models import copy_weights, create_model
from histolatent.progress import log_to_file, progress
from histolatent.train.checkpoint import load_checkpoint, loadable_checkpoint, save_checkpoint
from histolatent.train.config import (
    IN_MEMORY,
    RunConfig,
    load_run_config,
    resolve_precision,
    validate_run_config,
)
from histolatent.train.data import (
    check_same_data,
    describe_data,
    eval_loader,
    in_memory_dataset,
    train_loader,
)
from histolatent.train.figures import loss_figure
from histolatent.train.metrics_log import MetricsLog
from histolatent.train.optim import EngineOptimizers, build_scheduler
from histolatent.train.run import CONFIG, METRICS, new_run_dir, save_weights

_RUN_DIR_ENV = "HISTOLATENT_RUN_DIR"  # shares the run folder with DDP child processes
TRAIN_LOG = "train.log"
log = logging.getLogger("histolatent.train")


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed every RNG from (seed, rank, step): each step's randomness is reproducible alone."""
    s = (seed * 1_000_003 + rank * 7_919 + step) % (2**31 - 1)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def fit(config: RunConfig | Mapping[str, Any] | str | os.PathLike | None = None, *, data: Any = None,
        val_data: Any = None, overrides: list[str] | None = None, out: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None) -> Path:
    """Train and return the run folder.

    Parameters
    ----------
    config : RunConfig, mapping or path to YAML
        The run (``model``, ``data``, ``train``); ignored when ``resume`` is given (the run's
        own config.yaml is used). ``data`` may be left out when ``data=`` is given.
    data : array, mapping of arrays or torch Dataset, optional
        Train on these instead of the registered dataset of ``config.data``: a uint8 image
        stack ``(N, H, W, C)`` (the image-input policy of :mod:`histolatent.io.image`; items
        become ``{"image": (3, H, W) float32 in [0, 1]}``), a float ``(N, C, H, W)`` array taken
        as it is, a mapping such as ``{"image": ..., "label": ...}``, or a map-style Dataset
        whose items are dicts of tensors. The run records their size, fields and a hash; a
        resume must be given the same data.
    val_data : same kinds as ``data``, optional
        Validation data when ``data`` is given and ``train.val_every > 0``.
    overrides : list of "a.b=value"
        Applied on top of the config (also on resume, e.g. ``train.steps=2000`` to extend).
    out : path
        Run folder (default: ``config.out`` or ``runs/<model>-<time>``).
    resume : path
        A run folder with checkpoints: continue exactly where its last checkpoint stopped.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from histolatent.train import fit, load_model
    >>> images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    >>> cfg = {"model": {"name": "autoencoder", "in_channels": 3, "image_size": 16, "channels": [4, 8],
    ...                  "latent_dim": 2},
    ...        "train": {"steps": 3, "batch_size": 8, "progress": False, "max_seconds": 60}}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = fit(cfg, data=images, out=tmp)
    ...     load_model(run).config.latent_dim
    2
    """
    in_memory = data is not None
    train_ds = in_memory_dataset(data, name="data") if in_memory else None
    val_ds = in_memory_dataset(val_data, name="val_data") if val_data is not None else None
    if val_ds is not None and not in_memory:
        raise InputError("val_data: given without data=; a registered dataset brings its own validation split")
    resume_ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG).is_file():
            raise InputError(f"--resume {str(run_dir)!r}: no {CONFIG} there; not a histolatent run folder")
        cfg = load_run_config(run_dir / CONFIG, overrides, in_memory=in_memory)
        if in_memory:
            check_same_data(cfg.data, describe_data(train_ds), run=str(run_dir))
        check_output(run_dir, name="--resume", kind="folder")
        resume_ckpt = loadable_checkpoint(run_dir)
        if resume_ckpt is None:
            raise InputError(f"--resume {str(run_dir)!r}: no checkpoint to resume from in {run_dir / 'checkpoints'}")
    else:
        if isinstance(config, RunConfig):
            raw, source = config.model_dump(mode="json"), "<RunConfig>"
        elif isinstance(config, Mapping):
            raw, source = dict(config), "<config>"
        elif config is None:
            raise InputError("config: a run config (RunConfig, mapping or YAML path) is needed unless resume= is given")
        else:
            raw, source = load_yaml(config), str(config)
        cfg = validate_run_config(apply_overrides(raw, overrides or []), source=source, in_memory=in_memory)
        if in_memory:
            if cfg.data and cfg.data.get("name") != IN_MEMORY:
                raise InputError(f"data: given in memory, but {source} also names the dataset "
                                 f"{cfg.data.get('name')!r}; drop one of them")
            cfg = cfg.model_copy(update={"data": describe_data(train_ds)})
        run_dir = Path(os.environ.get(_RUN_DIR_ENV) or out or cfg.out or new_run_dir("runs", cfg.model["name"]))
        if _RUN_DIR_ENV not in os.environ:  # a DDP child process finds the folder its parent checked
            _check_new_run_dir(run_dir)
    if in_memory and cfg.train.val_every and val_ds is None:
        raise InputError(f"train.val_every={cfg.train.val_every}: data are in memory, so validation needs val_data=")
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    try:
        return _launch(cfg, run_dir, resume_ckpt, (train_ds, val_ds) if in_memory else None)
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)


def _check_new_run_dir(run_dir: Path) -> None:
    """A new run never reuses a folder that holds another run (its checkpoints would be resumed)."""
    check_output(run_dir, name="--out", kind="folder")
    held = [n for n in (CONFIG, METRICS, "model.json", "weights.safetensors", "checkpoints") if (run_dir / n).exists()]
    if held:
        raise InputError(f"--out {str(run_dir)!r}: already holds a run ({', '.join(held)}); continue it with "
                         f"--resume {run_dir}, or give a new --out")


def _launch(cfg: RunConfig, run_dir: Path, resume_ckpt: Path | None, datasets) -> Path:
    from lightning.fabric import Fabric

    t = cfg.train
    precision = resolve_precision(t.precision, t.accelerator)
    if precision != t.precision:
        log.info("train.precision=auto: %s on this %s", precision, t.accelerator)
        cfg = cfg.model_copy(update={"train": t.model_copy(update={"precision": precision})})
    fabric = Fabric(accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, precision=precision)
    if fabric.world_size > 1 or t.strategy != "auto":
        fabric.launch(_train, cfg, run_dir, resume_ckpt, datasets)
    else:
        _train(fabric, cfg, run_dir, resume_ckpt, datasets)
    return run_dir


class _Clock:
    """Training seconds of the run: this session's loop time plus what earlier sessions used."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = float(before)
        self.t0 = time.perf_counter()
        self.shared: float | None = None  # under DDP: rank 0's reading, broadcast each step

    def __call__(self) -> float:
        if self.shared is not None:
            return self.shared
        return self.before + time.perf_counter() - self.t0


def _train(fabric, cfg: RunConfig, run_dir: Path, resume_ckpt: Path | None, datasets) -> Path:
    t = cfg.train
    rank, world = fabric.global_rank, fabric.world_size
    is_main = rank == 0
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    elif fabric.device.type == "cpu" and world > 1:
        # processes share the cores: one thread pool each would oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    seed_step(t.seed, 0, 0)  # identical initial weights on every rank
    model_opts = {k: v for k, v in cfg.model.items() if k != "name"}
    model = create_model(cfg.model["name"], **model_opts)
    if t.init_from is not None and resume_ckpt is None:  # a resumed run's checkpoint holds these already
        copy_weights(model, t.init_from, prefix=t.init_prefix)
    model = model.to(fabric.device)
    raw_opts = model.configure_optimizers()
    names = list(raw_opts)
    wrapped = fabric.setup_optimizers(*raw_opts.values())
    wrapped = wrapped if isinstance(wrapped, (list, tuple)) else [wrapped]
    optimizers = EngineOptimizers(fabric, dict(zip(names, wrapped, strict=True)), grad_clip=t.grad_clip)
    state = load_checkpoint(resume_ckpt) if resume_ckpt is not None else {}
    clock = _Clock(state.get("elapsed_s", 0.0))
    schedulers = {n: s for n in names if (s := build_scheduler(raw_opts[n], t.scheduler, t.steps,
                                                                max_seconds=t.max_seconds, clock=clock)) is not None}
    plateau = t.scheduler.name == "plateau"

    start_step, best, bad = 0, float("inf"), 0
    if state:
        model.load_state_dict(state["model"])
        for n in names:
            raw_opts[n].load_state_dict(state["optimizers"][n])
            if n in schedulers:
                schedulers[n].load_state_dict(state["schedulers"][n])
        start_step = state["step"]
        best, bad = state.get("best", best), state.get("bad", bad)
        if start_step >= t.steps:
            raise InputError(f"run {run_dir} already reached step {start_step} >= train.steps={t.steps}; "
                             f"pass --set train.steps=N to train longer")
        if t.max_seconds is not None and clock.before >= t.max_seconds:
            raise InputError(f"run {run_dir} already used {clock.before:.0f} s >= train.max_seconds={t.max_seconds:g}; "
                             f"pass --set train.max_seconds=N (or null) to train longer")

    if datasets is not None:
        train_ds, val_ds = datasets
        val_ds = val_ds if t.val_every else None
    else:
        data_opts = {k: v for k, v in cfg.data.items() if k != "name"}
        train_ds = create_dataset(cfg.data["name"], split="train", seed=t.seed, **data_opts)
        val_ds = create_dataset(cfg.data["name"], split="val", seed=t.seed, **data_opts) if t.val_every else None
    loader = train_loader(train_ds, batch_size=t.batch_size, seed=t.seed, total_steps=t.steps,
                          start_step=start_step, rank=rank, world_size=world, num_workers=t.num_workers,
                          prefetch=t.prefetch)

    metrics = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "figures").mkdir(exist_ok=True)
        resolved = cfg.model_dump(mode="json")
        resolved["out"] = str(run_dir)
        write_text_atomic(run_dir / CONFIG, dump_yaml(resolved))
        metrics = MetricsLog(run_dir / METRICS, resume_step=start_step if resume_ckpt else None,
                             tensorboard_dir=run_dir / "tensorboard" if t.tensorboard else None)
    fabric.barrier()

    def checkpoint(step: int) -> Path | None:
        if not is_main:
            return None
        st = {"model": model.state_dict(), "optimizers": {n: raw_opts[n].state_dict() for n in names},
              "schedulers": {n: s.state_dict() for n, s in schedulers.items()}, "best": best, "bad": bad,
              "elapsed_s": clock()}
        return save_checkpoint(run_dir, step, st, keep=t.keep_checkpoints)

    last_ckpt = resume_ckpt
    sums: dict[str, float] = {}
    n_sum = 0
    timing = {"steps": 0, "data_s": 0.0, "compute_s": 0.0, "first_data_s": None}
    step = start_step
    stopped_by = "steps"
    with log_to_file(run_dir / TRAIN_LOG) if is_main else contextlib.nullcontext():
        if is_main:
            where = cfg.data.get("name")
            log.info("train %s on %s: steps %d..%d, batch %d x %d device(s), run %s", cfg.model["name"],
                     f"{where} ({cfg.data.get('items')} items)" if where == IN_MEMORY else where,
                     start_step + 1, t.steps, t.batch_size, world, run_dir)
        # a bar on a terminal if asked for; lines in the log (and train.log) always, from rank 0
        bar = progress(t.steps, f"train {cfg.model['name']}", unit="steps", start=start_step,
                       enabled=None if t.progress else False,
                       log_every_s=t.progress_every_s) if is_main else _Quiet()
        clock.t0 = time.perf_counter()
        with bar:
            batches = iter(loader)
            for i in range(len(loader)):
                step = start_step + i
                t_fetch = time.perf_counter()
                batch = fabric.to_device(next(batches))
                t_step = time.perf_counter()
                seed_step(t.seed, rank, step)
                optimizers.nonfinite.clear()
                model.train()
                with fabric.autocast():
                    terms = model.training_step(batch, optimizers, step)
                values = _floats(terms)  # reading the terms waits for the device: compute time is honest
                _check_finite(values, optimizers.nonfinite, step, last_ckpt)
                if world > 1 and t.max_seconds is not None:  # every rank stops (and anneals) on rank 0's clock
                    clock.shared = None
                    clock.shared = fabric.broadcast(clock(), src=0)
                for s in schedulers.values():
                    if not plateau:
                        s.step()
                t_end = time.perf_counter()
                timing["steps"] += 1
                timing["data_s"] += t_step - t_fetch
                timing["compute_s"] += t_end - t_step
                if timing["first_data_s"] is None:
                    timing["first_data_s"] = t_step - t_fetch
                done = step + 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_sum += 1
                over_time = t.max_seconds is not None and clock() >= t.max_seconds
                stop = over_time or done == t.steps
                share = timing["data_s"] / max(timing["data_s"] + timing["compute_s"], 1e-12)
                bar.advance(1, **{**dict(list(values.items())[:4]), "data_wait": f"{100 * share:.0f}%"})
                if is_main and (done % t.log_every == 0 or stop):
                    metrics.log(done, "train", {k: v / n_sum for k, v in sums.items()}, elapsed_s=clock(),
                                lr=_lr(raw_opts[names[0]]))
                    sums, n_sum = {}, 0
                if val_ds is not None and done % t.val_every == 0:
                    val = _validate(model, val_ds, fabric, t)
                    if is_main:
                        metrics.log(done, "val", val, elapsed_s=clock(), lr=_lr(raw_opts[names[0]]))
                    key = t.monitor.split("/", 1)[-1]
                    if key not in val:
                        raise InputError(f"train.monitor={t.monitor!r}: validation returned {sorted(val)}")
                    if plateau:
                        for s in schedulers.values():
                            s.step(val[key])
                    es = t.early_stopping
                    if val[key] < best - (es.min_delta if es else 0.0):
                        best, bad = val[key], 0
                    else:
                        bad += 1
                    if es is not None and bad >= es.patience:
                        stopped_by = "early_stopping"
                if t.checkpoint_every and done % t.checkpoint_every == 0:
                    last_ckpt = checkpoint(done) or last_ckpt
                    fabric.barrier()
                if stopped_by == "early_stopping":
                    break
                if over_time and done < t.steps:
                    stopped_by = "max_seconds"
                    break
        final_step = step + 1 if t.steps > start_step else start_step
        if is_main:
            if not (t.checkpoint_every and final_step % t.checkpoint_every == 0):
                checkpoint(final_step)
            n = max(timing["steps"], 1)
            timing.update(data_s_per_step=timing["data_s"] / n, compute_s_per_step=timing["compute_s"] / n,
                          data_fraction=timing["data_s"] / max(timing["data_s"] + timing["compute_s"], 1e-12))
            save_weights(model, run_dir, step=final_step,
                         extra={"stopped_early": stopped_by != "steps", "stopped_by": stopped_by,
                                "elapsed_s": round(clock(), 3), "max_seconds": t.max_seconds,
                                "world_size": world, "precision": t.precision, "timing": timing})
            metrics.close()
            log.info("train %s: stopped at step %d (%s) after %.1f s; data wait %.1f %% of step time; weights in %s",
                     cfg.model["name"], final_step, stopped_by, clock(), 100 * timing["data_fraction"], run_dir)
            loss_figure(run_dir / METRICS, run_dir / "figures" / "loss.png")
    fabric.barrier()
    return run_dir


class _Quiet(contextlib.nullcontext):
    """The progress of a DDP rank other than 0: nothing to show."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass


def _floats(terms: dict[str, Any]) -> dict[str, float]:
    if not terms:
        return {}
    keys = list(terms)
    tensors = [torch.as_tensor(terms[k]).detach().float().reshape(()).cpu() for k in keys]
    return dict(zip(keys, torch.stack(tensors).tolist(), strict=True))


def _check_finite(values: dict[str, float], skipped: list[tuple[str, float]], step: int,
                  last_ckpt: Path | None) -> None:
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    if not bad and not skipped:
        return
    where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
    if bad:
        terms = ", ".join(f"'{k}' = {v}" for k, v in bad.items())
        raise TrainingError(f"non-finite loss at step {step}: {terms}; training stopped ({where})")
    opts = ", ".join(f"'{n}' ({v})" for n, v in skipped)
    raise TrainingError(f"non-finite loss at step {step} passed to optimizer {opts}; training stopped ({where})")


@torch.no_grad()
def _validate(model, dataset, fabric, t) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for b, batch in enumerate(eval_loader(dataset, batch_size=t.batch_size)):
        if t.val_batches is not None and b >= t.val_batches:
            break
        batch = fabric.to_device(batch)
        with fabric.autocast():
            values = _floats(model.validation_step(batch))
        k = len(next(iter(batch.values())))
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + v * k
        n += k
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def _lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])
