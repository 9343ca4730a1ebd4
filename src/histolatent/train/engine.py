"""One training engine for every method, on Lightning Fabric.

``fit(config)`` trains the registered model named in ``config.model`` on the registered
dataset named in ``config.data`` and returns the run folder. The model owns its update rule
(``training_step(batch, optimizers, step)``); the engine owns everything around it:
devices and precision, DDP, seeds, resumable data order, checkpoints, validation, LR
schedules, early stopping, NaN detection, progress and metrics.

Determinism: each step re-seeds torch/numpy/random from (seed, rank, step), and batch ``s``
is a pure function of (seed, s, rank); with the same thread count a resumed run ends with
bitwise the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.config import apply_overrides, dump_yaml, load_yaml
from histolatent.datasets import create_dataset
from histolatent.errors import InputError, TrainingError
from histolatent.io.atomic import write_text_atomic
from histolatent.models import create_model
from histolatent.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from histolatent.train.config import RunConfig, load_run_config, validate_run_config
from histolatent.train.data import eval_loader, train_loader
from histolatent.train.metrics_log import MetricsLog
from histolatent.train.optim import EngineOptimizers, build_scheduler
from histolatent.train.progress import TrainProgress
from histolatent.train.run import CONFIG, METRICS, new_run_dir, save_weights

_RUN_DIR_ENV = "HISTOLATENT_RUN_DIR"  # shares the run folder with DDP child processes


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed every RNG from (seed, rank, step): each step's randomness is reproducible alone."""
    s = (seed * 1_000_003 + rank * 7_919 + step) % (2**31 - 1)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def fit(config: RunConfig | str | os.PathLike, *, overrides: list[str] | None = None,
        out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None) -> Path:
    """Train and return the run folder.

    Parameters
    ----------
    config : RunConfig or path to YAML
        The run; ignored when ``resume`` is given (the run's own config.yaml is used).
    overrides : list of "a.b=value"
        Applied on top of the YAML (also on resume, e.g. ``train.steps=2000`` to extend).
    out : path
        Run folder (default: ``config.out`` or ``runs/<model>-<time>``).
    resume : path
        A run folder with checkpoints: continue exactly where its last checkpoint stopped.
    """
    resume_ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG).is_file():
            raise InputError(f"--resume {str(run_dir)!r}: no {CONFIG} there; not a histolatent run folder")
        cfg = load_run_config(run_dir / CONFIG, overrides)
        resume_ckpt = latest_checkpoint(run_dir)
        if resume_ckpt is None:
            raise InputError(f"--resume {str(run_dir)!r}: no checkpoint to resume from in {run_dir / 'checkpoints'}")
    else:
        if isinstance(config, RunConfig):
            data, source = config.model_dump(mode="json"), "<RunConfig>"
        else:
            data, source = load_yaml(config), str(config)
        cfg = validate_run_config(apply_overrides(data, overrides or []), source=source)
        run_dir = Path(os.environ.get(_RUN_DIR_ENV) or out or cfg.out or new_run_dir("runs", cfg.model["name"]))
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    try:
        return _launch(cfg, run_dir, resume_ckpt)
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)


def _launch(cfg: RunConfig, run_dir: Path, resume_ckpt: Path | None) -> Path:
    from lightning.fabric import Fabric

    t = cfg.train
    fabric = Fabric(accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, precision=t.precision)
    if fabric.world_size > 1 or t.strategy != "auto":
        fabric.launch(_train, cfg, run_dir, resume_ckpt)
    else:
        _train(fabric, cfg, run_dir, resume_ckpt)
    return run_dir


