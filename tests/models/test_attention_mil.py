"""Gated attention MIL (Ilse et al. 2018): attention over tissue cells only, summing to 1; the
pooled bag and its gate agree with a slow per-bag reference; cell order does not matter."""

from __future__ import annotations

import pytest
import torch

from histolatent.models import create_model
from histolatent.models.base import PlainOptimizers


def _mil(**kw):
    torch.manual_seed(0)
    return create_model("attention-mil", in_channels=3, crop=6, instance_dim=7, attention_dim=4, **kw).eval()


def _bags(n=3, r=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, r, r + 1, generator=g) < 0.5  # not square
    mask[:, 0, 0] = True
    x = torch.randn(n, 3, r, r + 1, generator=g) * mask[:, None]
    return x, mask


def test_attention_sums_to_one_over_tissue_and_is_zero_on_background():
    mil = _mil()
    x, mask = _bags()
    a = mil(x, mask)["attention"]
    assert a.shape == mask.shape
    assert torch.equal(a[~mask], torch.zeros_like(a[~mask]))
    assert torch.allclose(a.flatten(1).sum(dim=1), torch.ones(len(x)), atol=1e-6)
    assert (a[mask] > 0).all()


def test_pooling_matches_a_slow_per_bag_reference():
    mil = _mil()
    x, mask = _bags()
    out = mil(x, mask)
    for n in range(len(x)):
        inst = x[n].flatten(1).T[mask[n].flatten()]  # (K, C): the tissue cells of bag n
        h = torch.relu(mil.embed[0](inst))
        gate = torch.tanh(mil.attention_v(h)) * torch.sigmoid(mil.attention_u(h))
        a = torch.softmax(gate @ mil.attention_w.weight[0], dim=0)  # Ilse et al., Eq. 9
        z = (a[:, None] * h).sum(dim=0)
        assert torch.allclose(out["attention"][n][mask[n]], a, atol=1e-6)
        assert torch.allclose(out["pooled"][n], z, atol=1e-5)
        assert torch.allclose(out["logits"][n], mil.out(z)[0], atol=1e-5)
    assert torch.allclose(out["prediction"], out["logits"].sigmoid())


def test_cell_order_does_not_matter_and_the_default_mask_is_nonzero_codes():
    mil = _mil()
    x, mask = _bags(n=1)
    perm = torch.randperm(x.shape[2] * x.shape[3], generator=torch.Generator().manual_seed(0))
    xp = x.flatten(2)[:, :, perm].view_as(x)
    mp = mask.flatten(1)[:, perm].view_as(mask)
    assert torch.allclose(mil(x, mask)["logits"], mil(xp, mp)["logits"], atol=1e-6)
    assert torch.equal(mil(x)["logits"], mil(x, x.ne(0).any(dim=1))["logits"])


def test_attention_map_of_a_whole_grid_and_an_empty_bag():
    mil = _mil()
    x, mask = _bags(n=1)
    a = mil.attention_map(x[0], mask[0])
    assert torch.equal(a, mil(x, mask)["attention"][0])
    with pytest.raises(ValueError, match="no tissue"):
        mil(x, torch.zeros_like(mask))


def test_training_moves_attention_to_the_cells_that_carry_the_label():
    # positive bags hold one cell whose first code is 4; the rest is noise with first code 0
    g = torch.Generator().manual_seed(0)
    n, r = 32, 5
    x = torch.randn(n, 3, r, r, generator=g)
    x[:, 0] = 0
    y = (torch.arange(n) % 2).float()
    x[y == 1, 0, 2, 3] = 4.0
    mil = _mil(lr=1e-2)
    mil.train()
    opts = PlainOptimizers(mil.configure_optimizers())
    for step in range(60):
        mil.training_step({"image": x, "mask": torch.ones(n, r, r, dtype=torch.bool), "label": y}, opts, step)
    mil.eval()
    out = mil(x, torch.ones(n, r, r, dtype=torch.bool))
    assert ((out["prediction"] > 0.5).float() == y).all()
    assert (out["attention"][y == 1][:, 2, 3] > 1.0 / (r * r)).all()  # the key cell gets more than its share
