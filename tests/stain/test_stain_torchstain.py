"""Agreement with torchstain's Macenko on the real sample (CMU-1-Small-Region -> tiatoolbox target)."""

from __future__ import annotations

import numpy as np
import torch
import torchstain
from PIL import Image

from histolatent.io.slide import open_slide
from histolatent.stain import MacenkoNormalizer


def test_macenko_matches_torchstain_on_real_sample(sample_paths):
    target = np.asarray(Image.open(sample_paths["target-image"]).convert("RGB")).copy()
    with open_slide(sample_paths["cmu-small-region"]) as slide:
        crop = slide.read(700, 1400, 512, 512)  # stroma and epidermis
    ref = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    ref.fit(torch.from_numpy(target).permute(2, 0, 1))
    theirs, _, _ = ref.normalize(torch.from_numpy(crop.copy()).permute(2, 0, 1), stains=False)

    ours = MacenkoNormalizer().fit(target)
    assert np.abs(ours.stain_matrix_ - ref.HERef.T.numpy()).max() < 0.02
    # torchstain's concentration scale is in natural-log OD units
    assert np.allclose(ours.max_concentrations_ * np.log(10), ref.maxCRef.numpy(), rtol=0.02)
    out = ours.transform(crop)
    diff = np.abs(out.astype(int) - theirs.numpy()).max(axis=-1)
    assert (diff <= 2).mean() >= 0.99
