"""Loss wiring of every registered model: each objective equals the weighted sum of its terms, each
term computed here from the model's parts (its layers, not its loss code); a training step moves
each adversarial term the way its player wants; each distribution a model outputs sums to 1 over
its declared axis.

A model's random draws (reparameterisation noise, codes, interpolation weights) are reproduced by
seeding torch's RNG before the model's call and before the computation here, which draws in the
same order. ``COVERAGE`` names, for every registered model, the tests (here or in the model's own
test module) that pin its loss down; a new model fails :func:`test_every_registered_model_has_loss_wiring_tests`
until it is listed.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from histolatent.models import PlainOptimizers, create_model, list_models, model_class
from histolatent.models.se2n_vae import inverse_cdf_angles
from histolatent.nn.fourier import grid_axes

HERE = Path(__file__).parent
ME = "test_loss_wiring.py"

#: model -> tests (``file::function``) that check its loss terms, their weights and signs, and the
#: distributions it outputs; or why there is nothing to check.
COVERAGE: dict[str, list[str] | str] = {
    "autoencoder": [f"{ME}::test_autoencoder_loss_is_the_mse_of_its_reconstruction",
                    f"{ME}::test_a_training_step_lowers_the_objective_computed_here"],
    "vae": [f"{ME}::test_paper0_vae_elbo_from_the_parts", f"{ME}::test_eq6_update_rule_losses_from_the_parts",
            f"{ME}::test_eq6_vae_step_follows_the_gradient_of_its_loss",
            f"{ME}::test_eq6_steps_lower_their_own_objectives"],
    "beta-vae": [f"{ME}::test_paper0_vae_elbo_from_the_parts", f"{ME}::test_eq6_update_rule_losses_from_the_parts"],
    "se2n-vae": [f"{ME}::test_se2n_vae_eq5_from_the_parts", f"{ME}::test_eq6_update_rule_losses_from_the_parts",
                 f"{ME}::test_eq6_vae_step_follows_the_gradient_of_its_loss",
                 f"{ME}::test_eq6_steps_lower_their_own_objectives",
                 f"{ME}::test_se2n_q_ori_is_a_distribution_over_orientations",
                 "test_se2n_vae.py::test_circular_mean_and_kl_to_uniform"],
    "mlp-vae": [f"{ME}::test_mlp_vae_elbo_from_the_parts", f"{ME}::test_a_training_step_lowers_the_objective_computed_here"],
    "mlp-beta-vae": [f"{ME}::test_mlp_vae_elbo_from_the_parts"],
    "spatial-vae": [f"{ME}::test_spatial_vae_elbo_from_the_parts",
                    f"{ME}::test_a_training_step_lowers_the_objective_computed_here"],
    "target-vae": ["test_target_vae.py::test_loss_and_gradients_match_a_direct_implementation_of_eq5",
                   "test_target_vae.py::test_kl_terms_are_consistent_with_eq5_parts",
                   "test_target_vae.py::test_training_steps_reduce_the_loss_and_bf16_autocast_runs",
                   "test_target_vae.py::test_encode_decode_detect_api_and_registry",  # attention sums to 1
                   "test_target_vae.py::test_phase_averaged_encoding"],
    "infogan": [f"{ME}::test_infogan_critic_and_generator_losses_from_the_parts",
                f"{ME}::test_infogan_generator_step_raises_the_critic_score_of_fakes",
                f"{ME}::test_infogan_critic_step_raises_the_wasserstein_estimate",
                "test_infogan.py::test_gradient_penalty_of_a_linear_critic_is_known_in_closed_form",
                "test_infogan.py::test_mi_term_is_the_negative_log_likelihood_of_the_code",
                "test_infogan.py::test_encode_sample_and_class_grid_shapes"],  # q(c | x) sums to 1
    "nic-vae": ["test_nic.py::test_vae_loss_is_squared_error_plus_gamma_kl",
                "test_nic.py::test_one_step_lowers_the_loss_on_a_fixed_batch"],
    "nic-siamese": ["test_nic.py::test_siamese_loss_is_bce_of_same_vs_different_on_the_shared_branch",
                    "test_nic.py::test_one_step_lowers_the_loss_on_a_fixed_batch"],
    "nic-oracle": ["test_nic.py::test_oracle_loss_is_cross_entropy_and_its_code_is_the_encoder_output",
                   "test_nic.py::test_one_step_lowers_the_loss_on_a_fixed_batch"],
    "nic-bigan": ["test_nic.py::test_bigan_losses_are_the_two_sides_of_eq_12",
                  "test_nic.py::test_bigan_discriminator_step_lowers_its_loss",
                  f"{ME}::test_bigan_training_step_losses_from_the_parts",
                  f"{ME}::test_bigan_generator_encoder_step_fools_the_discriminator"],
    "colorizer": [f"{ME}::test_colorizer_loss_from_the_parts",
                  f"{ME}::test_a_training_step_lowers_the_objective_computed_here"],
    "unet": [f"{ME}::test_unet_loss_from_the_parts", f"{ME}::test_a_training_step_lowers_the_objective_computed_here",
             f"{ME}::test_unet_probabilities_sum_to_one_over_classes"],
    "slide-cnn": [f"{ME}::test_slide_model_losses_from_the_parts",
                  "test_slide_cnn.py::test_l2_is_keras_sum_of_squared_kernels_added_to_the_loss",
                  "test_slide_cnn.py::test_regression_learns_standardised_labels_and_predicts_on_their_scale"],
    "attention-mil": [f"{ME}::test_slide_model_losses_from_the_parts",
                      "test_attention_mil.py::test_attention_sums_to_one_over_tissue_and_is_zero_on_background",
                      "test_attention_mil.py::test_training_moves_attention_to_the_cells_that_carry_the_label"],
    "drl": ["test_drl.py::test_loss_is_the_sum_of_its_terms_computed_directly",
            "test_drl.py::test_one_step_lowers_the_encoder_terms_and_the_prior_discriminator_loss"],
    "dim": ["test_dim.py::test_loss_is_the_sum_of_its_terms_computed_directly",
            "test_dim.py::test_one_step_raises_both_mi_estimates_and_trains_the_prior_discriminator"],
    "vgg-classifier": ["test_transfer.py::test_classifier_loss_is_the_cross_entropy_of_its_head_on_pooled_blocks"],
    "vgg-segmenter": ["test_transfer.py::test_segmenter_loss_is_cross_entropy_plus_soft_dice_from_its_logits"],
    "vgg-vae": [f"{ME}::test_vgg_vae_elbo_from_the_parts",
                f"{ME}::test_a_training_step_lowers_the_objective_computed_here",
                "test_vgg_vae.py::test_training_on_a_fixed_batch_lowers_the_reconstruction_error",
                "test_vgg_vae.py::test_finetune_starts_from_the_vae_backbone"],
    "mean-rgb": "learns nothing: no loss (test_nic.py::test_mean_rgb_is_the_per_channel_mean checks its code)",
}


def _builtin_models() -> list[str]:
    return [n for n in list_models() if model_class(n).__module__.startswith("histolatent.models.")]


def _test_functions(module: str) -> set[str]:
    tree = ast.parse((HERE / module).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_registered_model_has_loss_wiring_tests():
    assert sorted(COVERAGE) == _builtin_models()
    for model, tests in COVERAGE.items():
        if isinstance(tests, str):
            assert tests.strip(), model
            continue
        assert tests, model
        for ref in tests:
            module, name = ref.split("::")
            assert name in _test_functions(module), f"{model}: {ref} does not exist"


# -- helpers ------------------------------------------------------------------------------------------
class Spy(PlainOptimizers):
    """Records the loss handed to each optimizer; steps only the optimizers named in ``step``."""

    def __init__(self, opts, step=()):
        super().__init__(opts)
        self.losses: dict[str, list[torch.Tensor]] = {}
        self.graphs: dict[str, list[torch.Tensor]] = {}
        self.step = set(step)

    def update(self, loss, name="main", *, retain_graph=False):
        self.losses.setdefault(name, []).append(loss.detach().clone())
        self.graphs.setdefault(name, []).append(loss)  # to differentiate what the optimizer was given
        if name in self.step:
            super().update(loss, name, retain_graph=retain_graph)


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=tol, rtol=tol)


def _kl_std_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over the last axis, written out."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def _kl_normal_logstd(mu, logstd, prior_std):
    return math.log(prior_std) - logstd + (torch.exp(2 * logstd) + mu**2) / (2 * prior_std**2) - 0.5


def _bce_logits(logits, y):
    """-[y log sigmoid(l) + (1 - y) log sigmoid(-l)], elementwise."""
    return F.softplus(logits) - y * logits


def _images(n, c, s, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


# -- autoencoder ----------------------------------------------------------------------------------------
AE = dict(image_size=8, channels=[4, 4], latent_dim=2)


def _ae_objective(m, x):
    h = m.encoder(x).flatten(1)
    recon = torch.sigmoid(m.decoder(m.from_z(m.to_z(h)).view(x.shape[0], -1, m.feat, m.feat)))
    return ((recon - x) ** 2).mean()


def test_autoencoder_loss_is_the_mse_of_its_reconstruction():
    torch.manual_seed(0)
    m = create_model("autoencoder", **AE)
    x = _images(4, 1, 8)
    _close(m.loss({"image": x})["loss"], _ae_objective(m, x))


# -- paper 0's VAEs: ELBO (Eq. 1 / 5) and the Eq. 6 update rule --------------------------------------------
FM = dict(image_size=32, encoder_channels=[4, 4], decoder_channels=[4, 4, 4], latent_dim=3, disc_channels=[2, 2, 3],
          recon_sigma=0.8)


def _vae_elbo(m, x, seed):
    mu, logvar = m.encoder(x).flatten(1).chunk(2, dim=1)
    logvar = logvar.clamp(-12.0, 8.0)
    torch.manual_seed(seed)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    x_hat = torch.sigmoid(m.decoder(z[:, :, None, None]))
    recon = (0.5 * ((x_hat - x) ** 2).flatten(1).sum(1) / m.config.recon_sigma**2).mean()
    kl = _kl_std_normal(mu, logvar).mean()
    return {"loss": recon + m.config.beta * kl, "recon": recon, "kl": kl, "x_hat": x_hat}


@pytest.mark.parametrize("name,beta", [("vae", 0.3), ("beta-vae", None)])
def test_paper0_vae_elbo_from_the_parts(name, beta):
    torch.manual_seed(1)
    m = create_model(name, **FM, **({} if beta is None else {"beta": beta}))
    assert m.config.beta == (4.0 if beta is None else beta)  # beta-VAE's weight is 4 unless set
    x = _images(3, 3, 32)
    torch.manual_seed(5)
    got = m.vae_terms(x)
    want = _vae_elbo(m, x, 5)
    for k in ("recon", "kl", "loss"):
        _close(got[k], want[k])
    assert float(want["kl"].detach()) > 0.01  # the KL term is not negligible: its weight shows in the loss


def _se2n_elbo(m, x, seed):
    c = m.config
    h = m.head(m.encoder(x)).float().flatten(2)  # (B, 3M, N)
    q = torch.softmax(h[:, : c.latent_dim], dim=-1)  # Q_ORI over the N orientations (Eq. 4)
    mu, logvar = h[:, c.latent_dim:].mean(-1).chunk(2, dim=1)
    logvar = logvar.clamp(-12.0, 8.0)
    torch.manual_seed(seed)
    z_iso = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    z_ori = inverse_cdf_angles(q, torch.rand(q.shape[:-1]))
    x_hat = m.decode(z_iso, z_ori)
    recon = (0.5 * ((x_hat - x) ** 2).flatten(1).sum(1) / c.recon_sigma**2).mean()
    kl_iso = _kl_std_normal(mu, logvar).mean()
    kl_ori = (q * torch.log(q * c.n_rotations)).sum((1, 2)).mean()  # KL(Q || uniform over the N bins)
    return {"loss": recon + c.beta_iso * kl_iso + c.beta_ori * kl_ori, "recon": recon, "kl_iso": kl_iso,
            "kl_ori": kl_ori, "x_hat": x_hat}


def test_se2n_vae_eq5_from_the_parts():
    torch.manual_seed(2)
    m = create_model("se2n-vae", **FM, beta_iso=0.7, beta_ori=1.9)
    x = _images(2, 3, 32, seed=1)
    torch.manual_seed(6)
    got = m.vae_terms(x)
    want = _se2n_elbo(m, x, 6)
    for k in ("recon", "kl_iso", "kl_ori", "loss"):
        _close(got[k], want[k])
    assert float(want["kl_ori"].detach()) > 1e-3 and float(want["kl_iso"].detach()) > 1e-3


def test_se2n_q_ori_is_a_distribution_over_orientations():
    torch.manual_seed(3)
    m = create_model("se2n-vae", **FM).eval()
    with torch.no_grad():
        q = m.encode(_images(3, 3, 32, seed=2))["q_ori"]  # (B, M, N)
    assert q.shape == (3, 3, 8) and float(q.min()) >= 0
    _close(q.sum(-1), torch.ones(3, 3))
    assert float((q - 1 / 8).abs().max()) > 1e-3  # not trivially uniform


def _eq6(m, x, seed):
    """Both losses of the Eq. 6 update rule, from the ELBO here and the discriminator's outputs."""
    elbo = (_se2n_elbo if m.registry_name == "se2n-vae" else _vae_elbo)(m, x, seed)
    b = x.shape[0]
    _, feats = m.discriminator(torch.cat([x, elbo["x_hat"]]))
    fm = sum(0.5 * (f[:b] - f[b:]).pow(2).flatten(1).sum(1) for f in feats).mean()
    logits, _ = m.discriminator(torch.cat([x, elbo["x_hat"]]))
    disc = 0.5 * (_bce_logits(logits[:b], torch.ones(b)).mean() + _bce_logits(logits[b:], torch.zeros(b)).mean())
    return elbo["loss"] + m.config.gamma * fm, disc, fm


