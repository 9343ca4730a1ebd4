"""The contract every representation model in histolatent implements.

A model owns its update rule: :meth:`RepresentationModel.training_step` receives an
:class:`Optimizers` handle and calls ``optimizers.update(loss, "name")`` as often as the
method needs (five critic updates then one generator update for WGAN-GP, alternating VAE
and discriminator updates for paper 0's Eq. 6). The engine supplies the handle, which takes
care of mixed precision, DDP gradient sync and gradient clipping; tests and notebooks can
use :class:`PlainOptimizers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from histolatent.config import Config

Batch = Mapping[str, Any]


class Optimizers(Protocol):
    """What a model's ``training_step`` may do with its optimizers."""

    def __getitem__(self, name: str) -> torch.optim.Optimizer: ...

    def update(self, loss: Tensor, name: str = "main", *, retain_graph: bool = False) -> None:
        """Zero the grads of optimizer ``name``, back-propagate ``loss``, clip, step."""
        ...


class PlainOptimizers(dict):
    """:class:`Optimizers` without an engine: plain backward and step (no clipping)."""

    def update(self, loss: Tensor, name: str = "main", *, retain_graph: bool = False) -> None:
        opt = self[name]
        opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph)
        opt.step()


class RepresentationModel(nn.Module):
    """Base class: a torch module with a config, an update rule and an encoder.

    Subclasses set ``Config`` (a :class:`~histolatent.config.Config` holding the paper's
    defaults) and implement :meth:`configure_optimizers`, :meth:`training_step` and
    :meth:`encode`. Generative models also implement ``decode`` and/or ``sample``.
    """

    Config: ClassVar[type[Config]]
    #: registry name, set by :func:`histolatent.models.registry.register_model`
    registry_name: ClassVar[str] = ""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    # -- training -----------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; the name ``"main"`` is the default for ``update``."""
        raise NotImplementedError

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor | float]:
        """One update; returns the loss terms to log (each checked for NaN/inf)."""
        raise NotImplementedError

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor | float]:
        """Validation terms on one batch (averaged over the validation set by the engine)."""
        return {}

    # -- inference ----------------------------------------------------------------------
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Named parts of the representation, e.g. ``{"z": ..., "mu": ...}``."""
        raise NotImplementedError

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        """A small random batch of the right shape, for smoke tests and benchmarks."""
        raise NotImplementedError

    # -- misc ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


class LossTermsModel(RepresentationModel):
    """A model trained by one Adam (``config.lr``) on the ``"loss"`` of :meth:`batch_terms`.

    Subclasses implement ``loss_terms(x) -> {"loss": ..., other terms}`` on ``batch["image"]``,
    or :meth:`batch_terms` when the loss needs more of the batch (labels, masks); training
    logs every term (detached) and validation averages them.
    """

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def batch_terms(self, batch: Batch) -> dict[str, Tensor]:
        """The loss terms of one batch (default: :meth:`loss_terms` of ``batch["image"]``)."""
        return self.loss_terms(batch["image"])

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        terms = self.batch_terms(batch)
        optimizers.update(terms["loss"], "main")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return self.batch_terms(batch)
