"""KL terms and reconstruction likelihoods (losses/) against torch.distributions, the slow reference."""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from histolatent.losses.kl import kl_normal, kl_normal_standard, target_kl
from histolatent.losses.likelihood import gaussian_nll, reconstruction_nll


def test_gaussian_kls_match_torch_distributions():
    torch.manual_seed(0)
    mu, ls = torch.randn(5), torch.randn(5) * 0.3
    torch.testing.assert_close(kl_normal(mu, ls, 0.7), kl_divergence(Normal(mu, ls.exp()), Normal(0.0, 0.7)))
    mu3, lv3 = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    ref = kl_divergence(Normal(mu3, (0.5 * lv3).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_normal_standard(mu3, lv3, dim=1), ref)
    assert kl_normal_standard(mu3, lv3).shape == (2, 4)


def test_target_kl_is_eq5_written_out():
    torch.manual_seed(1)
    b, z, n = 2, 3, 6
    log_q = torch.log_softmax(torch.randn(b, n), 1)
    log_prior = torch.log_softmax(torch.randn(n), 0)
    th_mu, th_ls = torch.randn(b, n), torch.randn(b, n) * 0.2
    z_mu, z_ls = torch.randn(b, z, n), torch.randn(b, z, n) * 0.2
    out = target_kl(log_q, log_prior, th_mu, th_ls, z_mu, z_ls, 0.4)
    q = log_q.exp()
    kl_th = kl_divergence(Normal(th_mu, th_ls.exp()), Normal(0.0, 0.4))
    kl_z = kl_divergence(Normal(z_mu, z_ls.exp()), Normal(0.0, 1.0)).sum(1)
    ref_tr = (q * (log_q - log_prior)).sum(1)
    torch.testing.assert_close(out["kl_tr"], ref_tr)
    torch.testing.assert_close(out["kl"], ref_tr + (q * (kl_th + kl_z)).sum(1))


def test_reconstruction_nll_matches_the_distributions():
    torch.manual_seed(2)
    y = torch.rand(2, 3, 4, 5)
    pix = y.reshape(2, 3, 20).transpose(1, 2)  # (B, P, C)
    logits = torch.randn(2, 20, 3)
    ref = -Bernoulli(logits=logits, validate_args=False).log_prob(pix).sum((1, 2))  # soft targets
    torch.testing.assert_close(reconstruction_nll(logits, y, "bernoulli"), ref)
    mean = torch.rand(2, 20, 3)
    ref = -Normal(mean, 0.1).log_prob(pix).sum((1, 2))
    torch.testing.assert_close(reconstruction_nll(mean, y, "gaussian", fixed_std=0.1), ref)
    raw = torch.full((2, 20, 3), -50.0)  # a learned std far below the floor is floored at min_std
    out = reconstruction_nll(torch.cat([mean, raw], -1), y, "gaussian", min_std=0.05)
    torch.testing.assert_close(out, -Normal(mean, 0.05).log_prob(pix).sum((1, 2)))
    assert math.isfinite(float(reconstruction_nll(logits.half(), y, "bernoulli").sum()))
    torch.testing.assert_close(gaussian_nll(y + 1.0, y, 0.5), torch.full((2,), 0.5 * 60 / 0.25))
