# Two commands on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: it re-installs only when pyproject.toml changed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
OUT ?= histolatent-demo
JOBS ?= 2

.PHONY: setup demo test lint bench bench-deps mutate clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# the torch pin goes first: a bare `torch` requirement would pull a CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/histolatent demo --out $(OUT)

# One torch/OpenMP thread per test worker: JOBS workers x N threads on JOBS cores would
# oversubscribe them, and spin-waiting OpenMP threads then run ~10x slower.
# pytest collects tests/ and the docstring examples of src/histolatent (pyproject.toml).
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/histolatent bench engine

# peers compared against in benchmarks/stain_speed.py (never needed by the package)
bench-deps: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python -m pip install -q --no-deps staintools==2.1.2

# Mutation testing (mutmut 3), one core package at a time or all of them (hours); not part of
# `make test`. Writes benchmarks/results/mutation.json (kill rate per package, survivors).
PKG ?=
mutate: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[mutate]"
	HISTOLATENT_MUTATE_PACKAGES="$(PKG)" $(BIN)/histolatent bench mutation

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