def _train(fabric, cfg: RunConfig, run_dir: Path, resume_ckpt: Path | None) -> Path:
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
    model = create_model(cfg.model["name"], **model_opts).to(fabric.device)
    raw_opts = model.configure_optimizers()
    names = list(raw_opts)
    wrapped = fabric.setup_optimizers(*raw_opts.values())
    wrapped = wrapped if isinstance(wrapped, (list, tuple)) else [wrapped]
    optimizers = EngineOptimizers(fabric, dict(zip(names, wrapped, strict=True)), grad_clip=t.grad_clip)
    schedulers = {n: s for n in names if (s := build_scheduler(raw_opts[n], t.scheduler, t.steps)) is not None}
    plateau = t.scheduler.name == "plateau"

    start_step, best, bad = 0, float("inf"), 0
    if resume_ckpt is not None:
        state = load_checkpoint(resume_ckpt)
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

    data_opts = {k: v for k, v in cfg.data.items() if k != "name"}
    train_ds = create_dataset(cfg.data["name"], split="train", seed=t.seed, **data_opts)
    val_ds = create_dataset(cfg.data["name"], split="val", seed=t.seed, **data_opts) if t.val_every else None
    loader = train_loader(train_ds, batch_size=t.batch_size, seed=t.seed, total_steps=t.steps,
                          start_step=start_step, rank=rank, world_size=world, num_workers=t.num_workers)

    log = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "figures").mkdir(exist_ok=True)
        resolved = cfg.model_dump(mode="json")
        resolved["out"] = str(run_dir)
        write_text_atomic(run_dir / CONFIG, dump_yaml(resolved))
        log = MetricsLog(run_dir / METRICS, resume_step=start_step if resume_ckpt else None,
                         tensorboard_dir=run_dir / "tensorboard" if t.tensorboard else None)
    fabric.barrier()

    def checkpoint(step: int) -> Path | None:
        if not is_main:
            return None
        state = {"model": model.state_dict(), "optimizers": {n: raw_opts[n].state_dict() for n in names},
                 "schedulers": {n: s.state_dict() for n, s in schedulers.items()}, "best": best, "bad": bad}
        return save_checkpoint(run_dir, step, state, keep=t.keep_checkpoints)

    last_ckpt = resume_ckpt
    sums: dict[str, float] = {}
    n_sum = 0
    t0 = time.perf_counter()
    step = start_step
    stopped_early = False
    progress = TrainProgress(total=t.steps, start=start_step, items_per_step=t.batch_size * world,
                             enabled=t.progress and is_main, label=cfg.model["name"])
    with progress:
        for i, batch in enumerate(loader):
            step = start_step + i
            seed_step(t.seed, rank, step)
            batch = fabric.to_device(batch)
            optimizers.nonfinite.clear()
            model.train()
            with fabric.autocast():
                terms = model.training_step(batch, optimizers, step)
            values = _floats(terms)
            _check_finite(values, optimizers.nonfinite, step, last_ckpt)
            for s in schedulers.values():
                if not plateau:
                    s.step()
            done = step + 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            n_sum += 1
            progress.advance(values)
            if is_main and (done % t.log_every == 0 or done == t.steps):
                log.log(done, "train", {k: v / n_sum for k, v in sums.items()},
                        elapsed_s=time.perf_counter() - t0, lr=_lr(raw_opts[names[0]]))
                sums, n_sum = {}, 0
            if val_ds is not None and done % t.val_every == 0:
                val = _validate(model, val_ds, fabric, t)
                if is_main:
                    log.log(done, "val", val, elapsed_s=time.perf_counter() - t0, lr=_lr(raw_opts[names[0]]))
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
                    stopped_early = True
            if t.checkpoint_every and done % t.checkpoint_every == 0:
                last_ckpt = checkpoint(done) or last_ckpt
                fabric.barrier()
            if stopped_early:
                break
    final_step = step + 1 if t.steps > start_step else start_step
    if is_main:
        if not (t.checkpoint_every and final_step % t.checkpoint_every == 0):
            checkpoint(final_step)
        save_weights(model, run_dir, step=final_step,
                     extra={"stopped_early": stopped_early, "world_size": world, "precision": t.precision})
        log.close()
        _loss_figure(run_dir)
    fabric.barrier()
    return run_dir


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


def _loss_figure(run_dir: Path) -> None:
    from histolatent.viz.curves import training_curves

    try:
        training_curves(run_dir / METRICS, run_dir / "figures" / "loss.png")
    except ValueError:  # nothing logged
        pass
