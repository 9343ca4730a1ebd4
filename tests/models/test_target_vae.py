"""TARGET-VAE: Eq. 5 loss and gradients against a slow direct implementation, equivariance of the
encoder to 90° rotations, the pose convention of the generator, training smoke test."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from histolatent.models import PlainOptimizers, create_model, list_models
from histolatent.nn.fourier import (
    coordinate_grid,
    grid_axes,
    transform_coordinates,
    transformed_fourier_features,
)
from histolatent.nn.groupconv import rotate_group

TINY = dict(image_size=8, kernel_size=5, padding=0, channels=3, n_rotations=4, z_dim=2, fourier_features=8,
            gen_hidden=5, gen_layers=2, t_prior_std=0.3, leaky_slope=0.1)


# ---------------------------------------------------------------------------------------------
# A slow, direct implementation of the objective (Eq. 1-6), loops everywhere
# ---------------------------------------------------------------------------------------------
def _slow_loss(m, x: torch.Tensor, noise: dict[str, torch.Tensor]) -> torch.Tensor:
    c = m.config
    R, k, p, slope = c.n_rotations, c.kernel_size, c.padding, c.leaky_slope
    assert R == 4  # kernels rotated by exact quarter turns below
    xp = F.pad(x, (p, p, p, p))
    hw = xp.shape[-1] - k + 1
    w = m.lift.weight  # (C, 1, k, k)
    # lifting group conv: out[o, r](i, j) = <rot_r(w_o), patch(i, j)> + bias_o
    lift = torch.zeros(x.shape[0], c.channels, R, hw, hw, dtype=x.dtype)
    rows = []
    for b in range(x.shape[0]):
        for o in range(c.channels):
            for r in range(R):
                wr = torch.rot90(w[o, 0], r)
                for i in range(hw):
                    for j in range(hw):
                        rows.append(((b, o, r, i, j), (xp[b, 0, i:i + k, j:j + k] * wr).sum() + m.lift.bias[o]))
    idx, vals = zip(*rows, strict=True)
    lift = lift.index_put(tuple(torch.tensor(v) for v in zip(*idx, strict=True)), torch.stack(vals))  # (B, C, R, H, W)
    h = F.leaky_relu(lift, slope)
    for layer in m.pointwise:
        h = F.leaky_relu(torch.einsum("oi,birxy->borxy", layer.weight[:, :, 0, 0, 0], h)
                         + layer.bias[None, :, None, None, None], slope)
    out = torch.einsum("oi,birxy->borxy", m.head.weight[:, :, 0, 0, 0], h) + m.head.bias[None, :, None, None, None]

    spacing = 2.0 / (c.image_size - 1)
    cells = [(r, i, j) for r in range(R) for i in range(hw) for j in range(hw)]
    tpos = {(i, j): torch.tensor([(j - (hw - 1) / 2) * spacing, (i - (hw - 1) / 2) * spacing], dtype=x.dtype)
            for i in range(hw) for j in range(hw)}
    log_pt_un = {ij: -(v**2).sum() / (2 * c.t_prior_std**2) for ij, v in tpos.items()}
    log_zt = torch.logsumexp(torch.stack(list(log_pt_un.values())), 0)
    offset = [math.atan2(math.sin(2 * math.pi * r / R), math.cos(2 * math.pi * r / R)) for r in range(R)]
    s_theta = math.pi / R
    gen = m.generator
    total = 0.0
    for b in range(x.shape[0]):
        logit = torch.stack([out[b, 0, r, i, j] + (log_pt_un[(i, j)] - log_zt) - math.log(R) for r, i, j in cells])
        log_p = torch.stack([(log_pt_un[(i, j)] - log_zt) - math.log(R) for r, i, j in cells])
        q = torch.exp(logit) / torch.exp(logit).sum()
        kl_tr = sum(q[n] * torch.log(q[n] / torch.exp(log_p[n])) for n in range(len(cells)))
        kl_rest = 0.0
        for n, (r, i, j) in enumerate(cells):
            mu_post, ls = out[b, 1, r, i, j] + offset[r], out[b, 2, r, i, j]
            kl_theta = math.log(s_theta) - ls + (torch.exp(2 * ls) + (mu_post - offset[r]) ** 2) / (2 * s_theta**2) - 0.5
            kl_z = 0.0
            for d in range(c.z_dim):
                mu, lsz = out[b, 3 + d, r, i, j], out[b, 3 + c.z_dim + d, r, i, j]
                kl_z = kl_z + (-lsz + (torch.exp(2 * lsz) + mu**2) / 2 - 0.5)
            kl_rest = kl_rest + q[n] * (kl_theta + kl_z)
        kl = kl_tr + kl_rest  # Eq. 5
        # Gumbel-softmax sample and the attention-weighted parameters
        g = noise["gumbel"][b]
        e = torch.exp((torch.log(q) + g) / c.temperature)
        s = e / e.sum()
        th_mean = sum(s[n] * (out[b, 1, r, i, j] + offset[r]) for n, (r, i, j) in enumerate(cells))
        th_ls = sum(s[n] * out[b, 2, r, i, j] for n, (r, i, j) in enumerate(cells))
        theta = th_mean + torch.exp(th_ls) * noise["eps_theta"][b]
        z = torch.stack([sum(s[n] * out[b, 3 + d, r, i, j] for n, (r, i, j) in enumerate(cells))
                         + torch.exp(sum(s[n] * out[b, 3 + c.z_dim + d, r, i, j] for n, (r, i, j) in enumerate(cells)))
                         * noise["eps_z"][b, d] for d in range(c.z_dim)])
        t = sum(s[n] * tpos[(i, j)] for n, (r, i, j) in enumerate(cells))
        # spatial generator, pixel by pixel: y_u ~ Bernoulli(g(z, M(theta)(u - t)))  (Eq. 2)
        nll = 0.0
        rot = torch.stack([torch.stack([torch.cos(theta), -torch.sin(theta)]),
                           torch.stack([torch.sin(theta), torch.cos(theta)])])
        for yi in range(c.image_size):
            for xi in range(c.image_size):
                u = torch.tensor([(xi - (c.image_size - 1) / 2) * spacing, (yi - (c.image_size - 1) / 2) * spacing],
                                 dtype=x.dtype)
                v = rot @ (u - t)
                feat = torch.cos(gen.fourier.freqs @ v + gen.fourier.phases)
                hh = F.leaky_relu(gen.coord.weight @ feat + gen.coord.bias + gen.latent.weight @ z, slope)
                for layer in gen.hidden:
                    hh = F.leaky_relu(layer.weight @ hh + layer.bias, slope)
                logit_px = (gen.out.weight @ hh + gen.out.bias)[0]
                y = x[b, 0, yi, xi]
                nll = nll - (y * F.logsigmoid(logit_px) + (1 - y) * F.logsigmoid(-logit_px))
        total = total + nll + kl
    return total / x.shape[0]


def test_loss_and_gradients_match_a_direct_implementation_of_eq5():
    torch.manual_seed(0)
    m = create_model("target-vae", **TINY).double()
    with torch.no_grad():  # a non-trivial posterior: spread the attention and the log-stds
        m.head.weight.mul_(3.0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    n = TINY["n_rotations"] * 4 * 4
    noise = {k: v.double() for k, v in m.sample_noise(2, n, generator=g).items()}
    fast = m.loss_terms(x, noise)["loss"]
    fast_grads = torch.autograd.grad(fast, list(m.parameters()))
    slow = _slow_loss(m, x, noise)
    slow_grads = torch.autograd.grad(slow, list(m.parameters()))
    assert abs(fast.item() - slow.item()) < 1e-5
    for (name, _), a, b in zip(m.named_parameters(), fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda s, name=name: f"{name}: {s}")


def test_kl_terms_are_consistent_with_eq5_parts():
    torch.manual_seed(0)
    m = create_model("target-vae", **TINY)
    terms = m.loss_terms(torch.rand(3, 1, 8, 8))
    assert torch.isclose(terms["kl"], terms["kl_tr"] + terms["kl_theta"] + terms["kl_z"], atol=1e-5)
    assert float(terms["kl_tr"]) >= -1e-6 and float(terms["kl_z"]) >= 0
    assert torch.isclose(terms["loss"], terms["recon"] + terms["kl"], atol=1e-4)


def test_quarter_turn_of_the_input_rolls_the_attention_by_r_over_4():
    torch.manual_seed(0)
    m = create_model("target-vae", image_size=16, kernel_size=7, padding=2, channels=6, n_rotations=8,
                     fourier_features=8, gen_hidden=8).eval()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    e0, e1 = m.encode(x), m.encode(torch.rot90(x, 1, dims=(-2, -1)))
    # q(t, r | rot x) = L_g q(t, r | x): the map turns by 90° and its rotation axis rolls by R / 4
    expected = rotate_group(e0["attention"][:, None], 2, 8)[:, 0]
    torch.testing.assert_close(e1["attention"], expected, atol=1e-6, rtol=1e-4)
    assert torch.equal(e1["r"], (e0["r"] + 2) % 8)
    dtheta = torch.remainder(e1["theta"] - e0["theta"] - math.pi / 2 + math.pi, 2 * math.pi) - math.pi
    assert dtheta.abs().max() < 1e-4
    # a feature at (x, y) (y down) moves to (y, -x) under a counter-clockwise quarter turn
    torch.testing.assert_close(e1["t"], torch.stack([e0["t"][:, 1], -e0["t"][:, 0]], 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(e1["z"], e0["z"], atol=1e-5, rtol=1e-4)  # the content is invariant


def test_generator_pose_convention_matches_rot90_and_shifts():
    torch.manual_seed(0)
    m = create_model("target-vae", image_size=15, kernel_size=5, padding=0, channels=2, n_rotations=4,
                     fourier_features=32, gen_hidden=16, z_dim=3).eval()
    z = torch.randn(2, 3)
    img = m.decode(z)
    torch.testing.assert_close(m.decode(z, math.pi / 2), torch.rot90(img, 1, dims=(-2, -1)), atol=1e-4, rtol=0)
    sp = 2.0 / 14  # shift by (+2 px right, -1 px up)
    moved = m.decode(z, 0.0, torch.tensor([[2 * sp, -sp]] * 2))
    torch.testing.assert_close(moved[..., :-1, 2:], img[..., 1:, :-2], atol=1e-4, rtol=0)


@pytest.mark.parametrize("grid", [False, True])
def test_fourier_features_of_transformed_coordinates_match_the_direct_formula_and_its_gradients(grid):
    g = torch.Generator().manual_seed(0)
    u = coordinate_grid(5, 6)
    freqs, phases = torch.randn(7, 2, generator=g, dtype=torch.float64) * 4, torch.rand(7, generator=g).double() * 6
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True, generator=g)
    t = torch.randn(5, 2, dtype=torch.float64, requires_grad=True, generator=g)
    direct = torch.cos(transform_coordinates(u.double(), theta, t) @ freqs.T + phases)
    coords = grid_axes(5, 6) if grid else u  # separable cos(a + b) path / generic path, both chunked
    fast = transformed_fourier_features(coords, freqs, phases, theta, t, chunk=2)
    torch.testing.assert_close(fast, direct, atol=1e-12, rtol=0)
    w = torch.randn(direct.shape, generator=g, dtype=torch.float64)
    fast_g = torch.autograd.grad((fast * w).sum(), (theta, t))
    for a, b in zip(fast_g, torch.autograd.grad((direct * w).sum(), (theta, t)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_training_steps_reduce_the_loss_and_bf16_autocast_runs():
    torch.manual_seed(0)
    m = create_model("target-vae", image_size=12, kernel_size=7, padding=1, channels=4, n_rotations=4,
                     fourier_features=16, gen_hidden=16, lr=1e-2)
    opts = PlainOptimizers(m.configure_optimizers())
    x = torch.zeros(4, 1, 12, 12)
    x[:, :, 3:9, 5:7] = 1.0  # a bar
    first = float(m.training_step({"image": x}, opts, 0)["loss"])
    for step in range(1, 8):
        last = float(m.training_step({"image": x}, opts, step)["loss"])
    assert last < 0.8 * first
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = m.loss_terms(x)
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_encode_decode_detect_api_and_registry():
    assert {"target-vae", "spatial-vae", "mlp-vae", "mlp-beta-vae"} <= set(list_models())
    m = create_model("target-vae", image_size=16, kernel_size=7, padding=2, channels=4, n_rotations=8, z_dim=3,
                     fourier_features=8, gen_hidden=8, pool=2, likelihood="gaussian", in_channels=3).eval()
    e = m.encode(torch.rand(2, 3, 16, 16))
    assert e["z"].shape == (2, 3) and e["theta"].shape == (2,) and e["t"].shape == (2, 2)
    assert e["attention"].shape == (2, 8, 6, 6)
    torch.testing.assert_close(e["attention"].sum((1, 2, 3)), torch.ones(2))
    assert m.decode(e["z"]).shape == (2, 3, 16, 16) and m.decode(e["z"], size=32).shape == (2, 3, 32, 32)
    canvas = torch.zeros(1, 3, 48, 48)
    objs = m.detect(canvas + torch.rand(1, 3, 48, 48) * 0.1, max_objects=3)
    assert len(objs) == 1 and 1 <= len(objs[0]) <= 3
    assert {"z", "theta", "t", "position", "score", "r"} <= set(objs[0][0])
    assert m.compose(objs[0], 48).shape == (3, 48, 48)
    with pytest.raises(ValueError, match="divisible by pool"):
        create_model("target-vae", image_size=15, pool=2)


def test_binomial_pooling_keeps_coordinates_and_aliases_less_than_average_pooling():
    from histolatent.models.target_vae import binomial_pool

    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(binomial_pool(torch.full((1, 2, 12, 12), 0.7), 2), torch.full((1, 2, 6, 6), 0.7))
    x = torch.zeros(4, 1, 24, 24)
    x[..., 6:18, 6:18] = torch.rand(4, 1, 12, 12, generator=g)  # zero border: no edge effects

    def centroid(img: torch.Tensor) -> torch.Tensor:
        ii = torch.arange(img.shape[-1], dtype=img.dtype)
        w = img.sum((1, 2, 3))
        return torch.stack([(img.sum(-1)[:, 0] * ii).sum(-1) / w, (img.sum(-2)[:, 0] * ii).sum(-1) / w], 1)

    # mass kept; pooled pixel i sits at input 2 i + 1/2 (as for average pooling), and the centroid
    # maps exactly (average pooling rounds an impulse to its pooling cell)
    torch.testing.assert_close(binomial_pool(x, 2).sum((1, 2, 3)), x.sum((1, 2, 3)) / 4)
    torch.testing.assert_close(centroid(binomial_pool(x, 2)), (centroid(x) - 0.5) / 2, atol=1e-4, rtol=0)
    assert (centroid(F.avg_pool2d(x, 2)) - (centroid(x) - 0.5) / 2).abs().max() > 1e-3

    # a one-pixel shift is half a pooled pixel: the ideal pooled image is halfway between the pooled
    # image and the pooled two-pixel shift. Average pooling misses it by far more (aliasing).
    def half_pixel_error(pool) -> float:
        one, two = torch.roll(x, 1, dims=-1), torch.roll(x, 2, dims=-1)
        return float((pool(one) - 0.5 * (pool(x) + pool(two))).pow(2).sum())

    box, binom = half_pixel_error(lambda v: F.avg_pool2d(v, 2)), half_pixel_error(lambda v: binomial_pool(v, 2))
    assert binom < 0.35 * box
    m = create_model("target-vae", image_size=16, kernel_size=5, padding=0, channels=2, n_rotations=4, pool=2,
                     pool_filter="binomial", fourier_features=8, gen_hidden=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.prepare(torch.rand(1, 1, 16, 16)).dtype == torch.float32


def test_phase_averaged_encoding():
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(3, 1, 16, 16)
    x[..., 4:12, 6:10] = torch.rand(3, 1, 8, 4, generator=g) + 0.5
    torch.manual_seed(0)
    full = create_model("target-vae", image_size=16, kernel_size=7, padding=2, channels=4, n_rotations=8,
                        fourier_features=8, gen_hidden=8).eval()
    a, b = full.encode(x), full.encode(x, average_phases=True)  # pool 1: one phase, the same result
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    torch.manual_seed(0)
    m = create_model("target-vae", image_size=16, kernel_size=5, padding=1, channels=4, n_rotations=8, pool=2,
                     pool_filter="binomial", fourier_features=8, gen_hidden=8, z_dim=3).eval()
    e = m.encode(x, average_phases=True)
    assert e["z"].shape == (3, 3) and e["theta"].shape == (3,) and e["attention"].shape == (3, 8, 6, 6)
    torch.testing.assert_close(e["attention"].sum((1, 2, 3)), torch.ones(3))
    # the attention is the mean of the four phases' posteriors; t is the cell of its mode, moved
    # back by the mean phase shift of half a pixel
    phases = [m.encode(F.pad(x, (0, j, 0, i))[..., i:, j:])["attention"] for i in (0, 1) for j in (0, 1)]
    torch.testing.assert_close(e["attention"], torch.stack(phases).mean(0))
    idx = e["attention"].reshape(3, -1).argmax(1) % 36
    torch.testing.assert_close(e["t"], m.translation_grid(6, 6)[idx] + 1 / 15)
    assert torch.equal(e["r"], e["attention"].reshape(3, -1).argmax(1) // 36)
