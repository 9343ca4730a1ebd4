"""DRL's global context homogeneity losses (papers/drl_deformation-representation-learning.txt §3.4).

Images are compared by the Gaussian function of their dot product (Eq. 7),
``K(x_i, x_j) = exp(f_i . f_j / tau)``, where ``f = F_G(x)`` is the L2-normalised global
descriptor and ``tau = 1`` in the paper (a temperature is offered for other settings).
``f`` are the original images, ``f_hat`` their deformed counterparts, row ``i`` of both is
the same image.

* Hard target (Eq. 8): ``-log K(x_i, x^_i) / sum_j K(x_i, x^_j)`` -- each image must pick
  its own deformed copy among the deformed batch (cross-entropy over ``f f_hat^T``).
* Soft target (Eqs. 9-10): the target of ``x_i`` is the kernel-weighted mean of the
  deformed batch, ``x~_i = sum_j K(x_i, x^_j) x^_j / sum_j K(x_i, x^_j)`` (in feature space,
  not re-normalised), and ``-log K(x_i, x~_i) / sum_j K(x_j, x~_i)``: the soft target must
  pick ``x_i`` among the original batch.

The equations sum over the batch; ``reduction="mean"`` (the default) divides by ``N`` so
that the weight lambda does not depend on the batch size (``"sum"`` is the equations'
literal form). Pure tensor functions of ``(N, D)`` embeddings; computed in float32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Reduction", "hard_target_nce", "kernel_logits", "soft_target_nce", "soft_targets"]

Reduction = Literal["mean", "sum"]


def _check(f: Tensor, f_hat: Tensor) -> None:
    if f.ndim != 2 or f.shape != f_hat.shape:
        raise ValueError(f"expected two (N, D) embeddings of the same shape, got {tuple(f.shape)} and "
                         f"{tuple(f_hat.shape)}")


def kernel_logits(a: Tensor, b: Tensor, temperature: float = 1.0) -> Tensor:
    """``log K`` of Eq. 7 for every pair: ``a b^T / tau``, ``(N, M)`` from ``a (N, D)``, ``b (M, D)``."""
    return a.float() @ b.float().T / temperature


def hard_target_nce(f: Tensor, f_hat: Tensor, *, temperature: float = 1.0, reduction: Reduction = "mean") -> Tensor:
    """Hard-target GCH loss (Eq. 8) of originals ``f (N, D)`` and deformed copies ``f_hat (N, D)``."""
    _check(f, f_hat)
    target = torch.arange(f.shape[0], device=f.device)
    return F.cross_entropy(kernel_logits(f, f_hat, temperature), target, reduction=reduction)


def soft_targets(f: Tensor, f_hat: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Eq. 9: ``x~_i = sum_j softmax_j(log K(x_i, x^_j)) f_hat_j``, ``(N, D)``."""
    _check(f, f_hat)
    return torch.softmax(kernel_logits(f, f_hat, temperature), dim=1) @ f_hat.float()


def soft_target_nce(f: Tensor, f_hat: Tensor, *, temperature: float = 1.0, reduction: Reduction = "mean") -> Tensor:
    """Soft-target GCH loss (Eq. 10): each soft target ``x~_i`` must pick ``x_i`` among the originals."""
    t = soft_targets(f, f_hat, temperature=temperature)
    logits = kernel_logits(t, f, temperature)  # (i, j) = log K(x_j, x~_i): a softmax over j for each i
    target = torch.arange(f.shape[0], device=f.device)
    return F.cross_entropy(logits, target, reduction=reduction)
