"""Deep InfoMax in DRL's backbone: the loss against a direct computation over all pairs of the
batch, the identity-initialised MI networks, the update rule, and a short engine run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from histolatent.config import ConfigError
from histolatent.models import PlainOptimizers, create_model, load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = dict(image_size=16, widths=[4, 6], convs=[1, 1], local_block=1, code_dim=3, mi_units=8, global_weight=0.5,
            global_hidden=5, prior_hidden=[6])


def _sp(v: float) -> float:
    return math.log1p(math.exp(v))


def _direct_terms(m, x):
    c = m.config
    h, maps = x * 2 - 1, []
    for block in m.backbone.blocks:
        h = block(h)
        maps.append(h)
    local = maps[c.local_block - 1]
    y = m.head(maps[-1].mean(dim=(2, 3)))
    n = x.shape[0]
    lo, go = m.local_net(local).flatten(2), m.code_net(y)  # (N, U, L), (N, U)
    pos, neg = [], []
    for i in range(n):
        for j in range(n):
            for k in range(lo.shape[2]):
                (pos if i == j else neg).append(float(go[i] @ lo[j, :, k]))
    local_mi = -sum(_sp(-u) for u in pos) / len(pos) - sum(_sp(u) for u in neg) / len(neg)
    crit = m.global_critic  # the first layer on the concatenation [flatten(L_i), y_j], pair by pair
    w = torch.cat([crit.local_in.weight, crit.code_in.weight], dim=1)
    t = [[float(crit.rest(w @ torch.cat([local[i].flatten(), y[j]]) + crit.local_in.bias)[0]) for j in range(n)]
         for i in range(n)]
    gpos = [t[i][i] for i in range(n)]
    gneg = [t[i][j] for i in range(n) for j in range(n) if i != j]
    global_mi = -sum(_sp(-u) for u in gpos) / n - sum(_sp(u) for u in gneg) / len(gneg)
    prior = sum(_sp(-float(v)) for v in m.prior(torch.sigmoid(y))) / n
    loss = -c.local_weight * local_mi - c.global_weight * global_mi + c.prior_weight * prior
    return {"local_mi": local_mi, "global_mi": global_mi, "prior": prior, "loss": loss}


def test_loss_is_the_sum_of_its_terms_computed_directly():
    torch.manual_seed(0)
    m = create_model("dim", **TINY).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast, want = m.loss_terms(x), _direct_terms(m, x)
    for k, v in want.items():
        assert float(fast[k]) == pytest.approx(v, rel=1e-4, abs=1e-5), k
    assert fast["code"].shape == (3, 3)


def test_mi_networks_start_as_noisy_copies_of_their_input():
    m = create_model("dim", **TINY)
    w = m.local_net.shortcut.weight.detach()[:, :, 0, 0]  # (8 units, 4 channels)
    assert torch.equal(torch.diagonal(w), torch.ones(4)) and float(w[4:].abs().max()) <= 0.01
    assert torch.equal(torch.diagonal(m.code_net.shortcut.weight), torch.ones(3))


def test_one_step_raises_both_mi_estimates_and_trains_the_prior_discriminator():
    torch.manual_seed(0)
    m = create_model("dim", **TINY, lr=3e-3, prior_lr=3e-3)
    opts = PlainOptimizers(m.configure_optimizers())
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))

    def terms():
        torch.manual_seed(4)  # the prior samples of the discriminator's loss
        with torch.no_grad():
            t = m.loss_terms(x)
            return {"local": float(t["local_mi"]), "global": float(t["global_mi"]),
                    "disc": float(m.prior_step_loss(t["code"]))}

    before = terms()
    torch.manual_seed(4)
    m.training_step({"image": x}, opts, 0)
    after = terms()
    assert after["local"] > before["local"] and after["global"] > before["global"]
    assert after["disc"] < before["disc"]


def test_defaults_parts_and_config_errors():
    c = create_model("dim").config
    assert (c.code_dim, c.mi_units, c.local_weight, c.global_weight, c.prior_weight) == (64, 2048, 1.0, 0.0, 0.1)
    assert (c.widths, c.local_block, c.lr) == ([64, 128, 256, 512, 512], 4, 1e-4)  # DRL's backbone and optimiser
    m = create_model("dim", **{**TINY, "global_weight": 0.0, "prior_weight": 0.0}).eval()
    assert m.global_critic is None and m.prior is None and set(m.configure_optimizers()) == {"main"}
    with torch.no_grad():
        parts = m.encode(torch.rand(2, 3, 16, 16))
    assert {k: tuple(v.shape) for k, v in parts.items()} == {"z": (2, 3), "conv1": (2, 4), "conv2": (2, 6)}
    with pytest.raises(ConfigError, match="both 0"):
        create_model("dim", **{**TINY, "local_weight": 0.0, "global_weight": 0.0})


def test_cpu_config_trains_through_the_engine_and_lowers_the_loss(tmp_path):
    from histolatent.train import fit

    tiny = ["model.image_size=16", "model.widths=[4,8]", "model.convs=[1,1]", "model.local_block=1",
            "model.mi_units=16", "model.code_dim=8", "model.prior_hidden=[8]", "model.lr=3e-3",
            "data.tile_px=16", "data.slides=2", "data.slide_px=256", "data.n=256", "data.n_eval=8",
            "train.steps=12", "train.batch_size=4", "train.val_every=0", "train.checkpoint_every=0",
            "train.progress=false"]
    run = fit(CONFIGS / "dim-cpu.yaml", out=tmp_path / "run", overrides=tiny)
    trained = load_model(run)
    torch.manual_seed(0)  # the engine's seed before it builds the model: the initial weights
    initial = create_model("dim", **trained.config.to_dict())
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def loss(m):
        m.train()
        torch.manual_seed(0)
        with torch.no_grad():
            return float(m.loss_terms(x)["loss"])

    assert loss(trained) < loss(initial) - 0.05
