# Two commands on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: it re-installs only when pyproject.toml changed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
OUT ?= histolatent-demo
JOBS ?= 2

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# the torch pin goes first: a bare `torch` requirement would pull a CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/histolatent demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/histolatent bench engine

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
