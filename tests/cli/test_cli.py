"""The CLI as a user meets it."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_help_lists_the_command_groups():
    out = run_cli("--help").stdout
    for group in ("info", "samples", "train", "runs", "demo", "bench"):
        assert group in out


def test_info_reports_versions_threads_and_bf16():
    info = json.loads(run_cli("info", "--json").stdout)
    assert info["versions"]["torch"].startswith("2.")
    assert info["torch_threads"] >= 1
    assert info["bf16_matmul_speedup"] > 0


def test_runs_list_and_show(tmp_path):
    from pathlib import Path

    tiny = Path(__file__).parents[1] / "train" / "tiny.yaml"
    run_cli("train", str(tiny), "--out", str(tmp_path / "runs" / "r1"), "--set", "train.steps=10")
    listed = run_cli("runs", "list", str(tmp_path / "runs")).stdout
    assert "r1" in listed and "finished" in listed
    shown = json.loads(run_cli("runs", "show", str(tmp_path / "runs" / "r1")).stdout)
    assert shown["model"] == "autoencoder" and shown["step"] == 10


def test_bad_input_is_one_clear_line(tmp_path):
    proc = run_cli("train", str(tmp_path / "missing.yaml"), check=False)
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_refuses_an_unknown_stage_before_any_work(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--only", "synthpath", "--only", "bogus", "--out", str(out), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'bogus'" in proc.stderr and "synthpath" in proc.stderr and "compression" in proc.stderr  # lists the stages
    assert "'synthpath'" not in proc.stderr  # the valid name is not blamed
    assert not out.exists()  # no empty report, no folder
