"""The optimizer handle given to ``training_step`` and the LR schedulers.

``update(loss, name)`` does what a method's update rule needs and nothing it shouldn't:
zero grads, backward through Fabric's precision plugin (loss scaling for fp16), average
gradients across processes (DDP), clip, step. A non-finite loss skips the update and is
reported by the engine with the step and the term, so weights never become NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from histolatent.config import ConfigError
from histolatent.train.config import SchedulerConfig


class EngineOptimizers(dict):
    """``name -> optimizer`` (Fabric-wrapped) with :meth:`update`; see the module docstring."""

    def __init__(self, fabric, optimizers: dict[str, torch.optim.Optimizer], *, grad_clip: float | None) -> None:
        super().__init__(optimizers)
        self._fabric = fabric
        self._grad_clip = grad_clip
        self.nonfinite: list[tuple[str, float]] = []  # (optimizer name, loss value) this step

    def _params(self, name: str) -> list[Tensor]:
        return [p for g in self[name].param_groups for p in g["params"]]

    def update(self, loss: Tensor, name: str = "main", *, retain_graph: bool = False) -> None:
        opt = self[name]
        if not torch.isfinite(loss.detach()).all():
            self.nonfinite.append((name, float(loss.detach().float().mean())))
            opt.zero_grad(set_to_none=True)
            return
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=loss.device.type, enabled=False):
            self._fabric.backward(loss, retain_graph=retain_graph)
        params = [p for p in self._params(name) if p.grad is not None]
        if self._fabric.world_size > 1 and params:
            _allreduce_mean([p.grad for p in params], self._fabric.world_size)
        if self._grad_clip is not None and params:
            self._fabric.strategy.precision.unscale_gradients(opt.optimizer)
            torch.nn.utils.clip_grad_norm_(params, self._grad_clip)
        opt.step()


def _allreduce_mean(grads: list[Tensor], world_size: int) -> None:
    """Average gradients across processes with one flat all-reduce."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset: offset + n].view_as(g))
        offset += n


def build_scheduler(opt: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int, *,
                    max_seconds: float | None = None, clock: Callable[[], float] | None = None):
    """A per-step LR scheduler (or a plateau scheduler stepped at validation), or None.

    With ``cfg.horizon == "time"`` the cosine runs over the larger of the steps done and the
    time used: ``clock()`` returns the training seconds so far, ``max_seconds`` the budget.
    """
    if cfg.name == "none" and cfg.warmup_steps == 0:
        return None
    if cfg.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.factor,
                                                          patience=cfg.patience, min_lr=cfg.min_lr)
    by_time = cfg.horizon == "time" and cfg.name == "cosine"
    if by_time and (max_seconds is None or clock is None):
        raise ConfigError("train.scheduler.horizon=time needs a time budget: set train.max_seconds")
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        s = step - warm
        if cfg.name == "cosine":
            span = max(1, total_steps - warm)
            done = min(s, span) / span
            if by_time:
                done = max(done, min(1.0, clock() / max_seconds))
            return 0.5 * (1 + math.cos(math.pi * done))
        if cfg.name == "step":
            return cfg.gamma ** (s // cfg.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
