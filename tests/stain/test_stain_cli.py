"""``histolatent stain fit|apply|compare`` end to end on tiny images."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def test_stain_fit_apply_compare(cli, tmp_path, he_pair):
    src, tgt = he_pair
    Image.fromarray(src).save(tmp_path / "src.png")
    Image.fromarray(tgt).save(tmp_path / "tgt.png")
    (tmp_path / "folder").mkdir()
    Image.fromarray(src).save(tmp_path / "folder" / "a.png")
    Image.fromarray(np.full((16, 16, 3), 250, np.uint8)).save(tmp_path / "folder" / "glass.png")

    cli("stain", "fit", str(tmp_path / "tgt.png"), "--out", str(tmp_path / "m.json"), "--method", "macenko",
        "--set", "alpha=1.5")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["method"] == "macenko" and saved["params"]["alpha"] == 1.5
    cli("stain", "apply", str(tmp_path / "m.json"), str(tmp_path / "src.png"), str(tmp_path / "out.png"))
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == src.shape and not np.array_equal(out, src)
    proc = cli("stain", "apply", str(tmp_path / "m.json"), str(tmp_path / "folder"), str(tmp_path / "outdir"))
    assert sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["a.png", "glass.png"]
    assert "1 returned unchanged" in proc.stdout
    proc = cli("stain", "compare", str(tmp_path / "src.png"), str(tmp_path / "tgt.png"), "--figure",
               str(tmp_path / "cmp.png"), "--json", str(tmp_path / "cmp.json"))
    table = json.loads((tmp_path / "cmp.json").read_text())
    assert set(table) == {"macenko", "reinhard", "vahadane", "unnormalised"}
    assert (tmp_path / "cmp.png").stat().st_size > 10_000 and "hellinger" in proc.stdout
    bad = cli("stain", "fit", str(tmp_path / "nope.png"), "--out", str(tmp_path / "x.json"), check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_stain_apply_to_a_slide_writes_a_normalised_pyramid(cli, tmp_path, render_he):
    import tifffile

    from histolatent.io.slide import open_slide

    img = np.concatenate([render_he(size=128, seed=s) for s in range(2)], axis=1)  # 128 x 256
    desc = "Aperio Image Library v12.0.0\n256x128 [0,0 256x128] (64x64) JPEG/RGB Q=95|AppMag = 20|MPP = 0.5"
    tifffile.imwrite(tmp_path / "s.svs", img, tile=(64, 64), description=desc, metadata=None, photometric="rgb",
                     compression="jpeg", compressionargs={"level": 95, "outcolorspace": "RGB"})
    Image.fromarray(render_he(size=96, seed=5)).save(tmp_path / "tgt.png")
    cli("stain", "fit", str(tmp_path / "tgt.png"), "--out", str(tmp_path / "r.json"), "--method", "reinhard")
    proc = cli("stain", "apply", str(tmp_path / "r.json"), str(tmp_path / "s.svs"), str(tmp_path / "out.tif"),
               "--tile-px", "64")
    assert "tiles normalised" in proc.stdout
    with open_slide(tmp_path / "out.tif") as out, open_slide(tmp_path / "s.svs") as src:
        assert out.dimensions == src.dimensions and out.mpp == 0.5
        assert np.abs(out.read(0, 0, 256, 128).astype(int) - src.read(0, 0, 256, 128)).mean() > 1
