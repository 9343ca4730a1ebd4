"""Benchmark provenance: a result names the code it measured, and a dirty tree cannot pass as clean."""

import json
import subprocess

import pytest

import histolatent.bench as bench
from histolatent.errors import InputError
from histolatent.machine import source_state


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_source_state_follows_commit_edits_and_reverts(tmp_path):
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    clean = source_state(pkg)
    assert clean["commit"] == head and clean["src_dirty"] is False
    (pkg / "a.py").write_text("x = 2\n")
    dirty = source_state(pkg)
    assert dirty["src_dirty"] is True and dirty["src_hash"] != clean["src_hash"]
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "new.py").write_text("")                     # an untracked module is a change too
    assert source_state(pkg)["src_dirty"] is True
    (pkg / "new.py").unlink()
    assert source_state(pkg) == clean


def test_outside_git_there_is_a_hash_but_no_commit(tmp_path):
    (tmp_path / "m.py").write_text("y = 0\n")
    s = source_state(tmp_path)
    assert s["commit"] is None and s["src_dirty"] is None and len(s["src_hash"]) == 64


@pytest.fixture
def dirty_src(monkeypatch):
    monkeypatch.setattr(bench, "source_state", lambda: {"commit": "abc", "src_dirty": True, "src_hash": "h"})
    monkeypatch.delenv("HISTOLATENT_BENCH_ALLOW_DIRTY", raising=False)


def test_dirty_tree_cannot_write_committed_results(tmp_path, dirty_src):
    results = tmp_path / "benchmarks" / "results"
    with pytest.raises(InputError, match="uncommitted changes"):
        bench.save_result("x", {"a": 1.0}, out_dir=results)
    assert not results.exists()
    path = bench.save_result("x", {"a": 1.0}, out_dir=results, allow_dirty=True)
    rec = json.loads(path.read_text())
    assert rec["src_dirty"] is True and rec["commit"] == "abc" and rec["src_hash"] == "h"
    assert "(src DIRTY)" in (results / "x.md").read_text()


def test_dirty_tree_may_write_elsewhere_and_env_allows(tmp_path, dirty_src, monkeypatch):
    assert bench.save_result("y", {"a": 2.0}, out_dir=tmp_path / "scratch").is_file()
    monkeypatch.setenv("HISTOLATENT_BENCH_ALLOW_DIRTY", "1")
    assert bench.save_result("z", {"a": 3.0}, out_dir=tmp_path / "benchmarks" / "results").is_file()


def test_mutation_results_are_parsed_and_counted_as_the_readme_says():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "mutation_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "mutation.py")
    mut = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mut)
    text = ("    histolatent.metrics.auc.x_auc__mutmut_1: killed\n"
            "    histolatent.metrics.auc.x_auc__mutmut_2: survived\n"
            "histolatent.metrics.auc.x_auc__mutmut_3: timeout\n"
            "histolatent.metrics.auc.x_roc__mutmut_1: no tests\n"
            "not a result line\n")
    st = mut.parse_results(text)
    assert st == {"histolatent.metrics.auc.x_auc__mutmut_1": "killed", "histolatent.metrics.auc.x_auc__mutmut_2": "survived",
                  "histolatent.metrics.auc.x_auc__mutmut_3": "timeout", "histolatent.metrics.auc.x_roc__mutmut_1": "no tests"}
    rec = mut.summarise("metrics", st, 1.0)
    # killed and timed out count as caught; a mutant no test reaches counts as a survivor
    assert (rec["killed"], rec["survived"], rec["timed_out"], rec["no_tests"], rec["checked"]) == (1, 1, 1, 1, 4)
    assert rec["kill_rate"] == 0.5
    assert rec["survivors"] == ["histolatent.metrics.auc.x_auc__mutmut_2", "histolatent.metrics.auc.x_roc__mutmut_1"]
