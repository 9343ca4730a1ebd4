"""DRL's downstream networks: losses from their parts, and the warm start from a pretext run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from histolatent.errors import InputError
from histolatent.models import copy_weights, create_model, save_weights

TINY = dict(image_size=16, widths=[4, 8], convs=[1, 1])


def test_classifier_loss_is_the_cross_entropy_of_its_head_on_pooled_blocks():
    torch.manual_seed(0)
    m = create_model("vgg-classifier", **TINY).eval()
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 1])
    h = m.backbone.blocks[1](m.backbone.blocks[0](x * 2 - 1))  # (3, 8, 4, 4)
    logits = h.mean(dim=(2, 3)) @ m.head.weight.T + m.head.bias
    terms = m.batch_terms(x, y)
    torch.testing.assert_close(terms["loss"], F.cross_entropy(logits, y))
    assert float(terms["acc"]) == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    # a head on block 1 reads block 1 only
    m1 = create_model("vgg-classifier", **TINY, feature_block=1).eval()
    h1 = m1.backbone.blocks[0](x * 2 - 1).mean(dim=(2, 3))
    torch.testing.assert_close(m1(x), h1 @ m1.head.weight.T + m1.head.bias)


def test_segmenter_loss_is_cross_entropy_plus_soft_dice_from_its_logits():
    torch.manual_seed(1)
    m = create_model("vgg-segmenter", **TINY, dice_weight=0.7).eval()
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16))
    logits = m(x)
    assert logits.shape == (2, 2, 16, 16)
    fg = 1 - torch.softmax(logits, 1)[:, 0]
    t = (y > 0).float()
    soft = (2 * (fg * t).sum() + 1) / (fg.sum() + t.sum() + 1)
    want = F.cross_entropy(logits, y) + 0.7 * (1 - soft)
    torch.testing.assert_close(m.batch_terms(x, y)["loss"], want)
    p = m.predict(x[..., :13, :15])  # any size: padded, then cropped back
    assert p.shape == (2, 2, 13, 15)
    torch.testing.assert_close(p.sum(1), torch.ones(2, 13, 15))


def test_warm_start_copies_the_pretext_backbone_and_nothing_else(tmp_path):
    torch.manual_seed(2)
    drl = create_model("drl", **TINY, local_block=1, fem_channels=2, disc_channels=[4, 4, 4], prior_hidden=[4])
    run = save_weights(drl, tmp_path / "drl", step=1).parent
    torch.manual_seed(3)
    clf = create_model("vgg-classifier", **TINY)
    head = clf.head.weight.detach().clone()
    copied = copy_weights(clf, run)
    assert copied and all(k.startswith("backbone.") for k in copied)
    for k, v in drl.backbone.state_dict().items():
        assert torch.equal(clf.backbone.state_dict()[k], v), k
    assert torch.equal(clf.head.weight, head)
    wider = create_model("vgg-classifier", image_size=16, widths=[4, 16], convs=[1, 1])
    with pytest.raises(InputError, match="do not fit"):
        copy_weights(wider, run)
    with pytest.raises(InputError, match="no weights"):
        copy_weights(clf, tmp_path / "nowhere")
