"""Fine-tuning: the pretrained encoder is what training starts from, labels are cut as asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from histolatent.downstream.finetune import finetune, parse_label_fraction
from histolatent.errors import InputError
from histolatent.io.pcam import write_pcam_split
from histolatent.models import create_model, load_model, save_weights

TINY = dict(image_size=32, widths=[4, 8], convs=[1, 1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("valid", 4), ("test", 8)):
        y = (np.arange(n) % 4 == 0).astype(np.uint8)  # 1 in 4 positive
        _ = write_pcam_split(tmp, split, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y)
    torch.manual_seed(123)  # not the engine's initial seed: "random" must start elsewhere
    drl = create_model("drl", **TINY, local_block=1, fem_channels=2, disc_channels=[4, 4, 4], prior_hidden=[4])
    run = save_weights(drl, tmp / "drl", step=1).parent
    return tmp, run, drl


def _conv_weights(model):
    return {k: v for k, v in model.backbone.state_dict().items() if k.endswith("weight") and v.ndim == 4}


def test_training_starts_from_the_pretrained_encoder_or_from_random_weights(setup):
    tmp, run, drl = setup
    want = _conv_weights(drl)
    for init in ("pretrained", "random"):
        r = finetune(run, labels=0.5, data=tmp, steps=1, batch_size=4, lr=1e-12, init=init, out=tmp / init)
        got = _conv_weights(load_model(r.run))
        same = all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
        assert same == (init == "pretrained"), init
        assert 0 <= r.scores["accuracy"] <= 1
    saved = json.loads((tmp / "pretrained" / "finetune.json").read_text())
    assert saved["n_labelled"] == 20 and saved["label_fraction"] == 0.5


def test_label_fraction_is_stratified_and_parsed(setup):
    tmp, run, _ = setup
    r = finetune(run, labels="10%", data=tmp, steps=1, batch_size=64, out=tmp / "ten")
    assert r.n_labelled == 4  # 1 of 10 positives + 3 of 30 negatives; the batch is cut to 4
    assert parse_label_fraction("0.1%") == 0.001
    for bad in ("0%", "150%", "a lot", 0):
        with pytest.raises(InputError, match="labels"):
            parse_label_fraction(bad)
    with pytest.raises(InputError, match="no model.json"):
        finetune(tmp, data=tmp)
    with pytest.raises(InputError, match="task"):
        finetune(run, task="detect", data=tmp)


def test_segment_task_scores_glas_objects(setup, tmp_path):
    from histolatent.io.glas import write_glas_grades, write_glas_image

    _, run, _ = setup
    for k, name in enumerate(("train_1", "train_2", "testA_1")):
        anno = np.zeros((24, 24), np.uint8)
        anno[4:12, 4:14] = 1
        write_glas_image(tmp_path, name, np.full((24, 24, 3), 60 + 40 * k, np.uint8), anno)
    write_glas_grades(tmp_path, {"train_1": "benign", "train_2": "malignant", "testA_1": "benign"})
    r = finetune(run, task="segment", labels=1.0, data=tmp_path, steps=2, batch_size=2, out=tmp_path / "seg",
                 overrides=["data.tile_px=16"])
    assert load_model(r.run).registry_name == "vgg-segmenter" and r.n_labelled == 2 * 8
    assert sorted(r.scores) == ["f1", "object_dice", "object_hausdorff"]
    assert 0 <= r.scores["object_dice"] <= 1
