"""encode_images: batching, the image-input policy, parts, precision; weights_hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.embed import encode_images, weights_hash
from histolatent.errors import InputError
from histolatent.models import create_model


def test_batches_give_the_same_parts_and_grey_patches_stay_grey(tiny_se2n, discs):
    torch.manual_seed(0)
    m = create_model("se2n-vae", **tiny_se2n)
    p, _ = discs(5)
    a = encode_images(m, p, batch_size=2)
    b = encode_images(m, p, batch_size=5, parts=["z_iso"])
    assert a["q_ori"].shape == (5, 3, 8) and set(b) == {"z_iso"} and a["z_iso"].dtype == np.float32
    np.testing.assert_allclose(a["z_iso"], b["z_iso"], atol=1e-5)
    # the same images as a float NCHW tensor give the same parts
    t = encode_images(m, torch.from_numpy(p).permute(0, 3, 1, 2).float() / 255, parts=["z_iso"])
    np.testing.assert_allclose(t["z_iso"], a["z_iso"], atol=1e-6)
    # rotating the patch leaves z_iso unchanged (end to end through the uint8 path)
    c = encode_images(m, np.ascontiguousarray(np.rot90(p, 1, axes=(1, 2))), parts=["z_iso"])
    np.testing.assert_allclose(c["z_iso"], a["z_iso"], rtol=1e-4, atol=1e-5)


def test_bad_images_and_missing_parts_are_input_errors(tiny_se2n, discs):
    m = create_model("se2n-vae", **tiny_se2n)
    p, _ = discs(3)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        encode_images(m, p.astype(np.float32))  # 0..255 floats are not an image
    with pytest.raises(InputError, match="16x16"):
        encode_images(m, p[:, :16, :16])
    with pytest.raises(InputError, match="1-channel"):
        encode_images(m, np.repeat(p, 3, axis=3))
    with pytest.raises(InputError, match="no encode part"):
        encode_images(m, p, parts=["mu"])
    with pytest.raises(InputError, match="precision"):
        encode_images(m, p, precision="fp8")
    assert set(encode_images(m, p, parts=["mu", "z_iso"], strict=False)) == {"z_iso"}


def test_named_part_matches_the_model_and_bf16_is_close_and_the_mode_is_restored():
    torch.manual_seed(0)
    model = create_model("autoencoder", in_channels=3, image_size=8, channels=[4, 8], latent_dim=5)
    imgs = np.random.default_rng(3).integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    model.train()
    f = encode_images(model, imgs, parts=["z"], batch_size=3)["z"]
    assert model.training  # encode_images ran in eval mode and put the mode back
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(f, model.eval().encode(x)["z"].detach().numpy(), rtol=1e-5, atol=1e-6)
    bf = encode_images(model, imgs, parts=["z"], precision="bf16")["z"]
    assert bf.dtype == np.float32 and not np.array_equal(bf, f)
    np.testing.assert_allclose(bf, f, atol=0.05 * np.abs(f).max())


def test_weights_hash_names_the_exact_weights():
    torch.manual_seed(0)
    a = create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2)
    b = create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2)
    b.load_state_dict(a.state_dict())
    assert weights_hash(a) == weights_hash(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert weights_hash(a) != weights_hash(b)
