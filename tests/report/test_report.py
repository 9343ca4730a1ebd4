from histolatent.report import Section, write_report


def test_report_copies_figures_and_escapes_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_path = tmp_path / "f.png"
    plt.figure().savefig(fig_path)
    page = write_report(tmp_path / "out", [
        Section("Stage <one>", text="a & b", figures=[(fig_path, "cap")], tables=[("t", [{"x": 1.23456, "y": "z"}])]),
        Section("Broken", error="ValueError: boom"),
    ], title="demo")
    html = page.read_text()
    assert "Stage &lt;one&gt;" in html and "a &amp; b" in html and "1.235" in html and "boom" in html
    assert (page.parent / "figures" / "00-f.png").is_file()
