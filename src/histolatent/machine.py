"""What machine are we on: versions, threads, devices, bf16 support (for info and benchmarks)."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PACKAGES = ["histolatent", "torch", "lightning", "numpy", "scipy", "scikit-image", "scikit-learn",
             "opencv-python-headless", "openslide-python", "openslide-bin", "tiffslide", "tifffile",
             "imagecodecs", "zarr", "dask", "pyarrow", "pydantic", "safetensors"]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_matmul_speedup(n: int = 512, repeats: int = 5) -> float:
    """Ratio of bf16 to fp32 matmul throughput on the CPU (measured now, side by side)."""
    import torch

    def bench(dtype: torch.dtype) -> float:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        a @ b
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        return time.perf_counter() - t

    return bench(torch.float32) / max(bench(torch.bfloat16), 1e-9)


def cpu_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it, slowly."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def machine_info(*, probe_bf16: bool = False) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_native_bf16(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "versions": package_versions(),
    }
    if probe_bf16:
        info["bf16_matmul_speedup"] = round(bf16_matmul_speedup(), 2)
    return info


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(args: list[str], repo: str | os.PathLike | None) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=repo, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit of ``repo`` (default: the working directory), or None outside git."""
    out = _git(["rev-parse", "HEAD"], repo)
    return (out or "").strip() or None


def source_state(package_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What code a measurement ran: commit, whether ``src/`` differs from it, and a hash of ``src/``.

    ``src_hash`` is the SHA-256 of every ``*.py`` file under the package folder (paths and
    bytes, in sorted order), so a result can be matched to the code even without git.
    ``src_dirty`` is True when ``git status`` lists a change under ``src/`` (untracked files
    included), None outside a git checkout. ``package_dir`` defaults to this package.
    """
    import hashlib

    pkg = Path(package_dir).resolve() if package_dir is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
    top = _git(["rev-parse", "--show-toplevel"], pkg)
    dirty = None
    if top is not None:
        status = _git(["status", "--porcelain", "--untracked-files=all", "--", str(pkg)], pkg)
        dirty = bool(status and status.strip()) if status is not None else None
    return {"commit": git_commit(pkg) if top is not None else None, "src_dirty": dirty, "src_hash": h.hexdigest()}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    Small models and small full-batch problems run fastest on one thread on a shared CPU:
    a second OpenMP thread that is descheduled stalls every parallel region.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
