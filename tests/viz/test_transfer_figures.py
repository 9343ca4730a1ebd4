"""DRL's transfer figures: the low-label curves draw each method's mean ± SD at its fractions on a
log axis; the t-SNE figure has one panel per model and refuses mismatched code arrays."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import histolatent.viz.transfer as vt
from histolatent.errors import InputError


@pytest.fixture
def kept(monkeypatch):
    """Keep the figure the function hands to ``save_png`` (and still write it)."""
    figs = []

    def keep(fig, path, **kw):
        figs.append(fig)
        fig.savefig(path)
        return path

    monkeypatch.setattr(vt, "save_png", keep)
    yield figs
    plt.close("all")


def test_low_label_curves_plot_mean_and_sd_per_method(kept, tmp_path):
    curves = {"drl": {0.01: [0.6, 0.8], 0.1: [0.9, 0.9]}, "random": {0.1: [0.5, 0.7], 0.01: [0.4, 0.4]}}
    vt.low_label_figure(curves, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    ax = kept[0].axes[0]
    assert ax.get_xscale() == "log"
    lines = [c for c in ax.containers]  # one errorbar container per method
    assert [c.get_label() for c in lines] == ["drl", "random"]
    x, y = lines[1].lines[0].get_data()
    np.testing.assert_allclose(np.asarray(x, float), [1.0, 10.0])  # percent, sorted
    np.testing.assert_allclose(np.asarray(y, float), [0.4, 0.6])
    seg = lines[0].lines[2][0].get_segments()  # the SD bars of drl: mean ± sample SD
    np.testing.assert_allclose([s[:, 1] for s in seg][0], [0.7 - np.std([0.6, 0.8], ddof=1),
                                                            0.7 + np.std([0.6, 0.8], ddof=1)])
    with pytest.raises(InputError):
        vt.low_label_figure({}, tmp_path / "d.png")


def test_deformation_embedding_has_a_panel_per_model(kept, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 5))
    vt.deformation_embedding_figure({"one": (a, a + 0.01), "two": (a, rng.normal(size=(12, 5)))},
                                    tmp_path / "t.png", perplexity=5)
    assert [ax.get_title() for ax in kept[0].axes] == ["one", "two"]
    with pytest.raises(InputError, match="same shape"):
        vt.deformation_embedding_figure({"bad": (a, a[:5])}, tmp_path / "u.png")