@pytest.mark.parametrize("name", ["vae", "beta-vae", "se2n-vae"])
def test_eq6_update_rule_losses_from_the_parts(name):
    torch.manual_seed(4)
    m = create_model(name, **FM, gamma=0.5)
    x = _images(2, 3, 32, seed=3)
    spy = Spy(m.configure_optimizers())  # records the losses, steps nothing: the weights stay put
    torch.manual_seed(7)
    out = m.training_step({"image": x}, spy, 0)
    main, disc, fm = _eq6(m, x, 7)
    assert list(spy.losses) == ["main", "disc"]
    _close(spy.losses["main"][0], main)
    _close(spy.losses["disc"][0], disc)
    _close(out["loss"], main)
    _close(out["feat_recon"], fm)
    _close(out["disc"], disc)
    assert float(fm.detach()) > 1e-3


@pytest.mark.parametrize("name", ["vae", "se2n-vae"])
def test_eq6_vae_step_follows_the_gradient_of_its_loss(name):
    """Real images and reconstructions share D's batch statistics, so the real images' features
    depend on the reconstruction: the update must differentiate the loss it reports, that path
    included."""
    torch.manual_seed(5)
    m = create_model(name, **FM, gamma=0.5)
    x = _images(4, 3, 32, seed=4)
    params = m.vae_parameters()
    spy = Spy(m.configure_optimizers())
    torch.manual_seed(8)
    m.training_step({"image": x}, spy, 0)
    given = torch.autograd.grad(spy.graphs["main"][0], params, allow_unused=True)
    m.discriminator.requires_grad_(False)
    want = torch.autograd.grad(_eq6(m, x, 8)[0], params, allow_unused=True)
    for p, a, b in zip(params, given, want, strict=True):
        if b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3, msg=lambda s, p=p: f"{tuple(p.shape)}: {s}")


