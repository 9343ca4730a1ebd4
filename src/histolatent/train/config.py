"""Run configuration: ``model`` + ``data`` + ``train``, from YAML with ``--set`` overrides."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from histolatent.config import Config, ConfigError, apply_overrides, load_yaml, validate

PRECISION_ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed",
                     "16": "16-mixed"}


class SchedulerConfig(Config):
    """LR schedule applied to every optimizer of the model."""

    name: Literal["none", "cosine", "step", "plateau"] = "none"
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(1000, ge=1, description="step: decay every step_size steps")
    gamma: float = Field(0.5, gt=0, description="step: decay factor")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: LR multiplier")
    patience: int = Field(10, ge=0, description="plateau: validations without improvement")
    min_lr: float = Field(0.0, ge=0)


class EarlyStoppingConfig(Config):
    patience: int = Field(20, ge=1, description="validations without improvement before stopping")
    min_delta: float = 0.0


class TrainConfig(Config):
    steps: int = Field(1000, ge=1, description="total optimisation steps")
    batch_size: int = Field(64, ge=1, description="per-device batch size")
    seed: int = 0
    accelerator: Literal["auto", "cpu", "cuda", "mps", "gpu"] = "cpu"
    devices: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    precision: str = "32-true"
    num_workers: int = Field(0, ge=0)
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
    progress: bool = True
    deterministic: bool = True

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        v = PRECISION_ALIASES.get(str(v), str(v))
        allowed = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
        if v not in allowed:
            raise ValueError(f"precision must be one of {allowed} (or fp32/bf16/fp16)")
        return v


class RunConfig(Config):
    """A whole run. ``model`` and ``data`` hold ``name`` plus that entry's options."""

    model: dict[str, Any]
    data: dict[str, Any]
    train: TrainConfig = TrainConfig()
    out: str | None = Field(None, description="run folder (default runs/<model>-<time>)")


def _check_entry(section: str, entry: dict[str, Any], source: str, registry_lookup) -> None:
    if "name" not in entry:
        raise ConfigError(f"{source}: key '{section}.name' is missing")
    cls = registry_lookup(entry["name"])
    opts = {k: v for k, v in entry.items() if k != "name"}
    validate(cls.Config, opts, source=source, prefix=section)


def validate_run_config(data: dict[str, Any], *, source: str) -> RunConfig:
    """Validate a run config, including the model's and dataset's own options."""
    from histolatent.datasets import dataset_class
    from histolatent.models import model_class

    cfg = validate(RunConfig, data, source=source)
    try:
        _check_entry("model", cfg.model, source, model_class)
        _check_entry("data", cfg.data, source, dataset_class)
    except ConfigError:
        raise
    except ValueError as err:  # unknown registry name
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_run_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``a.b=value`` overrides, validate everything."""
    data = apply_overrides(load_yaml(path), overrides or [])
    return validate_run_config(data, source=str(path))
