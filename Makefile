# The make targets are the project's interface; `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The bundled encoder needs no network; keep the hub libraries from trying.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help install run test test-slow lint format typecheck bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: this machine serves 2.13.0 as a CPU build; a plain `torch`
	# would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install fewshot (editable) with its dev tools

run: install ## The main job: build a workspace from examples/, classify new texts with evidence
	bash examples/run_demo.sh

test: install ## Run the test suite (what CI runs)
	$(PY) -m pytest -m "not slow"

test-slow: install ## Run the long checks (real datasets under ../shared/datasets)
	$(PY) -m pytest -m slow

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check fewshot tests benchmarks
	$(VENV)/bin/ruff format --check fewshot tests benchmarks

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix fewshot tests benchmarks
	$(VENV)/bin/ruff format fewshot tests benchmarks

typecheck: install ## mypy (strict) on fewshot/
	$(VENV)/bin/mypy

bench: install ## Small accuracy grid (cached, minutes) + benchmarks/RESULTS.md; full grid: see there
	$(PY) benchmarks/accuracy.py --n 8,64 --seeds 0 --methods knn,wknn,logreg
	$(PY) benchmarks/report.py

clean: ## Remove the virtualenv and caches (keeps index/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
