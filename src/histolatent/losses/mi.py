"""InfoGAN's variational mutual-information terms (Chen et al. 2016; paper 4, Eq. 1).

For a code ``c`` fed to the generator and an auxiliary distribution ``Q(c | x)`` predicted
from the generated image, ``I(c; G(z, c)) >= H(c) + E[log Q(c | G(z, c))]``. Maximising the
bound over G and Q is minimising the negative log-likelihood of the code:

* categorical code (``K`` classes, uniform prior): ``NLL = CE(logits, c)``, and the bound
  is ``log K - NLL`` nats;
* continuous code with a factored Gaussian ``Q``: ``NLL = 0.5 ((c - mu) / sigma)^2 +
  log sigma + 0.5 log 2 pi`` per dimension (sigma fixed to 1 in Chen et al.'s experiments).

Yuan & Suh (2018, §3.3) use one 3- or 5-class categorical code with weight 1.

Deep InfoMax (Hjelm et al. 2019) and DRL (papers/drl_deformation-representation-learning.txt
§3.3) estimate the mutual information between two variables with a critic ``T`` scored on
pairs drawn from the joint (positives) and from the product of marginals (negatives), by
the Jensen-Shannon lower bound (DRL Eq. 4)::

    I_JSD = E_P[-softplus(-T)] - E_Q[softplus(T)]

(``sigmoid(T)`` is the critic's probability that a pair is positive; Deep InfoMax's code adds
``2 log 2`` so that the bound is 0 for an uninformative critic, a constant without gradient).
:func:`jsd_mi` takes the two sets of scores; :func:`in_batch_jsd_mi` forms them the Deep
InfoMax way, by dot products of every (local feature, global vector) pair of a batch.
:func:`prior_discriminator_loss` / :func:`prior_generator_loss` are DIM's prior matching: a
discriminator tells samples of the prior from the encoder's codes, the encoder is trained
to fool it (the non-saturating generator loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["categorical_code_nll", "categorical_mi_lower_bound", "gaussian_code_nll", "in_batch_jsd_mi", "jsd_mi",
           "pairwise_jsd_mi", "prior_discriminator_loss", "prior_generator_loss"]


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


def jsd_mi(t_pos: Tensor, t_neg: Tensor) -> Tensor:
    """The Jensen-Shannon MI estimate ``E_P[-sp(-T)] - E_Q[sp(T)]`` (DRL Eq. 4), a scalar.

    ``t_pos``, ``t_neg``: critic scores (logits) of positive and negative pairs, any shapes;
    each expectation is the mean over its tensor. Bounded above by 0 (reached by a critic
    that separates the pairs with infinite confidence); ``-2 log 2`` for ``T = 0``.
    Maximising it is minimising the binary cross-entropy of the critic.
    """
    return -F.softplus(-t_pos.float()).mean() - F.softplus(t_neg.float()).mean()


def pairwise_jsd_mi(scores: Tensor) -> Tensor:
    """:func:`jsd_mi` of a square table of pair scores ``(N, N, ...)``: ``[i, i]`` positive, ``[i, j != i]`` negative.

    Trailing axes (e.g. locations) are averaged with the pairs. The two sets are selected by
    masks (multiplied, not indexed), which keeps the backward pass deterministic on CUDA.
    """
    n = scores.shape[0]
    if n < 2 or scores.ndim < 2 or scores.shape[1] != n:
        raise ValueError(f"pairwise_jsd_mi: expected scores (N >= 2, N, ...), got {tuple(scores.shape)}")
    s = scores.float()
    eye = torch.eye(n, device=s.device, dtype=s.dtype).reshape(n, n, *([1] * (s.ndim - 2))).expand_as(s)
    per = s[0, 0].numel()  # cells of each pair
    e_pos = (F.softplus(-s) * eye).sum() / (n * per)
    e_neg = (F.softplus(s) * (1 - eye)).sum() / (n * (n - 1) * per)
    return -e_pos - e_neg


def in_batch_jsd_mi(local: Tensor, global_: Tensor) -> Tensor:
    """Deep InfoMax's local-global JSD estimate with the other images of the batch as negatives.

    ``local (N, D, L)``: a D-dimensional embedding at each of L locations; ``global_ (N, D)``.
    Every pair is scored ``u[i, j, l] = <global_i, local_j[:, l]>``; ``i = j`` are positives,
    ``i != j`` negatives (``N >= 2``). Returns :func:`jsd_mi` of the two sets, each averaged
    over its pairs and locations (:func:`pairwise_jsd_mi`).
    """
    if global_.shape != local.shape[:2]:
        raise ValueError(f"in_batch_jsd_mi: expected local (N >= 2, D, L) and global (N, D), got "
                         f"{tuple(local.shape)} and {tuple(global_.shape)}")
    return pairwise_jsd_mi(torch.einsum("id,jdl->ijl", global_.float(), local.float()))  # (N, N, L)


def prior_discriminator_loss(t_prior: Tensor, t_code: Tensor) -> Tensor:
    """The prior discriminator's loss ``E[sp(-T(v))] + E[sp(T(y))]``, ``v`` ~ prior, ``y`` codes (scalar)."""
    return F.softplus(-t_prior.float()).mean() + F.softplus(t_code.float()).mean()


def prior_generator_loss(t_code: Tensor) -> Tensor:
    """The encoder's prior-matching loss ``E[sp(-T(y))] = -E[log sigmoid T(y)]`` (non-saturating), a scalar."""
    return F.softplus(-t_code.float()).mean()
