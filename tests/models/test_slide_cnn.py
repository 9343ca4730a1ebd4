"""NIC's slide CNN: the supplementary's architecture at the paper's defaults, a Grad-CAM hook
point, feature-wise dropout, the Keras L2 term, and both tasks' losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from histolatent.models import create_model
from histolatent.models.base import PlainOptimizers
from histolatent.nn.separable import SeparableConv2d


def test_paper_architecture_on_a_400_crop():
    torch.manual_seed(0)
    net = create_model("slide-cnn").eval()  # C = 128, R = 400, 8 separable layers of 128 filters
    assert len(net.blocks) == 8
    strides = []
    for block in net.blocks:
        conv, bn, act, drop = block
        assert isinstance(conv, SeparableConv2d) and conv.depthwise.kernel_size == (3, 3)
        assert conv.pointwise.out_channels == 128 and isinstance(bn, nn.BatchNorm2d)
        assert isinstance(act, nn.LeakyReLU) and isinstance(drop, nn.Dropout2d) and drop.p == 0.2
        strides.append(conv.depthwise.stride[0])
    assert strides == [2, 2, 2, 2, 2, 2, 1, 1]
    assert net.dense[0].out_features == 128 and isinstance(net.dense[1], nn.BatchNorm1d)
    per_layer = 128 * 9 + 128 * 128 + 128 + 2 * 128  # depthwise, pointwise + bias, BN
    dense = 128 * 128 + 128 + 2 * 128 + 128 + 1
    assert sum(p.numel() for p in net.parameters()) == 8 * per_layer + dense
    seen = {}
    handle = net.blocks[-1].register_forward_hook(lambda m, i, o: seen.setdefault("maps", o))
    with torch.no_grad():
        out = net(torch.randn(1, 128, 400, 400))
    handle.remove()
    assert tuple(seen["maps"].shape) == (1, 128, 7, 7)  # 400 / 2^6, rounded up
    assert out["logits"].shape == (1,) and 0 < float(out["prediction"]) < 1
    opt = net.configure_optimizers()["main"]
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-2


def _tiny(**kw):
    return create_model("slide-cnn", in_channels=3, crop=16, filters=6, hidden=5, **kw)


def test_the_cam_layer_is_the_papers_first_block_and_gradients_reach_it():
    torch.manual_seed(0)
    net = _tiny().eval()
    assert net.cam_layer is net.blocks[0]  # NIC §3.3: k = 1, for resolution
    assert not any(k.startswith("cam_layer") for k in net.state_dict())  # no second copy of the weights
    maps = {}

    def keep(module, inputs, output):
        output.retain_grad()
        maps["f"] = output

    handle = net.cam_layer.register_forward_hook(keep)
    net(torch.randn(2, 3, 16, 16))["logits"].sum().backward()
    handle.remove()
    assert maps["f"].grad is not None and maps["f"].grad.abs().sum() > 0


def test_dropout_drops_whole_feature_maps():
    torch.manual_seed(0)
    net = _tiny(dropout=0.5).train()
    out = net.blocks[0](torch.randn(4, 3, 16, 16) + 5)
    zero = (out == 0).flatten(2)
    per_map = zero.float().mean(dim=2)
    assert set(per_map.unique().tolist()) <= {0.0, 1.0} and 0 < per_map.mean() < 1  # all or nothing per channel


def test_l2_is_keras_sum_of_squared_kernels_added_to_the_loss():
    torch.manual_seed(0)
    net = _tiny(l2=1e-3).eval()
    kernels = [m.weight for m in net.blocks.modules() if isinstance(m, nn.Conv2d)]
    assert len(kernels) == 16  # a depthwise and a pointwise kernel per layer
    want = 1e-3 * sum(float((w.detach() ** 2).sum()) for w in kernels)
    batch = net.example_batch(4)
    with torch.no_grad():
        terms = net.batch_terms(batch)
    assert abs(float(terms["l2"]) - want) < 1e-6
    with torch.no_grad():
        bce = F.binary_cross_entropy_with_logits(net(batch["image"])["logits"], batch["label"])
    assert abs(float(terms["loss"]) - (float(bce) + want)) < 1e-5
    assert "l2" not in _tiny(l2=0).eval().batch_terms(batch)


def test_regression_learns_standardised_labels_and_predicts_on_their_scale():
    torch.manual_seed(0)
    net = _tiny(task="regression", dropout=0.0, target_mean=50.0, target_std=10.0)
    batch = net.example_batch(8)
    batch["label"] = 50 + 40 * batch["image"][:, 0].mean(dim=(1, 2))  # a value the crop shows, far from 0
    net.eval()
    with torch.no_grad():
        out = net(batch["image"])
        before = net.batch_terms(batch)
    assert torch.allclose(out["prediction"], out["logits"] * 10 + 50)
    want = F.mse_loss(out["logits"], (batch["label"] - 50) / 10)
    assert abs(float(before["mse"]) - float(want)) < 1e-6
    net.train()
    opts = PlainOptimizers(net.configure_optimizers())
    losses = [float(net.training_step(batch, opts, step)["mse"]) for step in range(60)]
    assert losses[-1] < 0.3 * losses[0], losses


def test_flatten_head_is_tied_to_the_crop():
    net = _tiny(pool="flatten").eval()
    assert net.dense[0].in_features == 6 * 1 * 1  # 16 -> 8 -> 4 -> 2 -> 1 -> 1 -> 1
    net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="16 x 16"):
        net(torch.zeros(1, 3, 20, 20))
