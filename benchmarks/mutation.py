"""Mutation testing of the core packages (mutmut 3): how many planted bugs do the tests catch?

For each package, mutmut makes small changes to its code one at a time (``+`` for ``-``,
``<`` for ``<=``, a constant off by one, a dropped argument, ...) and runs the fast tests
that cover the mutated function. A mutant is **killed** when a test fails, **survives** when
every test passes, and **times out** when the tests run far longer than without it (an
infinite loop: detected too). ``mutation_kill_rate`` = (killed + timed out) / mutants
checked, overall and per package; mutants that no test reaches ("no tests") count as
survivors.

Each package is mutated in a scratch copy of the repository under ``build/mutation/<pkg>``
(``src``, ``tests``, ``pyproject.toml`` with a generated ``[tool.mutmut]`` section), so the
working tree is never touched and packages can be run one at a time: a run updates its
packages in ``benchmarks/results/mutation.json`` and keeps the others.

    make mutate PKG=metrics          # one package (metrics: about 45 min on 2 cores)
    make mutate                      # every core package (hours)
    python benchmarks/mutation.py metrics --resume   # after an interruption: the untested mutants only

Needs the ``mutate`` extra (``pip install -e ".[mutate]"``). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: Core package -> the fast tests that cover it (mutmut runs, per mutant, only those of them
#: that reached the mutated function).
PACKAGES: dict[str, list[str]] = {
    "io": ["tests/io"],
    "tissue": ["tests/tissue"],
    "stain": ["tests/stain"],
    "nuclei": ["tests/nuclei"],
    "nn": ["tests/nn"],
    "losses": ["tests/models"],
    "models": ["tests/models"],
    "metrics": ["tests/metrics"],
    "train": ["tests/train"],
    "embed": ["tests/embed"],
}

#: Surviving mutants that cannot be killed because they do not change behaviour, each with
#: one line saying why (mutmut name -> reason). They are listed, and left out of the rate.
EQUIVALENT: dict[str, str] = {}

#: Statuses of ``mutmut results --all true`` and how they count.
KILLED, SURVIVED, TIMEOUT = "killed", "survived", "timeout"
UNDETECTED = {"survived", "no tests", "suspicious"}
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}

ROOT = Path(__file__).resolve().parents[1]


def _mutmut_section(package: str, tests: list[str]) -> str:
    """The ``[tool.mutmut]`` settings of one package's run (TOML)."""
    lines = [
        "[tool.mutmut]",
        'source_paths = ["src"]',
        # tests that train a shipped config read configs/ beside tests/
        'also_copy = ["configs"]',
        f'only_mutate = ["src/histolatent/{package}/*"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        # fast tests only, quietly, without xdist: mutmut runs the workers itself
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", "not slow"]',
        # torch and OpenMP are not fork-safe once the suite has run in the parent
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "timeout_multiplier = 10.0",
    ]
    return "\n".join(lines) + "\n"


def _scratch(package: str) -> Path:
    """A fresh copy of src/, tests/, configs/ and pyproject.toml (with the package's mutmut settings)."""
    work = ROOT / "build" / "mutation" / package
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", work / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "configs", work / "configs", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)  # a section of our own only
    (work / "pyproject.toml").write_text(text.rstrip() + "\n\n" + _mutmut_section(package, PACKAGES[package]),
                                         encoding="utf-8")
    return work


