"""InfoGAN's variational mutual-information terms (Chen et al. 2016; paper 4, Eq. 1).

For a code ``c`` fed to the generator and an auxiliary distribution ``Q(c | x)`` predicted
from the generated image, ``I(c; G(z, c)) >= H(c) + E[log Q(c | G(z, c))]``. Maximising the
bound over G and Q is minimising the negative log-likelihood of the code:

* categorical code (``K`` classes, uniform prior): ``NLL = CE(logits, c)``, and the bound
  is ``log K - NLL`` nats;
* continuous code with a factored Gaussian ``Q``: ``NLL = 0.5 ((c - mu) / sigma)^2 +
  log sigma + 0.5 log 2 pi`` per dimension (sigma fixed to 1 in Chen et al.'s experiments).

Yuan & Suh (2018, §3.3) use one 3- or 5-class categorical code with weight 1.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

__all__ = ["categorical_code_nll", "categorical_mi_lower_bound", "gaussian_code_nll"]


def categorical_code_nll(logits: Tensor, c: Tensor) -> Tensor:
    """Mean NLL of the categorical code: ``-mean_b log softmax(logits_b)[c_b]`` (nats).

    ``logits`` (B, K) from the Q head, ``c`` (B,) int64 codes in ``[0, K)``.
    """
    return F.cross_entropy(logits.float(), c.long())


def categorical_mi_lower_bound(logits: Tensor, c: Tensor) -> Tensor:
    """``log K - NLL``: the variational lower bound on ``I(c; G(z, c))`` for uniform ``c``."""
    return math.log(logits.shape[-1]) - categorical_code_nll(logits, c)


def gaussian_code_nll(mu: Tensor, c: Tensor, log_sigma: Tensor | None = None) -> Tensor:
    """Mean NLL (nats per sample) of a continuous code under ``N(mu, sigma^2)``, summed over dims.

    ``mu``, ``c`` (B, D); ``log_sigma`` (B, D) or None for sigma = 1.
    """
    mu, c = mu.float(), c.float()
    if log_sigma is None:
        per = 0.5 * (c - mu) ** 2
    else:
        ls = log_sigma.float()
        per = 0.5 * ((c - mu) * (-ls).exp()) ** 2 + ls
    return (per + 0.5 * math.log(2 * math.pi)).sum(-1).mean()