@pytest.mark.parametrize("name", ["vae", "se2n-vae"])
def test_eq6_steps_lower_their_own_objectives(name):
    """The VAE step lowers the ELBO + gamma * feature term; the discriminator step lowers its BCE."""
    torch.manual_seed(5)
    m = create_model(name, **FM, gamma=0.5, lr=1e-4, disc_lr=1e-2)
    x = _images(4, 3, 32, seed=4)
    for opt, pick in (("main", 0), ("disc", 1)):
        spy = Spy(m.configure_optimizers(), step=[opt])
        with torch.no_grad():
            before = _eq6(m, x, 8)[pick]
        torch.manual_seed(8)
        m.training_step({"image": x}, spy, 0)
        with torch.no_grad():
            after = _eq6(m, x, 8)[pick]
        assert float(after) < float(before), (opt, float(before), float(after))


# -- TARGET-VAE's baselines: MLP VAE / beta-VAE and spatial-VAE -------------------------------------------------
MLP = dict(image_size=6, hidden=8, latent_dim=2)


def _mlp_elbo(m, x, seed):
    mu, logvar = m.to_latent(m.encoder(x.flatten(1))).chunk(2, dim=1)
    logvar = logvar.clamp(-16.0, 8.0)
    torch.manual_seed(seed)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    logits = m.to_pixels(m.decoder(z))  # (B, C P): Bernoulli logits in channel-major order
    recon = _bce_logits(logits, x.flatten(1)).sum(1)
    kl = _kl_std_normal(mu, logvar)
    return {"loss": (recon + m.config.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}


@pytest.mark.parametrize("name,beta", [("mlp-vae", 0.3), ("mlp-beta-vae", None)])
def test_mlp_vae_elbo_from_the_parts(name, beta):
    torch.manual_seed(6)
    m = create_model(name, **MLP, in_channels=2, **({} if beta is None else {"beta": beta}))
    assert m.config.beta == (4.0 if beta is None else beta)
    x = (_images(3, 2, 6) > 0.5).float()
    torch.manual_seed(9)
    got = m.loss_terms(x)
    want = _mlp_elbo(m, x, 9)
    for k in ("recon", "kl", "loss"):
        _close(got[k], want[k])
    assert float(want["kl"].detach()) > 1e-3


SPATIAL = dict(image_size=6, hidden=8, fourier_features=4, gen_hidden=6, z_dim=2, theta_prior_std=0.9,
               t_prior_std=0.2, beta=0.6)


def _spatial_elbo(m, x, seed):
    c = m.config
    out = m.head(m.encoder(x.flatten(1)))
    z_mu, z_ls = out[:, :2], out[:, 2:4].clamp(-8, 4)
    th_mu, th_ls = out[:, 4], out[:, 5].clamp(-8, 4)
    t_mu, t_ls = out[:, 6:8], out[:, 8:10].clamp(-8, 4)
    torch.manual_seed(seed)
    z = z_mu + z_ls.exp() * torch.randn_like(z_mu)
    theta = th_mu + th_ls.exp() * torch.randn_like(th_mu)
    t = t_mu + t_ls.exp() * torch.randn_like(t_mu)
    logits = m.generator(z, theta, t, grid_axes(6, 6, spacing=2 / 5))[..., 0]  # (B, P)
    recon = _bce_logits(logits, x.flatten(1)).sum(1)
    kl_z = _kl_normal_logstd(z_mu, z_ls, 1.0).sum(1)
    kl_theta = _kl_normal_logstd(th_mu, th_ls, c.theta_prior_std)
    kl_t = _kl_normal_logstd(t_mu, t_ls, c.t_prior_std).sum(1)
    kl = kl_z + kl_theta + kl_t
    return {"loss": (recon + c.beta * kl).mean(), "recon": recon.mean(), "kl_z": kl_z.mean(),
            "kl_theta": kl_theta.mean(), "kl_t": kl_t.mean()}


def test_spatial_vae_elbo_from_the_parts():
    torch.manual_seed(7)
    m = create_model("spatial-vae", **SPATIAL)
    x = (_images(3, 1, 6, seed=5) > 0.5).float()
    torch.manual_seed(10)
    got = m.loss_terms(x)
    want = _spatial_elbo(m, x, 10)
    for k in ("recon", "kl_z", "kl_theta", "kl_t", "loss"):
        _close(got[k], want[k])
    assert min(float(want[k].detach()) for k in ("kl_z", "kl_theta", "kl_t")) > 1e-3



# -- DRL's VAE baseline on the VGG backbone -----------------------------------------------------------------------
VGGVAE = dict(image_size=16, widths=[4, 6], convs=[1, 1], latent_dim=3, recon_sigma=0.3, beta=0.7)


def _vgg_vae_elbo(m, x, seed):
    h = x * 2 - 1
    for block in m.backbone.blocks:  # the encoder's blocks, one by one
        h = block(h)
    mu, logvar = m.to_posterior(h.flatten(1)).chunk(2, dim=1)
    logvar = logvar.clamp(-12.0, 8.0)
    torch.manual_seed(seed)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    x_hat = torch.sigmoid(m.decoder(m.from_z(z).view(len(x), 6, 4, 4)))
    recon = (0.5 * ((x_hat - x) ** 2).flatten(1).sum(1) / m.config.recon_sigma**2).mean()
    kl = _kl_std_normal(mu, logvar).mean()
    return {"loss": recon + m.config.beta * kl, "recon": recon, "kl": kl}


def test_vgg_vae_elbo_from_the_parts():
    torch.manual_seed(7)
    m = create_model("vgg-vae", **VGGVAE)
    x = _images(3, 3, 16, seed=2)
    torch.manual_seed(12)
    got = m.loss_terms(x)
    want = _vgg_vae_elbo(m, x, 12)
    for k in ("recon", "kl", "loss"):
        _close(got[k], want[k], 1e-4)
    assert float(want["kl"].detach()) > 1e-3  # beta's weight shows in the loss

# -- colouriser and U-Net -----------------------------------------------------------------------------------------
COLOR = dict(width=4, global_dim=8, global_pool=2, image_size=16, class_weight=0.5, optimizer="adam", lr=1e-3)


def _colorizer_objective(m, x, labels):
    from histolatent.stain.torch_ops import lab_from_rgb_torch

    lab = lab_from_rgb_torch(x)
    ab_hat, logits = m(lab[:, :1] / 100)
    mse = ((ab_hat - lab[:, 1:]) ** 2).mean() / 110.0**2
    ce = -torch.log_softmax(logits, 1)[torch.arange(len(labels)), labels].mean()
    return mse + m.config.class_weight * ce, mse, ce


def test_colorizer_loss_from_the_parts():
    torch.manual_seed(8)
    m = create_model("colorizer", **COLOR)
    x, labels = _images(3, 3, 16, seed=6), torch.tensor([0, 3, 1])
    got = m.loss({"image": x, "label": labels})
    loss, mse, ce = _colorizer_objective(m, x, labels)
    _close(got["mse"], mse)
    _close(got["ce"], ce)
    _close(got["loss"], loss)


UNET = dict(width=0.125, image_size=16, class_weights=[0.5, 1.0, 3.0], dice_weight=0.7, augment=False)


def _unet_objective(m, x, y):
    logits = m(x)
    logp = torch.log_softmax(logits, 1)
    w = torch.tensor(m.config.class_weights)[y]  # (N, H, W)
    ce = -(w * logp.gather(1, y[:, None])[:, 0]).sum() / w.sum()
    fg_p, fg_t = 1 - logp.exp()[:, 0], (y > 0).float()
    dice = (2 * (fg_p * fg_t).sum() + 1) / (fg_p.sum() + fg_t.sum() + 1)
    return ce + m.config.dice_weight * (1 - dice), ce


def test_unet_loss_from_the_parts():
    torch.manual_seed(9)
    m = create_model("unet", **UNET)
    x, y = _images(2, 3, 16, seed=7), torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(1))
    got = m.loss(x, y)
    loss, ce = _unet_objective(m, x, y)
    _close(got["ce"], ce)
    _close(got["loss"], loss)


