"""``histolatent slide info|thumbnail|tissue|tiles`` on the real sample."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def test_slide_commands(cli, tmp_path, sample_paths):
    svs = str(sample_paths["cmu-small-region"])
    info = json.loads(cli("slide", "info", svs, "--json").stdout)
    assert info["dimensions"] == [2220, 2967] and info["native_tile_levels"] == [0]
    cli("slide", "thumbnail", svs, str(tmp_path / "t.png"), "--max-px", "300")
    assert Image.open(tmp_path / "t.png").size == (224, 300)
    cli("slide", "tissue", svs, str(tmp_path / "m.png"), "--thumbnail-px", "512", "--remove-pen",
        "--figure", str(tmp_path / "fig.png"))
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    assert 0.2 < (mask > 0).mean() < 0.6
    cli("slide", "tiles", svs, str(tmp_path / "tiles.csv"), "--mpp", "2.0", "--tile-px", "64",
        "--mask", str(tmp_path / "m.png"), "--save-tiles", str(tmp_path / "tiles"))
    rows = (tmp_path / "tiles.csv").read_text().splitlines()
    assert rows[0] == "x,y,mpp,tile_px,tissue_fraction" and len(rows) > 10
    assert len(list((tmp_path / "tiles").glob("*.png"))) == len(rows) - 1
    bad = cli("slide", "info", str(tmp_path / "m.png"), "--json", check=False)  # a PNG: fine, no mpp
    assert bad.returncode == 0 and json.loads(bad.stdout)["mpp"] is None
    missing = cli("slide", "tiles", str(tmp_path / "m.png"), str(tmp_path / "x.csv"), "--mpp", "1", check=False)
    assert missing.returncode == 2 and "mpp" in missing.stderr
