"""``histolatent demo``: the main job end to end on the samples and SynthPath, as a report.

Each stage is a function ``stage(ctx: DemoContext) -> Section`` in a module of this
package; ``STAGES`` lists them in the order of the pipeline (slide -> tissue -> stain ->
nuclei -> representation -> downstream). A stage that fails is shown in the report with
its error, the others still run, and the demo exits non-zero.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from histolatent.errors import InputError
from histolatent.report import Section, write_report

#: (module of this package, function) in pipeline order
STAGES: list[tuple[str, str]] = [
    ("foundation", "sample_slide"),
    ("foundation", "reference_model"),
    ("synth", "synthpath"),
    ("stain", "stain"),
    ("nuclei", "nuclei"),
    ("infogan", "infogan"),
    ("se2n_vae", "se2n_vae"),
    ("target_vae", "target_vae"),
    ("nic", "compression"),
]


@dataclass
class DemoContext:
    out: Path
    seed: int = 0
    quick: bool = False

    @property
    def figures(self) -> Path:
        p = self.out / "figures"
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def runs(self) -> Path:
        return self.out / "runs"


def run_demo(out: str | Path, *, seed: int = 0, quick: bool = False, only: list[str] | None = None,
             progress=None) -> tuple[Path, list[Section]]:
    """Run the stages (all, or those named in ``only``); returns (report path, sections).

    >>> run_demo("unused", only=["synthpath", "colour"])
    Traceback (most recent call last):
    ...
    histolatent.errors.InputError: only: unknown demo stage 'colour'; the stages are sample_slide, reference_model, synthpath, stain, nuclei, infogan, se2n_vae, target_vae, compression
    """
    names = [fn for _, fn in STAGES]
    unknown = [s for s in (only or []) if s not in names]
    if unknown:  # before any work: a misspelt stage must not give an empty report and exit 0
        raise InputError(f"only: unknown demo stage{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(s) for s in unknown)}; the stages are {', '.join(names)}")
    ctx = DemoContext(Path(out), seed=seed, quick=quick)
    ctx.out.mkdir(parents=True, exist_ok=True)
    sections = []
    for module, fn in STAGES:
        if only and fn not in only:
            continue
        if progress is not None:
            progress(fn)
        t0 = time.perf_counter()
        try:
            section = getattr(import_module(f"histolatent.demo.{module}"), fn)(ctx)
        except Exception as err:  # shown in the report; the demo exits non-zero
            section = Section(title=fn.replace("_", " "), error=f"{type(err).__name__}: {err}\n\n"
                              + traceback.format_exc(limit=6))
        section.seconds = time.perf_counter() - t0
        sections.append(section)
    from histolatent import __version__

    report = write_report(ctx.out, sections, title="histolatent demo",
                          meta=f"histolatent {__version__} · seed {seed} · {'quick' if quick else 'full'} run")
    return report, sections