def _env(work: Path) -> dict[str, str]:
    # "src" is relative: mutmut runs the tests in work/mutants, so the mutated copy wins over
    # the editable install; one thread per worker (see the Makefile's test target)
    return {**os.environ, "PYTHONPATH": "src", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def parse_results(text: str) -> dict[str, str]:
    """``mutant name -> status`` from the output of ``mutmut results --all true``."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(histolatent\.[\w.]+__mutmut_\d+)\s*:\s*(.+?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def summarise(package: str, statuses: dict[str, str], seconds: float) -> dict:
    """Counts, survivors and the kill rate of one package's statuses."""
    equivalent = {k: v for k, v in EQUIVALENT.items() if k in statuses}
    counted = {k: s for k, s in statuses.items() if k not in equivalent and s in DETECTED | UNDETECTED}
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    detected = sum(1 for s in counted.values() if s in DETECTED)
    return {
        "package": package,
        "tests": PACKAGES[package],
        "mutants": len(statuses),
        "killed": counts.get(KILLED, 0),
        "survived": counts.get(SURVIVED, 0),
        "timed_out": counts.get(TIMEOUT, 0),
        "no_tests": counts.get("no tests", 0),
        "other": {k: v for k, v in counts.items() if k not in (KILLED, SURVIVED, TIMEOUT, "no tests")},
        "checked": len(counted),
        "kill_rate": detected / len(counted) if counted else None,
        "survivors": sorted(k for k, s in counted.items() if s in UNDETECTED),
        "equivalent": equivalent,
        "seconds": round(seconds, 1),
    }


def run_package(package: str, *, max_children: int | None = None, resume: bool = False) -> dict:
    """Mutate one package in a scratch copy and return its :func:`summarise` record.

    With ``resume``, an existing scratch copy of an interrupted run is kept: mutmut stores each
    mutant's result as it goes, so only the mutants not yet tested run (the copy must be of the
    same commit: its ``commit.txt`` is checked).
    """
    if package not in PACKAGES:
        raise SystemExit(f"unknown package {package!r}; core packages: {', '.join(PACKAGES)}")
    work = ROOT / "build" / "mutation" / package
    commit = _head()
    if resume and (work / "mutants").is_dir():
        stamp = work / "commit.txt"
        if not stamp.exists() or stamp.read_text(encoding="utf-8").strip() != commit:
            raise SystemExit(f"{work} holds a run of another commit; run without --resume")
        print(f"  resuming the run in {work}", flush=True)
    else:
        work = _scratch(package)
        (work / "commit.txt").write_text(commit + "\n", encoding="utf-8")
    spent = float((work / "seconds.txt").read_text()) if (work / "seconds.txt").exists() else 0.0
    cmd = [sys.executable, "-m", "mutmut", "run"]
    if max_children:
        cmd += ["--max-children", str(max_children)]
    t0 = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True)
    finally:  # an interrupted run still counts its time when it is resumed
        (work / "seconds.txt").write_text(f"{spent + time.perf_counter() - t0:.1f}\n")
    seconds = spent + time.perf_counter() - t0
    (work / "mutmut-run.log").write_text(run.stdout + "\n--- stderr ---\n" + run.stderr, encoding="utf-8")
    if run.returncode != 0:
        raise SystemExit(f"mutmut run failed for {package} (exit {run.returncode}); see {work / 'mutmut-run.log'}\n"
                         + run.stderr[-2000:])
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=_env(work),
                         capture_output=True, text=True, check=True)
    statuses = parse_results(res.stdout)
    if not statuses:
        raise SystemExit(f"mutmut made no mutants of {package}; see {work / 'mutmut-run.log'}")
    return summarise(package, statuses, seconds)


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _previous(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["details"]["packages"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return {}


def main(quick: bool = False, packages: list[str] | None = None, out_dir: str | os.PathLike | None = None,
         max_children: int | None = None, resume: bool = False) -> dict:
    """Mutate ``packages`` (default ``$HISTOLATENT_MUTATE_PACKAGES``, else every core package)
    and merge their records into ``mutation.json``; returns the figures."""
    from histolatent.bench import check_result_target, results_dir, save_result

    if packages is None:
        env = os.environ.get("HISTOLATENT_MUTATE_PACKAGES", "").replace(",", " ").split()
        packages = env or (["metrics"] if quick else list(PACKAGES))
    out = Path(out_dir) if out_dir is not None else results_dir()
    check_result_target("mutation", out_dir=out)  # refuse a dirty tree before hours of work
    records = {k: v for k, v in _previous(out / "mutation.json").items() if k in PACKAGES}
    for package in packages:
        print(f"mutating {package} ...", flush=True)
        records[package] = run_package(package, max_children=max_children, resume=resume)
        r = records[package]
        print(f"  {r['killed']} killed, {r['survived']} survived, {r['timed_out']} timed out, "
              f"{r['no_tests']} without tests: kill rate {r['kill_rate']}", flush=True)
    checked = sum(r["checked"] for r in records.values())
    detected = sum(r["checked"] - len(r["survivors"]) for r in records.values())
    figures = {"mutation_kill_rate": detected / checked if checked else None}
    figures.update({f"kill_rate_{k}": records[k]["kill_rate"] for k in PACKAGES if k in records})
    notes = ("kill rate = (killed + timed out) / mutants checked (equivalent mutants left out, mutants no test "
             f"reaches counted as survivors); packages measured: {', '.join(k for k in PACKAGES if k in records)}")
    save_result("mutation", figures, details={"packages": records, "missing": [k for k in PACKAGES if k not in records]},
                notes=notes, out_dir=out)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", help=f"core packages to mutate (default: all of {', '.join(PACKAGES)})")
    parser.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    parser.add_argument("--max-children", type=int, help="parallel mutmut workers (default: CPU count)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run of the same commit (mutants already tested are kept)")
    args = parser.parse_args()
    print(json.dumps(main(packages=args.packages or None, out_dir=args.out_dir, max_children=args.max_children,
                          resume=args.resume), indent=2))