def test_unet_probabilities_sum_to_one_over_classes():
    torch.manual_seed(10)
    m = create_model("unet", **UNET).eval()
    p = m.predict(_images(2, 3, 16, seed=8)[..., :13, :15])  # padded inside, cropped back
    assert p.shape == (2, 3, 13, 15) and float(p.min()) >= 0
    _close(p.sum(1), torch.ones(2, 13, 15))


# -- one step of the model's own update rule lowers the objective computed here ----------------------------------
def _batch_and_objective(name):
    if name == "autoencoder":
        x = _images(4, 1, 8, seed=9)
        return dict(AE, lr=1e-3), {"image": x}, lambda m: _ae_objective(m, x)
    if name == "mlp-vae":
        x = (_images(4, 1, 6, seed=10) > 0.5).float()
        return dict(MLP, lr=1e-3), {"image": x}, lambda m: _mlp_elbo(m, x, 11)["loss"]
    if name == "spatial-vae":
        x = (_images(4, 1, 6, seed=11) > 0.5).float()
        return dict(SPATIAL, lr=1e-3), {"image": x}, lambda m: _spatial_elbo(m, x, 11)["loss"]
    if name == "vgg-vae":
        x = _images(4, 3, 16, seed=14)
        return dict(VGGVAE, lr=1e-3), {"image": x}, lambda m: _vgg_vae_elbo(m, x, 11)["loss"]
    if name == "colorizer":
        x, y = _images(4, 3, 16, seed=12), torch.tensor([0, 1, 2, 3])
        return COLOR, {"image": x, "label": y}, lambda m: _colorizer_objective(m, x, y)[0]
    x, y = _images(2, 3, 16, seed=13), torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(2))
    return dict(UNET, lr=1e-3), {"image": x, "target": y}, lambda m: _unet_objective(m, x, y)[0]


