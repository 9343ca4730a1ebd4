"""Run configuration: ``model`` + ``data`` + ``train``, from YAML with ``--set`` overrides."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from histolatent.config import Config, ConfigError, apply_overrides, load_yaml, validate
from histolatent.machine import cpu_native_bf16

PRECISION_ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed",
                     "16": "16-mixed"}


class SchedulerConfig(Config):
    """LR schedule applied to every optimizer of the model."""

    name: Literal["none", "cosine", "step", "plateau"] = "none"
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps (none, cosine and step)")
    step_size: int = Field(1000, ge=1, description="step: decay every step_size steps")
    gamma: float = Field(0.5, gt=0, description="step: decay factor")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: LR multiplier")
    patience: int = Field(10, ge=0, description="plateau: validations without improvement")
    min_lr: float = Field(0.0, ge=0)
    horizon: Literal["steps", "time"] = Field(
        "steps", description="cosine: what the schedule runs over. 'time' ends it at the larger of "
        "step/steps and elapsed/train.max_seconds, so that the LR reaches its minimum when the time budget "
        "runs out; the LR then depends on wall time and a run is no longer bitwise reproducible")


class EarlyStoppingConfig(Config):
    patience: int = Field(20, ge=1, description="validations without improvement before stopping")
    min_delta: float = 0.0


class TrainConfig(Config):
    steps: int = Field(1000, ge=1, description="total optimisation steps")
    max_seconds: float | None = Field(None, gt=0, description="time budget: stop after the step during which "
                                      "the training loop's wall time (summed over resumed sessions) passes it")
    batch_size: int = Field(64, ge=1, description="per-device batch size")
    seed: int = 0
    accelerator: Literal["auto", "cpu", "cuda", "mps", "gpu"] = "cpu"
    devices: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    precision: str = Field("32-true", description="32-true, bf16-mixed, 16-mixed, bf16-true, or auto: bf16-mixed "
                           "where the hardware runs bf16 natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 or "
                           "AMX), else 32-true; emulated bf16 is many times slower than fp32")
    num_workers: int = Field(0, ge=0, description="data-loader processes building batches beside the steps")
    prefetch: int = Field(0, ge=0, description="with num_workers 0: batches a thread of the training process builds "
                          "ahead (no process start, no copies between processes: for batches that are cheap but "
                          "not free next to a small model); the data set must draw its randomness from its own seeds")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's, or "
                                "cores / processes under DDP); 1 avoids spin-waiting on a busy machine")
    checkpoint_every: int = Field(0, ge=0, description="0: only at the end")
    keep_checkpoints: int = Field(2, ge=1)
    val_every: int = Field(0, ge=0, description="0: no validation")
    val_batches: int | None = Field(None, ge=1, description="cap on validation batches")
    monitor: str = Field("val/loss", description="metric for plateau/early stopping (lower is better)")
    log_every: int = Field(10, ge=1)
    grad_clip: float | None = Field(None, gt=0, description="max gradient L2 norm per optimizer")
    scheduler: SchedulerConfig = SchedulerConfig()
    early_stopping: EarlyStoppingConfig | None = None
    tensorboard: bool = False
    progress: bool = Field(True, description="draw a progress bar when stderr is a terminal (progress lines go "
                           "to the log and the run's train.log either way)")
    progress_every_s: float = Field(30.0, ge=0, description="seconds between progress lines in the log")
    deterministic: bool = True
    init_from: str | None = Field(None, description="warm start: a finished run folder (or weights file) whose "
                                  "tensors named train.init_prefix* are copied into the new model before step 0 "
                                  "(not on resume)")
    init_prefix: str = Field("backbone.", description="which tensors train.init_from copies (a name prefix)")

    @model_validator(mode="after")
    def _one_way_to_load_ahead(self) -> TrainConfig:
        if self.prefetch and self.num_workers:
            raise ValueError(f"train.prefetch={self.prefetch} is the thread for num_workers=0; with "
                             f"num_workers={self.num_workers} the worker processes load ahead: drop one of them")
        return self

    @model_validator(mode="after")
    def _time_horizon_needs_budget(self) -> TrainConfig:
        if self.scheduler.horizon == "time" and self.scheduler.name == "cosine" and self.max_seconds is None:
            raise ValueError("train.scheduler.horizon=time needs train.max_seconds (the time the schedule runs over)")
        return self

    @model_validator(mode="after")
    def _validation_driven_options_need_validation(self) -> TrainConfig:
        # the engine steps a plateau scheduler and counts early-stopping patience at validations
        # only, and builds a plateau scheduler without warmup: refuse what it would ignore
        s = self.scheduler
        if s.name == "plateau" and s.warmup_steps:
            raise ValueError(f"train.scheduler.name=plateau has no warmup: drop train.scheduler.warmup_steps="
                             f"{s.warmup_steps} (or use cosine/step/none)")
        if not self.val_every:
            if s.name == "plateau":
                raise ValueError("train.scheduler.name=plateau acts on validation results: set train.val_every > 0")
            if self.early_stopping is not None:
                raise ValueError("train.early_stopping counts validations: set train.val_every > 0")
        return self

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        v = PRECISION_ALIASES.get(str(v), str(v))
        allowed = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "auto")
        if v not in allowed:
            raise ValueError(f"precision must be one of {allowed} (or fp32/bf16/fp16)")
        return v


def native_bf16(accelerator: str) -> bool:
    """Whether ``accelerator`` ("cpu", "cuda", "gpu", "mps", "auto") runs bf16 matmuls and convs natively."""
    import torch

    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return False
    return cpu_native_bf16()


def resolve_precision(precision: str, accelerator: str) -> str:
    """The precision a run uses: ``auto`` becomes bf16-mixed where bf16 is native, else 32-true.

    >>> resolve_precision("32-true", "cpu")
    '32-true'
    >>> resolve_precision("auto", "cpu") == ("bf16-mixed" if native_bf16("cpu") else "32-true")
    True
    """
    if precision != "auto":
        return precision
    return "bf16-mixed" if native_bf16(accelerator) else "32-true"


#: ``data.name`` of a run trained on data handed to :func:`~histolatent.train.fit` in memory; the
#: rest of its ``data`` entry describes that data (items, fields, fingerprint) and is not validated.
IN_MEMORY = "in-memory"


class RunConfig(Config):
    """A whole run. ``model`` and ``data`` hold ``name`` plus that entry's options.

    ``data`` may be left out when the data are handed to ``fit(..., data=...)``.
    """

    model: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    out: str | None = Field(None, description="run folder (default runs/<model>-<time>)")


def _check_entry(section: str, entry: dict[str, Any], source: str, registry_lookup) -> None:
    if "name" not in entry:
        raise ConfigError(f"{source}: key '{section}.name' is missing")
    cls = registry_lookup(entry["name"])
    opts = {k: v for k, v in entry.items() if k != "name"}
    validate(cls.Config, opts, source=source, prefix=section)


def _describe(entry: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.items() if k in ("items", "fields"))


def validate_run_config(data: dict[str, Any], *, source: str, in_memory: bool = False) -> RunConfig:
    """Validate a run config, including the model's and dataset's own options.

    With ``in_memory`` (data handed to ``fit``) the ``data`` entry is left to ``fit``; without
    it, ``data.name`` must be a registered dataset.
    """
    from histolatent.datasets import dataset_class
    from histolatent.models import model_class

    cfg = validate(RunConfig, data, source=source)
    try:
        _check_entry("model", cfg.model, source, model_class)
        if not in_memory:
            if cfg.data.get("name") == IN_MEMORY:
                raise ConfigError(f"{source}: this run was trained on data held in memory "
                                  f"({_describe(cfg.data)}); pass the same data to fit(..., data=...)")
            _check_entry("data", cfg.data, source, dataset_class)
    except ConfigError:
        raise
    except ValueError as err:  # unknown registry name
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_run_config(path: str | os.PathLike, overrides: list[str] | None = None, *,
                    in_memory: bool = False) -> RunConfig:
    """Read a YAML run config, apply ``a.b=value`` overrides, validate everything."""
    data = apply_overrides(load_yaml(path), overrides or [])
    return validate_run_config(data, source=str(path), in_memory=in_memory)
