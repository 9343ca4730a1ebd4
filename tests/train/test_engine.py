"""The engine's guarantees: determinism, exact resume after SIGKILL, NaN detection, DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import REPO, run_cli

from histolatent.errors import ConfigError, InputError, TrainingError
from histolatent.models import register_model
from histolatent.models.autoencoder import Autoencoder, AutoencoderConfig
from histolatent.train import fit, load_model, read_metrics
from histolatent.train.checkpoint import latest_checkpoint

TINY = Path(__file__).with_name("tiny.yaml")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights.safetensors"))


def assert_same_weights(a: dict, b: dict, *, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), f"{k} differs"
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def test_same_seed_gives_bitwise_identical_weights(tmp_path):
    a = fit(TINY, out=tmp_path / "a")
    b = fit(TINY, out=tmp_path / "b")
    c = fit(TINY, out=tmp_path / "c", overrides=["train.seed=4"])
    assert_same_weights(weights(a), weights(b))
    assert not torch.equal(weights(a)["to_z.weight"], weights(c)["to_z.weight"])


def test_run_folder_layout_and_load_model_without_pickle(tmp_path):
    run = fit(TINY, out=tmp_path / "run", overrides=["train.val_every=10", "train.checkpoint_every=10"])
    for name in ("config.yaml", "weights.safetensors", "model.json", "metrics.csv", "figures/loss.png"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000020.pt", "step-00000030.pt"]
    model = load_model(run)
    x = torch.rand(2, 1, 16, 16)
    assert model.encode(x)["z"].shape == (2, 4)
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows if r["split"] == "val"] == [10, 20, 30]
    # the resolved config round-trips into an identical run
    again = fit(run / "config.yaml", out=tmp_path / "again")
    assert_same_weights(weights(run), weights(again))


def test_sigkill_then_resume_ends_with_identical_weights(tmp_path):
    common = ["--set", "train.steps=60", "--set", "train.checkpoint_every=20", "--set", "train.keep_checkpoints=5"]
    run_cli("train", str(TINY), "--out", str(tmp_path / "full"), *common)
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "histolatent.cli.app", "train", str(TINY), "--out", str(killed),
                             *common], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "step-00000020.pt").exists():
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    ckpt = latest_checkpoint(killed)
    assert ckpt is not None and int(ckpt.stem.split("-")[1]) < 60
    assert not (killed / "weights.safetensors").exists()
    run_cli("train", "--resume", str(killed))
    assert_same_weights(weights(tmp_path / "full"), weights(killed))
    full_rows = [r for r in read_metrics(tmp_path / "full")]
    resumed_rows = [r for r in read_metrics(killed)]
    assert [r["step"] for r in full_rows] == [r["step"] for r in resumed_rows]
    assert [r["loss"] for r in full_rows] == [r["loss"] for r in resumed_rows]


def test_resume_can_extend_a_finished_run(tmp_path):
    run = fit(TINY, out=tmp_path / "r", overrides=["train.steps=20"])
    with pytest.raises(InputError, match="already reached step 20"):
        fit(None, resume=run)
    fit(None, resume=run, overrides=["train.steps=30"])
    straight = fit(TINY, out=tmp_path / "s", overrides=["train.steps=30"])
    assert_same_weights(weights(run), weights(straight))


class NanConfig(AutoencoderConfig):
    nan_at: int = 12


@register_model("test-nan-autoencoder")
class NanAutoencoder(Autoencoder):
    """Returns a NaN KL term from step ``nan_at`` on (as a diverging model would)."""

    Config = NanConfig

    def training_step(self, batch, optimizers, step):
        terms = self.loss(batch)
        kl = torch.tensor(float("nan")) if step >= self.config.nan_at else torch.tensor(0.0)
        optimizers.update(terms["loss"] + kl, "main")
        return {"recon": terms["loss"].detach(), "kl": kl}


def test_nan_loss_stops_with_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    from histolatent.train import RunConfig

    cfg = RunConfig(model={"name": "test-nan-autoencoder", "image_size": 16, "channels": [8, 16], "nan_at": 12},
                    data={"name": "digits", "size": 16},
                    train={"steps": 30, "batch_size": 16, "checkpoint_every": 5, "progress": False})
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"step 12: 'kl' = nan.*last good checkpoint: .*step-00000010\.pt"):
        fit(cfg, out=run)
    assert latest_checkpoint(run).name == "step-00000010.pt"
    assert not (run / "weights.safetensors").exists()
    state = torch.load(latest_checkpoint(run), weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_config_errors_name_the_key_and_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("latent_dim: 4", "latnt_dim: 4"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'model\.latnt_dim': unknown key"):
        fit(bad)
    with pytest.raises(ConfigError, match=r"tiny\.yaml: key 'train\.steps'"):
        fit(TINY, overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match=r"key 'train\.lrr': unknown key"):
        fit(TINY, overrides=["train.lrr=0.1"])
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        fit(TINY, overrides=["model.name=nope"])
    proc = run_cli("train", str(bad), check=False)
    assert proc.returncode == 2 and "latnt_dim" in proc.stderr and "Traceback" not in proc.stderr


def test_two_process_ddp_on_cpu_averages_gradients(tmp_path):
    """2 processes x batch 8 (gloo) == 1 process x batch 16, for a model without batch norm."""
    common = ["--set", "model.batch_norm=false", "--set", "train.steps=12"]
    # a time budget that is never reached: the ranks share rank 0's clock each step (a broadcast)
    run_cli("train", str(TINY), "--out", str(tmp_path / "ddp"), "--devices", "2", "--strategy", "ddp",
            "--set", "train.batch_size=8", "--set", "train.max_seconds=100000", *common, timeout=240)
    fit(TINY, out=tmp_path / "single", overrides=["model.batch_norm=false", "train.steps=12", "train.batch_size=16"])
    assert_same_weights(weights(tmp_path / "single"), weights(tmp_path / "ddp"), atol=2e-5)
    meta = (tmp_path / "ddp" / "model.json").read_text()
    assert '"world_size": 2' in meta


def test_bf16_mixed_precision_trains(tmp_path):
    run = fit(TINY, out=tmp_path / "bf16", overrides=["train.precision=bf16", "train.steps=20"])
    rows = [r for r in read_metrics(run) if r["split"] == "train"]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_auto_precision_follows_the_hardware_and_the_run_records_what_it_used(tmp_path, monkeypatch):
    import json

    from histolatent.train import config as train_config

    for native, expected in ((False, "32-true"), (True, "bf16-mixed")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert train_config.resolve_precision("auto", "cpu") == expected
        run = fit(TINY, out=tmp_path / expected, overrides=["train.precision=auto", "train.steps=2"])
        assert json.loads((run / "model.json").read_text())["precision"] == expected
        assert f"precision: {expected}" in (run / "config.yaml").read_text()
    assert train_config.resolve_precision("16-mixed", "cpu") == "16-mixed"


def test_scheduler_early_stopping_and_clipping(tmp_path):
    # an LR of 1e-6 without batch-norm statistics makes a real plateau (relative change < 1e-4)
    run = fit(TINY, out=tmp_path / "es", overrides=[
        "model.lr=1e-6", "model.batch_norm=false", "train.steps=200", "train.val_every=5", "train.grad_clip=0.5",
        "train.scheduler={name: plateau, patience: 0, factor: 0.5}",
        "train.early_stopping={patience: 2, min_delta: 1.0}"])
    rows = read_metrics(run)
    lrs = [float(r["lr"]) for r in rows if r["split"] == "val"]
    assert lrs[-1] < lrs[0], "plateau scheduler never reduced the LR"
    import json

    meta = json.loads((run / "model.json").read_text())
    assert meta["stopped_early"] and meta["step"] < 200


def test_threads_option_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # make test runs with OMP_NUM_THREADS=1: start from another value
    try:
        fit(TINY, out=tmp_path / "t", overrides=["train.threads=1", "train.steps=2"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