@pytest.mark.parametrize("name", ["autoencoder", "mlp-vae", "spatial-vae", "vgg-vae", "colorizer", "unet"])
def test_a_training_step_lowers_the_objective_computed_here(name):
    torch.manual_seed(11)
    cfg, batch, objective = _batch_and_objective(name)
    m = create_model(name, **cfg)
    with torch.no_grad():
        before = float(objective(m))
    torch.manual_seed(11)  # the step draws the noise the objective uses
    m.training_step(batch, PlainOptimizers(m.configure_optimizers()), 0)
    with torch.no_grad():
        after = float(objective(m))
    assert after < before, (before, after)


# -- InfoGAN (WGAN-GP + MI) ---------------------------------------------------------------------------------------
GAN = dict(arch="dcgan", image_size=16, g_channels=4, d_channels=4, q_hidden=8, z_dim=4, n_critic=2,
           augment="none", n_continuous=1)


def _info_nll(m, q, k, cc):
    kk = m.config.n_classes
    cat = -torch.log_softmax(q[:, :kk], 1)[torch.arange(len(k)), k].mean()
    cont = (0.5 * (cc - q[:, kk:]) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    return cat + m.config.continuous_weight * cont


def _gan_losses(m, x, seed):
    """The n_critic critic losses and the generator loss of one training step, written out."""
    c = m.config
    torch.manual_seed(seed)
    critic = []
    for xr in (x * 2 - 1).chunk(c.n_critic):
        b = xr.shape[0]
        z, k, cc = m.sample_codes(b)
        with torch.no_grad():
            fake = m.generate(z, F.one_hot(k, c.n_classes).float(), cc)
        d_real = m.d_head(m.trunk(xr))[:, 0]
        d_fake = m.d_head(m.trunk(fake))[:, 0]
        eps = torch.rand(b)[:, None, None, None]
        x_hat = (eps * xr + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(m.d_head(m.trunk(x_hat)).sum(), x_hat)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        w = d_real.mean() - d_fake.mean()
        critic.append(-w + c.gp_weight * gp + c.mi_weight * _info_nll(m, m.q_head(m.trunk(fake)), k, cc))
    z, k, cc = m.sample_codes(x.shape[0] // c.n_critic)
    fake = m.generate(z, F.one_hot(k, c.n_classes).float(), cc)
    h = m.trunk(fake)
    generator = -m.d_head(h)[:, 0].mean() + c.mi_weight * _info_nll(m, m.q_head(h), k, cc)
    return critic, generator


def test_infogan_critic_and_generator_losses_from_the_parts():
    torch.manual_seed(12)
    m = create_model("infogan", **GAN, gp_weight=3.0, mi_weight=0.7, continuous_weight=0.4)
    x = _images(8, 3, 16, seed=14)
    spy = Spy(m.configure_optimizers())
    torch.manual_seed(13)
    out = m.training_step({"image": x}, spy, 0)
    critic, generator = _gan_losses(m, x, 13)
    assert [len(spy.losses[k]) for k in ("critic", "generator")] == [2, 1]
    for got, want in zip(spy.losses["critic"], critic, strict=True):
        _close(got, want, 1e-4)
    _close(spy.losses["generator"][0], generator, 1e-4)
    # the logged terms add up to the critic loss with the configured weights
    _close(out["critic_loss"], -out["wasserstein"] + 3.0 * out["gp"] + 0.7 * out["mi_nll_critic"], 1e-4)


def _critic_scores(m, imgs):
    with torch.no_grad():
        return m.critic(imgs * 2 - 1)


def test_infogan_generator_step_raises_the_critic_score_of_fakes():
    torch.manual_seed(14)
    m = create_model("infogan", **GAN, mi_weight=0.0, lr_generator=1e-3)
    g = torch.Generator().manual_seed(3)
    z, k = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)

    def fakes_score():
        with torch.no_grad():
            return float(m.critic(m.generate(z, F.one_hot(k, 3).float())).mean())

    spy = Spy(m.configure_optimizers(), step=["generator"])  # the critic stays fixed
    before = fakes_score()
    for step in range(3):
        m.training_step({"image": _images(8, 3, 16, seed=step)}, spy, step)
    assert fakes_score() > before + 1e-4


def test_infogan_critic_step_raises_the_wasserstein_estimate():
    torch.manual_seed(15)
    m = create_model("infogan", **GAN, gp_weight=0.0, mi_weight=0.0, lr_critic=1e-3)
    real = _images(32, 3, 16, seed=20)
    with torch.no_grad():
        z, k, cc = m.sample_codes(32, generator=torch.Generator().manual_seed(4))
        fake = (m.generate(z, F.one_hot(k, 3).float(), cc) + 1) / 2

    def w():
        return float(_critic_scores(m, real).mean() - _critic_scores(m, fake).mean())

    spy = Spy(m.configure_optimizers(), step=["critic"])  # the generator stays fixed
    before = w()
    m.training_step({"image": _images(8, 3, 16, seed=21)}, spy, 0)
    assert w() > before + 1e-4


# -- NIC's BiGAN: the training step's own losses and the direction of its G/E step -------------------------------
BIGAN = dict(image_size=32, pool=2, channels=[4, 4], code_size=3, gen_start=4, gen_channels=[4, 4], disc_hidden=8,
             dropout=0.0)


def _bigan_losses(m, x, seed):
    torch.manual_seed(seed)
    z = torch.randn(x.shape[0], m.config.code_size)
    xs = F.avg_pool2d(x, 2) * 2 - 1
    d_real = m.discriminator(xs, m.encoder(xs))
    d_fake = m.discriminator(m.generator(z), z)
    ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_real)
    d_loss = _bce_logits(d_real, ones).mean() + _bce_logits(d_fake, zeros).mean()
    ge_loss = _bce_logits(d_real, zeros).mean() + _bce_logits(d_fake, ones).mean()
    return d_loss, ge_loss


def test_bigan_training_step_losses_from_the_parts():
    torch.manual_seed(16)
    m = create_model("nic-bigan", **BIGAN)
    x = _images(6, 3, 32, seed=22)
    spy = Spy(m.configure_optimizers())
    torch.manual_seed(17)
    out = m.training_step({"image": x}, spy, 0)
    d_loss, ge_loss = _bigan_losses(m, x, 17)
    assert list(spy.losses) == ["discriminator", "generator"]
    _close(spy.losses["discriminator"][0], d_loss)
    _close(spy.losses["generator"][0], ge_loss)
    _close(out["d_loss"], d_loss)
    _close(out["ge_loss"], ge_loss)


def test_bigan_generator_encoder_step_fools_the_discriminator():
    """G and E move so that D scores (G(z), z) more real and (x, E(x)) less real."""
    torch.manual_seed(18)
    m = create_model("nic-bigan", **BIGAN, lr=1e-3)
    x = _images(16, 3, 32, seed=23)
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(5))
    xs = F.avg_pool2d(x, 2) * 2 - 1

    def scores():
        with torch.no_grad():
            return float(m.discriminator(m.generator(z), z).mean()), float(m.discriminator(xs, m.encoder(xs)).mean())

    spy = Spy(m.configure_optimizers(), step=["generator"])  # D stays fixed
    fake0, real0 = scores()
    for step in range(2):
        m.training_step({"image": x[:8]}, spy, step)
    fake1, real1 = scores()
    assert fake1 > fake0 and real1 < real0, (fake0, fake1, real0, real1)


