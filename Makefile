# Two commands on a fresh machine (Python 3.11):  make run   and   make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: run test setup vbn-env lint report clean

$(BIN)/snakemake: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[workflow,dev]'
	@touch $@

setup: $(BIN)/snakemake

## run the default workflow end to end (synthetic data, CPU by default)
run: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "results in results/, report in results/report.html"

## the whole test suite (unit, use-case, workflow, VBN fake-cache tests)
test: setup vbn-env
	$(BIN)/python -m pytest

.venv-vbn/bin/python: requirements-vbn.txt
	bash scripts/setup_vbn_env.sh

## the separate allensdk environment used only by the VBN extraction rule
vbn-env: .venv-vbn/bin/python

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
