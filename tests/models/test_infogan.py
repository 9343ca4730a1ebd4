"""InfoGAN (paper 4 §3.3): WGAN-GP and MI terms, the update rule, determinism, the crops data set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from histolatent.errors import ConfigError
from histolatent.losses.mi import (
    categorical_code_nll,
    categorical_mi_lower_bound,
    gaussian_code_nll,
)
from histolatent.losses.wgan import (
    gradient_penalty,
    interpolate,
    wasserstein_critic_loss,
    wasserstein_estimate,
)
from histolatent.models import PlainOptimizers, create_model
from histolatent.models.infogan import augment_dihedral

TINY = {"arch": "dcgan", "image_size": 16, "g_channels": 4, "d_channels": 4, "q_hidden": 8, "z_dim": 4}


# -- losses ---------------------------------------------------------------------------------------
def test_gradient_penalty_of_a_linear_critic_is_known_in_closed_form():
    """D(x) = <w, x> + b has gradient w everywhere: GP = (||w|| - 1)^2, dGP/dw = 2 (||w|| - 1) w / ||w||."""
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4, dtype=torch.float64) * 0.2
    w.requires_grad_(True)
    b = torch.tensor(0.7, dtype=torch.float64)

    def critic(x):
        return (x.double() * w).flatten(1).sum(1) + b

    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    gp, norms = gradient_penalty(critic, real, fake)
    nw = w.detach().norm().item()
    assert gp.item() == pytest.approx((nw - 1) ** 2, rel=1e-6)
    torch.testing.assert_close(norms, torch.full((5,), nw, dtype=norms.dtype), rtol=1e-6, atol=1e-6)
    gp.backward()  # the double backward reaches the critic's weights
    torch.testing.assert_close(w.grad, 2 * (nw - 1) * w.detach() / nw, rtol=1e-5, atol=1e-8)


def test_interpolation_and_wasserstein_terms():
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    x_hat = interpolate(real, fake, torch.tensor([0.25, 1.0]))
    assert x_hat.requires_grad
    torch.testing.assert_close(x_hat[:, 0, 0, 0], torch.tensor([0.25, 1.0]))
    d_real, d_fake = torch.tensor([3.0, 5.0]), torch.tensor([1.0, 1.0, 4.0])
    assert wasserstein_estimate(d_real, d_fake).item() == pytest.approx(4.0 - 2.0)
    assert wasserstein_critic_loss(d_real, d_fake).item() == pytest.approx(-2.0)


def test_mi_term_is_the_negative_log_likelihood_of_the_code():
    torch.manual_seed(1)
    logits, c = torch.randn(7, 5), torch.randint(0, 5, (7,))
    lp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    by_hand = -lp[np.arange(7), c.numpy()].mean()
    assert categorical_code_nll(logits, c).item() == pytest.approx(by_hand, rel=1e-6)
    assert categorical_mi_lower_bound(logits, c).item() == pytest.approx(math.log(5) - by_hand, rel=1e-6)
    mu, cc = torch.randn(4, 2), torch.rand(4, 2)
    expect = (0.5 * (cc - mu) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    assert gaussian_code_nll(mu, cc).item() == pytest.approx(expect.item(), rel=1e-6)


# -- the model --------------------------------------------------------------------------------------
class SpyOptimizers(PlainOptimizers):
    def __init__(self, opts):
        super().__init__(opts)
        self.calls: list[str] = []

    def update(self, loss, name="main", *, retain_graph=False):
        self.calls.append(name)
        super().update(loss, name, retain_graph=retain_graph)


def test_update_rule_five_critic_steps_then_one_generator_step_with_finite_terms():
    torch.manual_seed(0)
    model = create_model("infogan", **TINY)
    opts = SpyOptimizers(model.configure_optimizers())
    batch = {"image": torch.rand(10, 3, 16, 16)}
    for step in range(3):
        terms = model.training_step(batch, opts, step)
        assert all(math.isfinite(float(v)) for v in terms.values()), terms
    assert opts.calls == (["critic"] * 5 + ["generator"]) * 3
    assert {"wasserstein", "gp", "grad_norm", "mi_nll", "mi_bound"} <= terms.keys()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the MI term reaches Q (critic optimizer, lr 2e-4) and G; G's optimizer holds only G
    groups = opts["critic"].param_groups
    q_ids = {id(p) for p in model.q_head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == q_ids and groups[1]["lr"] == 2e-4
    assert {id(p) for p in opts["generator"].param_groups[0]["params"]} == {id(p) for p in model.generator.parameters()}
    assert opts["generator"].defaults["betas"] == (0.5, 0.9)


@pytest.mark.parametrize("arch,size,k", [("resnet", 16, 3), ("dcgan", 24, 5)])
def test_encode_sample_and_class_grid_shapes(arch, size, k):
    torch.manual_seed(0)
    model = create_model("infogan", **{**TINY, "arch": arch, "image_size": size, "n_classes": k,
                                       "n_continuous": 2}).eval()
    x = torch.rand(4, 3, size, size)
    e = model.encode(x)
    assert e["c"].shape == (4, k) and torch.allclose(e["c"].sum(1), torch.ones(4))
    assert e["features"].shape[0] == 4 and e["c_cont"].shape == (4, 2) and e["critic"].shape == (4,)
    imgs = model.sample(torch.tensor([0, k - 1]), torch.zeros(2, TINY["z_dim"]))
    assert imgs.shape == (2, 3, size, size) and 0 <= imgs.min() and imgs.max() <= 1
    grid = model.class_grid(3, seed=1)
    assert grid.shape == (3, k, 3, size, size)
    torch.testing.assert_close(grid, model.class_grid(3, seed=1))  # fixed z: reproducible
    # a row shares z: column j is exactly sample(j, z_row)
    z = torch.randn(3, TINY["z_dim"], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(grid[:, 1], model.sample(torch.ones(3, dtype=torch.long), z))


def test_dihedral_augmentation_is_a_symmetry_of_each_image_and_leaves_the_input():
    torch.manual_seed(3)
    x = torch.rand(16, 3, 6, 6)
    before = x.clone()
    y = augment_dihedral(x)
    assert torch.equal(x, before)
    for i in range(16):
        d4 = [torch.rot90(x[i], k, (1, 2)) for k in range(4)]
        d4 += [torch.flip(t, (2,)) for t in d4]
        assert any(torch.equal(y[i], t) for t in d4)
    assert not torch.equal(y, x)


def test_stain_augmentation_scales_optical_density_and_keeps_glass_white():
    from histolatent.models.infogan import augment_stain

    torch.manual_seed(0)
    x = torch.rand(4, 3, 5, 5) * 0.9 + 0.05
    x[:, :, 0, 0] = 1.0
    y = augment_stain(x, 0.3)
    assert torch.equal(augment_stain(x, 0.0), x)
    assert torch.equal(y[:, :, 0, 0], torch.ones(4, 3))
    ratio = torch.log(y) / torch.log(x)  # OD_out / OD_in: one gain per image and channel
    torch.testing.assert_close(ratio[:, :, 1:, 1:], ratio[:, :, 1:2, 1:2].expand(-1, -1, 4, 4), rtol=1e-4, atol=1e-4)


def test_config_rejects_a_size_not_divisible_by_8():
    with pytest.raises(ConfigError, match="image_size"):
        create_model("infogan", image_size=36)


# -- engine + data ---------------------------------------------------------------------------------
def _tiny_run(out, seed):
    from histolatent.train import RunConfig, fit

    cfg = RunConfig(model={"name": "infogan", **TINY},
                    data={"name": "synth-nuclei-crops", "size_px": 16, "mpp": 1.0, "n_train": 20, "n_val": 5,
                          "n_test": 5},
                    train={"steps": 3, "batch_size": 10, "seed": seed, "progress": False, "log_every": 1})
    return fit(cfg, out=out)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _tiny_run(tmp_path_factory.mktemp("infogan") / "run", 0)
    finally:
        torch.set_num_threads(n)


def test_same_seed_gives_bitwise_identical_weights_and_logs_wgan_diagnostics(tiny_run, tmp_path):
    from histolatent.train import read_metrics

    again = _tiny_run(tmp_path / "again", 0)
    wa, wb = (load_file(str(r / "weights.safetensors")) for r in (tiny_run, again))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    torch.manual_seed(0)  # the engine's initial seed: training moved the weights away from it
    init = create_model("infogan", **TINY).state_dict()
    assert not torch.equal(init["d_head.weight"], wa["d_head.weight"])
    rows = read_metrics(tiny_run)
    assert len(rows) == 3 and all(math.isfinite(float(r[k])) for r in rows for k in ("wasserstein", "gp", "mi_nll"))


def test_crops_dataset_splits_are_disjoint_and_items_are_images_with_labels():
    from histolatent.datasets import create_dataset

    opts = {"size_px": 16, "mpp": 1.0, "n_train": 6, "n_val": 3, "n_test": 6}
    train = create_dataset("synth-nuclei-crops", split="train", **opts)
    test = create_dataset("synth-nuclei-crops", split="test", seed=5, **opts)
    item = train[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1 and item["label"].dtype == torch.int64
    names = ["epithelial", "lymphocyte", "fibroblast"]
    assert [names[i] for i in train.labels.tolist()] == train.table["type"].tolist()
    assert set(train.table["world_seed"]).isdisjoint(test.table["world_seed"])
    assert set(test.table["site"]) <= {1, 2}
    again = create_dataset("synth-nuclei-crops", split="test", seed=9, **opts)  # run seed does not matter
    assert torch.equal(again.images, test.images)
    assert torch.equal(test.images[0], torch.from_numpy(np.array(test.images_uint8[0])).permute(2, 0, 1).float() / 255)


def test_crops_disk_cache_round_trips(tmp_path):
    from histolatent.datasets.synth_nuclei_crops import synth_nuclei_crops

    opts = {"size_px": 16, "mpp": 1.0, "n_test": 4, "cache_dir": str(tmp_path)}
    a_img, a_tab = synth_nuclei_crops(split="test", **opts)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".npz", ".parquet"]
    b_img, b_tab = synth_nuclei_crops(split="test", **opts)  # read back from disk
    np.testing.assert_array_equal(a_img, b_img)
    assert a_tab["type"].tolist() == b_tab["type"].tolist() and b_tab["label"].dtype == np.int64


def test_mi_gradient_reaches_the_generator():
    torch.manual_seed(0)
    model = create_model("infogan", **{**TINY, "n_critic": 1})
    z, k, _ = model.sample_codes(6)
    fake = model.generate(z, F.one_hot(k, 3).float())
    _, _, logits, _ = model._heads(fake)
    categorical_code_nll(logits, k).backward()
    assert all(p.grad is not None for p in model.q_head.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.generator.parameters() if p.grad is not None) > 0