@pytest.mark.parametrize("name, task", [("slide-cnn", "binary"), ("slide-cnn", "regression"),
                                        ("attention-mil", "binary")])
def test_slide_model_losses_from_the_parts(name, task):
    """BCE on the logits (or MSE on standardised labels) plus, for the CNN, Keras' L2 on every kernel."""

    small = {"slide-cnn": dict(in_channels=3, crop=12, filters=4, hidden=4, l2=1e-2),
             "attention-mil": dict(in_channels=3, crop=6, instance_dim=4, attention_dim=3)}[name]
    extra = dict(task=task, target_mean=0.2, target_std=0.1) if task == "regression" else {}
    model = create_model(name, **small, **extra).eval()
    batch = model.example_batch(4)
    batch["label"] = torch.tensor([0.0, 1.0, 1.0, 0.0]) if task == "binary" else torch.tensor([0.1, 0.3, 0.2, 0.25])
    terms = model.batch_terms(batch)
    logits = model(batch["image"], batch["mask"])["logits"]
    if task == "binary":
        data = F.binary_cross_entropy_with_logits(logits, batch["label"])
    else:
        data = ((logits - (batch["label"] - 0.2) / 0.1) ** 2).mean()
    kernels = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)] if name == "slide-cnn" else []
    l2 = 1e-2 * sum((w * w).sum() for w in kernels) if kernels else 0.0
    torch.testing.assert_close(terms["loss"], data + l2)
