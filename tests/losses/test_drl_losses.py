"""The MI and NCE losses of DRL and Deep InfoMax against direct loop computations, and the
JSD estimator separating matched from mismatched pairs on a toy problem."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from histolatent.losses.mi import (
    in_batch_jsd_mi,
    jsd_mi,
    pairwise_jsd_mi,
    prior_discriminator_loss,
    prior_generator_loss,
)
from histolatent.losses.nce import hard_target_nce, kernel_logits, soft_target_nce, soft_targets


def _sp(v: float) -> float:
    return math.log1p(math.exp(v))


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def test_jsd_mi_is_eq4_and_bounded():
    pos, neg = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([[0.3, -0.2], [1.5, -3.0]])
    want = -sum(_sp(-v) for v in pos.tolist()) / 3 - sum(_sp(v) for v in neg.flatten().tolist()) / 4
    assert float(jsd_mi(pos, neg)) == pytest.approx(want, rel=1e-6)
    assert float(jsd_mi(torch.zeros(4), torch.zeros(4))) == pytest.approx(-2 * math.log(2), rel=1e-6)
    assert -1e-3 < float(jsd_mi(torch.full((3,), 20.0), torch.full((3,), -20.0))) <= 0


def test_in_batch_jsd_mi_matches_a_loop_over_pairs_and_locations():
    g = torch.Generator().manual_seed(0)
    local, glob = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, generator=g)
    pos, neg = [], []
    for i in range(3):
        for j in range(3):
            for k in range(5):
                u = float(sum(glob[i, d] * local[j, d, k] for d in range(4)))
                (pos if i == j else neg).append(u)
    want = -sum(_sp(-u) for u in pos) / len(pos) - sum(_sp(u) for u in neg) / len(neg)
    assert float(in_batch_jsd_mi(local, glob)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="N >= 2"):
        in_batch_jsd_mi(local[:1], glob[:1])
    table = torch.randn(4, 4, generator=g)  # a plain table of pair scores: the diagonal is positive
    eye = torch.eye(4, dtype=torch.bool)
    assert float(pairwise_jsd_mi(table)) == pytest.approx(float(jsd_mi(table[eye], table[~eye])), rel=1e-6)


def test_prior_losses_are_the_gan_terms():
    tp, tc = torch.tensor([1.0, -0.5]), torch.tensor([0.2, 2.0, -1.0])
    assert float(prior_discriminator_loss(tp, tc)) == pytest.approx(
        (_sp(-1.0) + _sp(0.5)) / 2 + (_sp(0.2) + _sp(2.0) + _sp(-1.0)) / 3, rel=1e-6)
    assert float(prior_generator_loss(tc)) == pytest.approx((_sp(-0.2) + _sp(-2.0) + _sp(1.0)) / 3, rel=1e-6)


def _k(a, b, tau=1.0):
    return math.exp(float(a @ b) / tau)


@pytest.mark.parametrize("tau", [1.0, 0.2])
def test_hard_target_nce_is_eq8(tau):
    f, fh = _unit(4, 3, 0), _unit(4, 3, 1)
    want = -sum(math.log(_k(f[i], fh[i], tau) / sum(_k(f[i], fh[j], tau) for j in range(4))) for i in range(4))
    assert float(hard_target_nce(f, fh, temperature=tau, reduction="sum")) == pytest.approx(want, rel=1e-5)
    assert float(hard_target_nce(f, fh, temperature=tau)) == pytest.approx(want / 4, rel=1e-5)
    assert kernel_logits(f, fh, tau).shape == (4, 4)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_soft_target_nce_is_eqs_9_and_10(tau):
    n = 5
    f, fh = _unit(n, 3, 2), _unit(n, 3, 3)
    soft = []
    for i in range(n):  # Eq. 9
        z = sum(_k(f[i], fh[j], tau) for j in range(n))
        soft.append(sum(_k(f[i], fh[j], tau) * fh[j] for j in range(n)) / z)
    torch.testing.assert_close(soft_targets(f, fh, temperature=tau), torch.stack(soft).float())
    want = -sum(math.log(_k(f[i], soft[i], tau) / sum(_k(f[j], soft[i], tau) for j in range(n)))
                for i in range(n))  # Eq. 10
    assert float(soft_target_nce(f, fh, temperature=tau, reduction="sum")) == pytest.approx(want, rel=1e-5)


def test_hard_target_wants_the_own_copy_and_the_soft_target_ignores_the_order_of_the_copies():
    f = _unit(6, 8, 4)
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    assert float(hard_target_nce(f, f, temperature=0.1)) < 0.1 * float(hard_target_nce(f, f[perm], temperature=0.1))
    # Eq. 9 mixes the whole deformed batch: only its content counts, not which row is whose copy
    near = F.normalize(f + 0.05 * _unit(6, 8, 5), dim=1)
    assert float(soft_target_nce(f, near[perm])) == pytest.approx(float(soft_target_nce(f, near)), rel=1e-6)
    assert float(soft_target_nce(f, near, temperature=0.1)) < 0.1 * float(
        soft_target_nce(f, _unit(6, 8, 6), temperature=0.1))
    with pytest.raises(ValueError, match="same shape"):
        hard_target_nce(f, f[:3])


def test_jsd_critic_separates_matched_from_mismatched_pairs_after_a_few_steps():
    # toy: y = x + small noise; a critic T(x, y) = w . (x - y)^2 + b (per dimension) learns to
    # tell (x_i, y_i) from (x_i, y_j) by maximising Eq. 4.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x + 0.1 * torch.randn(64, 4, generator=g)
    w = torch.zeros(4, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.1)
    d2 = (x[:, None, :] - y[None, :, :]) ** 2  # (64, 64, 4)

    def scores():
        t = d2 @ w + b  # (64, 64): diagonal = matched pairs
        eye = torch.eye(64, dtype=torch.bool)
        return t[eye], t[~eye]

    start = float(jsd_mi(*scores()).detach())
    for _ in range(40):
        loss = -jsd_mi(*scores())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pos, neg = scores()
    assert float(jsd_mi(pos, neg)) > start + 0.3
    assert float((pos[:, None] > neg[None, :]).float().mean()) > 0.9  # matched pairs rank above mismatched
    assert float((pos > 0).float().mean()) > 0.9 and float((neg < 0).float().mean()) > 0.9
