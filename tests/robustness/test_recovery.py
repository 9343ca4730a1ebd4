"""Recovery: stale temporaries of killed writers are removed by the next run, resume falls back
to the newest checkpoint that loads, a finished run is never reused by a new one, broken runs
are listed as broken, and `bench` runs only registered benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from histolatent.errors import InputError

IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)


def _cfg(steps: int) -> dict:
    return {"model": {"name": "autoencoder", "in_channels": 3, "image_size": 8, "channels": [4], "latent_dim": 2},
            "train": {"steps": steps, "batch_size": 4, "progress": False, "checkpoint_every": 2,
                      "keep_checkpoints": 3, "log_every": 1}}


def _killed_writer(target) -> None:
    """A process that dies by SIGKILL half-way through an atomic write of ``target``."""
    code = textwrap.dedent(f"""
        import os, signal
        from histolatent.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": "src"}, check=False)
    assert proc.returncode == -9


def test_the_next_run_in_a_folder_removes_a_killed_writers_temporary(good, cli, tmp_path):
    _killed_writer(tmp_path / "mask.png")
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".mask.png.")]
    assert len(stale) == 1 and stale[0].read_text() == "half"
    from histolatent.io.atomic import atomic_path

    with atomic_path(tmp_path / "live.png") as live:  # a live writer's temporary is left alone
        code, _, err = cli("slide", "tissue", good.png, tmp_path / "mask.png", "--slide-mpp", "0.5")
        assert code == 0, err
        assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.png", "mask.png"]


def test_resume_falls_back_to_the_newest_checkpoint_that_loads_and_ends_as_a_straight_run(tmp_path):
    from histolatent.train import fit, load_model

    straight = fit(_cfg(6), data=IMAGES, out=tmp_path / "straight")
    crashed = fit(_cfg(4), data=IMAGES, out=tmp_path / "crashed")
    ckpts = sorted((crashed / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in ckpts] == ["step-00000002.pt", "step-00000004.pt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # the last checkpoint was cut short
    (crashed / "model.json").unlink()
    fit(None, data=IMAGES, resume=crashed, overrides=["train.steps=6"])
    assert (crashed / "checkpoints" / "step-00000004.pt.unreadable").exists()
    a, b = load_model(straight).state_dict(), load_model(crashed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_out_on_a_run_refuses_and_points_to_resume(tmp_path):
    from histolatent.train import fit

    run = fit(_cfg(2), data=IMAGES, out=tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(InputError, match=r"already holds a run.*--resume"):
        fit(_cfg(2), data=IMAGES, out=run)
    assert sorted(p.name for p in run.iterdir()) == before


def test_runs_list_shows_broken_runs_with_the_reason_and_carries_on(good, cli, tmp_path):
    root = tmp_path / "runs"
    for name in ("ok", "bad-json", "no-weights", "flipped"):
        shutil.copytree(good.run, root / name)
    (root / "bad-json" / "model.json").write_text("{")
    (root / "no-weights" / "weights.safetensors").unlink()
    w = root / "flipped" / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x40
    w.write_bytes(bytes(data))
    from histolatent.train import run_summary

    status = {name: run_summary(root / name) for name in ("ok", "bad-json", "no-weights", "flipped")}
    assert status["ok"]["status"] == "finished" and status["ok"]["problem"] == ""
    assert "not valid JSON" in status["bad-json"]["problem"]
    assert "weights.safetensors is missing" in status["no-weights"]["problem"]
    assert "SHA-256" in status["flipped"]["problem"]
    assert all(status[n]["status"] == "broken" for n in ("bad-json", "no-weights", "flipped"))
    code, out, err = cli("runs", "list", root)
    assert code == 0, err
    assert out.count("broken:") == 3 and out.count("finished") == 1


def test_bench_runs_only_registered_names(tmp_path):
    from histolatent.bench import benchmark_names, run_benchmark

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "tiny.py").write_text("def main(quick=False): return {'quick': quick}")
    (tmp_path / "evil.py").write_text("def main(quick=False): raise SystemExit('ran a script outside')")
    assert benchmark_names(tmp_path / "benchmarks") == ["tiny"]
    assert run_benchmark("tiny", quick=True, bench_dir=tmp_path / "benchmarks") == {"quick": True}
    for name in ("../evil", str(tmp_path / "evil"), "tiny.py", ""):
        with pytest.raises(InputError, match="a name, not a path"):
            run_benchmark(name, bench_dir=tmp_path / "benchmarks")
