"""The trained NIC patch encoders the NIC benchmarks share (``nic_encoders``, ``nic_slides``).

Not a benchmark itself: a cache of training runs. :func:`trained_encoder` trains a shipped
config (``configs/<name>.yaml``) through the one engine (:func:`histolatent.train.fit`), with
only the step count changed in quick mode (and ``model.code_size`` for the code-size sweep of
``nic_slides``), and keeps the run folder under :func:`zoo_dir`, keyed by the config's text,
the overrides, the step count, the seed and the hash of ``src/``: a second benchmark (or a
second run) reuses an encoder trained on the same code, a change of code or config trains
a new one. A run is written under a temporary name and renamed when complete, so a killed
training is never taken for a finished one.

Encoders (the paper's §2, §4.3): the supervised oracle (upper bound), the contrastive
Siamese network, the VAE and the BiGAN, for the synthetic digit task (``DIGITS``: 9 x 9
MNIST-5k patches, C = 16) and for SynthPath tissue (``TISSUE``: the CPU presets, 128 px at
0.5 µm/px, C = 128); the mean-RGB lower bound needs no training (:func:`mean_rgb`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

#: the shipped configs
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: encoder -> shipped config, digit task (the paper's synthetic data) and SynthPath tissue
DIGITS = {"oracle": "nic-oracle-digits", "contrastive": "nic-siamese-digits", "vae": "nic-vae-digits",
          "bigan": "nic-bigan-digits"}
TISSUE = {"oracle": "nic-oracle-cpu", "contrastive": "nic-siamese-cpu", "vae": "nic-vae-cpu",
          "bigan": "nic-bigan-cpu"}
UNSUPERVISED = ("contrastive", "vae", "bigan")
#: quick mode: training steps of every encoder (the configs' own counts otherwise)
QUICK_STEPS = {"digits": 60, "tissue": 3}


def zoo_dir() -> Path:
    """``$HISTOLATENT_NIC_ZOO`` or ``~/.cache/histolatent/nic-zoo``."""
    return Path(os.environ.get("HISTOLATENT_NIC_ZOO", Path.home() / ".cache" / "histolatent" / "nic-zoo"))


def run_config(name: str, *, steps: int | None = None, seed: int = 0,
               overrides: dict[str, Any] | None = None) -> dict:
    """The shipped config ``name`` with ``steps``, ``seed`` and dotted ``overrides`` applied."""
    from histolatent.config import load_yaml

    raw = load_yaml(CONFIGS / f"{name}.yaml")
    for key, value in (overrides or {}).items():
        *path, last = key.split(".")
        node = raw
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    train = raw.setdefault("train", {})
    train["seed"] = int(seed)
    if steps is not None:
        train["steps"] = int(steps)
        for k in ("checkpoint_every", "val_every"):  # keep one validation / checkpoint inside a short run
            if k in train:
                train[k] = max(1, min(int(train[k]), int(steps)))
    return raw


def run_key(name: str, *, steps: int | None, seed: int, overrides: dict[str, Any] | None) -> str:
    """What identifies a trained encoder: config text, overrides, steps, seed and the code."""
    from histolatent.machine import source_state

    text = (CONFIGS / f"{name}.yaml").read_text(encoding="utf-8")
    blob = json.dumps({"config": text, "overrides": overrides or {}, "steps": steps, "seed": seed,
                       "src": source_state()["src_hash"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def trained_encoder(name: str, *, steps: int | None = None, seed: int = 0, overrides: dict[str, Any] | None = None,
                    zoo: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Train ``configs/<name>.yaml`` through ``fit`` or reuse the cached run; ``(run folder, info)``.

    ``info``: ``config``, ``steps``, ``seed``, ``overrides``, ``train_seconds`` (of the run that
    trained it), ``reused`` (True when it came from the cache).
    """
    from histolatent.train import fit

    root = Path(zoo) if zoo is not None else zoo_dir()
    key = run_key(name, steps=steps, seed=seed, overrides=overrides)
    run = root / f"{name}-{'s' + str(steps) if steps else 'shipped'}-seed{seed}-{key}"
    info_path = run / "zoo.json"
    if info_path.is_file() and (run / "weights.safetensors").is_file():
        return run, {**json.loads(info_path.read_text()), "reused": True}
    tmp = run.with_name(run.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cfg = run_config(name, steps=steps, seed=seed, overrides=overrides)
    t0 = time.perf_counter()
    fit(cfg, out=tmp)
    info = {"config": name, "steps": int(cfg["train"]["steps"]), "seed": seed, "overrides": overrides or {},
            "train_seconds": round(time.perf_counter() - t0, 1), "key": key}
    (tmp / "zoo.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(run, ignore_errors=True)
    tmp.rename(run)
    return run, {**info, "reused": False}


def mean_rgb(image_size: int, in_channels: int):
    """NIC's lower bound (the registered ``mean-rgb`` model): the tile's mean per channel; no training."""
    from histolatent.models import create_model

    return create_model("mean-rgb", image_size=image_size, in_channels=in_channels)


def encoders(task: str, *, quick: bool, seed: int = 0, overrides: dict[str, dict[str, Any]] | None = None
             ) -> tuple[dict[str, Any], dict[str, dict]]:
    """``({encoder: run folder or model}, {encoder: training info})`` for ``task`` ("digits" / "tissue"),
    the four trained encoders and mean-RGB; ``overrides`` = ``{encoder: {dotted key: value}}``."""
    table = {"digits": DIGITS, "tissue": TISSUE}[task]
    runs, infos = {}, {}
    for enc, name in table.items():
        runs[enc], infos[enc] = trained_encoder(name, steps=QUICK_STEPS[task] if quick else None, seed=seed,
                                                overrides=(overrides or {}).get(enc))
    runs["mean-rgb"] = mean_rgb(9, 1) if task == "digits" else mean_rgb(128, 3)
    infos["mean-rgb"] = {"config": None, "steps": 0}
    return runs, infos
