"""Demo stage: stain normalisation of a real slide crop to the real target, every method."""

from __future__ import annotations

from histolatent.report import Section


def stain(ctx) -> Section:
    from histolatent.viz.stain import real_sample_stain_demo

    steps = 0 if ctx.quick else 300
    out = real_sample_stain_demo(ctx.figures / "stain-real-sample.png", colorizer_steps=steps)
    rows = [{"method": m, **{k: float(v) for k, v in vals.items()}} for m, vals in out["metrics"].items()]
    text = ("A 1024² crop of CMU-1-Small-Region normalised to the tiatoolbox target image with Macenko, "
            "Reinhard and Vahadane" + (f", and the neural colourisation normaliser of paper 4 (trained "
                                       f"{steps} steps on crops of the target)" if steps else "")
            + ". Without ground truth on real pixels, the table compares colour histograms of tissue "
            "pixels with the target's (paper 4's metrics); benchmarks/results/stain_quality.json scores "
            "every method against SynthPath's true target renderings.")
    return Section("Stain normalisation", text=text,
                   figures=[(out["figure"], "Source crop, target, and each method's output.")],
                   tables=[("Histogram metrics vs the target (tissue pixels)", rows)])
