"""User TorchScript encoders: a module the test scripts itself, its JSON, the round trip and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from histolatent.errors import InputError
from histolatent.models.torchscript import load_torchscript_encoder


class _Tiny(nn.Module):
    def __init__(self, code: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6, code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


SPEC = {"input_px": 16, "mpp": 0.5, "code_size": 4,
        "normalization": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}


def _save(tmp_path, spec=SPEC, module=None, name="model"):
    torch.manual_seed(0)
    module = module or _Tiny()
    pt = tmp_path / f"{name}.pt"
    torch.jit.script(module).save(str(pt))
    if spec is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    return pt, module


def test_round_trip_applies_the_declared_normalisation(tmp_path):
    pt, module = _save(tmp_path)
    enc = load_torchscript_encoder(pt)
    assert (enc.config.image_size, enc.config.mpp, enc.config.code_size) == (16, 0.5, 4)
    assert len(enc.weights_hash) == 64
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(SPEC["normalization"]["mean"]), torch.tensor(SPEC["normalization"]["std"])
    want = module((x - mean[:, None, None]) / std[:, None, None])
    with torch.no_grad():
        got = enc.encode(x)["z"]
    assert got.shape == (5, 4) and torch.allclose(got, want.detach(), atol=1e-6)


def test_range_normalisation_maps_unit_pixels_linearly(tmp_path):
    pt, module = _save(tmp_path, {**SPEC, "normalization": {"range": [-1, 1]}})
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(load_torchscript_encoder(pt).encode(x)["z"], module(x * 2 - 1), atol=1e-6)


@pytest.mark.parametrize("spec,field", [
    ({k: v for k, v in SPEC.items() if k != "mpp"}, "'mpp' is missing"),
    ({**SPEC, "mpp": -1}, "'mpp'"),
    ({**SPEC, "input_px": "16"}, "'input_px'"),
    ({**SPEC, "normalization": {"mean": [0.5]}}, "'normalization'"),
    ({**SPEC, "normalization": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, "'normalization.mean'"),
    ({**SPEC, "normalization": {"mean": 0.5, "std": 0}}, "'normalization.std'"),
    ({**SPEC, "normalization": {"range": [1, 0]}}, "'normalization.range'"),
    ({**SPEC, "colour": "rgb"}, "unknown field"),
    ({**SPEC, "code_size": 7}, "code_size 7"),
])
def test_bad_json_names_the_file_and_the_field(tmp_path, spec, field):
    pt, _ = _save(tmp_path, spec)
    with pytest.raises(InputError, match=field) as err:
        load_torchscript_encoder(pt)
    assert str(tmp_path) in str(err.value)


def test_missing_json_corrupt_file_and_wrong_input_size_are_input_errors(tmp_path):
    pt, _ = _save(tmp_path, None)
    with pytest.raises(InputError, match=r"model\.json.*missing"):
        load_torchscript_encoder(pt)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_torchscript_encoder(pt)
    (tmp_path / "model.json").write_text(json.dumps(SPEC))
    pt.write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a loadable TorchScript"):
        load_torchscript_encoder(pt)
    with pytest.raises(InputError, match="does not exist"):
        load_torchscript_encoder(tmp_path / "nope.pt")
    pt2, _ = _save(tmp_path, {**SPEC, "input_px": 2}, name="small")  # conv 3x3 cannot run on 2 px
    with pytest.raises(InputError, match="probe forward"):
        load_torchscript_encoder(pt2)
