"""A trained model's files (models/weights.py): exact round trip, and a clear error for every bad file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from histolatent.errors import InputError
from histolatent.models import create_model, load_model, save_weights

TINY = dict(image_size=8, channels=[4], latent_dim=2)


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    net = create_model("autoencoder", **TINY)
    save_weights(net, tmp_path / "run", step=7, extra={"note": "x"})
    return tmp_path / "run", net


def test_round_trip_is_exact_and_records_the_run(run):
    path, net = run
    back = load_model(path)
    assert type(back) is type(net) and not back.training
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    meta = json.loads((path / "model.json").read_text())
    assert meta["name"] == "autoencoder" and meta["step"] == 7 and meta["note"] == "x"
    assert meta["config"]["latent_dim"] == 2


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(InputError, match="not a finished histolatent run"):
        load_model(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("{not json", "model.json.*not valid JSON"),
    ("[1, 2]", "model.json.*'name'"),
    ('{"name": "autoencoder"}', "model.json.*'config'"),
    ('{"name": "no-such-model", "config": {}}', "unknown model 'no-such-model'"),
    ('{"name": "autoencoder", "config": {"latent_dim": "many"}}', "latent_dim"),
])
def test_a_malformed_model_json_is_an_input_error(run, text, match):
    path, _ = run
    (path / "model.json").write_text(text)
    with pytest.raises(InputError, match=match):
        load_model(path)


def test_truncated_or_corrupt_weights_are_an_input_error(run):
    path, _ = run
    w = path / "weights.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"weights\.safetensors.*truncated or corrupt"):
        load_model(path)
    w.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=r"weights\.safetensors.*truncated or corrupt"):
        load_model(path)


def test_weights_that_do_not_fit_or_are_not_finite_are_refused(run):
    path, net = run
    meta = json.loads((path / "model.json").read_text())
    meta["config"]["latent_dim"] = 3  # the config no longer matches the saved tensors
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not fit model 'autoencoder'"):
        load_model(path)
    meta["config"]["latent_dim"] = 2
    del meta["weights_sha256"]  # as a run from before the hash, so that the tensors themselves are checked
    (path / "model.json").write_text(json.dumps(meta))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key].view(-1)[1] = float("nan")
    save_file(state, str(path / "weights.safetensors"), metadata={"model": "autoencoder"})
    with pytest.raises(InputError, match=f"NaN or inf \\({key}\\)"):
        load_model(path)
    save_file({k: v.clone() for k, v in net.state_dict().items()}, str(path / "weights.safetensors"),
              metadata={"model": "vae"})
    with pytest.raises(InputError, match="weights are of model 'vae'"):
        load_model(path)


def test_changed_weight_bytes_are_caught_by_the_recorded_sha256(run):
    path, _ = run
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x40  # one bit of one float: still a valid safetensors file, and finite
    w.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"weights\.safetensors.*changed after training.*SHA-256"):
        load_model(path)


def test_run_problem_says_why_a_run_is_broken_and_none_for_a_good_one(run):
    from histolatent.models.weights import run_problem

    path, _ = run
    assert run_problem(path) is None
    (path / "weights.safetensors").write_bytes(b"\x00" * 10)
    assert "weights.safetensors" in run_problem(path)
    (path / "weights.safetensors").unlink()
    assert "weights.safetensors is missing" in run_problem(path)
    (path / "model.json").unlink()
    assert run_problem(path) is None  # neither file: an unfinished run, not a broken one
