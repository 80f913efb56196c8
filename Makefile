# Two commands on a fresh machine (Python 3.11):  make run   and   make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

FLOORS := .venv-floors
UNIT_TESTS := not workflow and not vbn and not slurm and not cuda

.PHONY: run example test test-floors setup vbn-env lint report clean

$(BIN)/snakemake: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[workflow,slurm,test,dev]'
	# the Allen CCF structure table for the atlas's area grouping: iblatlas is used as a data
	# package (spikerbm never imports its code), so without its ~415 MB of runtime dependencies
	# (docs/methods.md, section 12)
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt iblatlas
	@touch $@

setup: $(BIN)/snakemake

# GPU-capable jobs (train, loglik, statistics, couplings, dynamics, pairwise) at a time: one per
# GPU (profiles/default says gpu=1); without a GPU they run on the CPU, where nothing needs to
# serialise them, so as many run at once as there are cores.
GPU_SLOTS ?= $(or $(filter-out 0,$(shell nvidia-smi -L 2>/dev/null | wc -l)),$(shell nproc))

## run the default workflow end to end (synthetic data, CPU by default)
run: setup
	$(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPU_SLOTS)
	$(BIN)/snakemake --report results/report.html
	@echo "results in results/, report in results/report.html"

## the real example: one committed Steinmetz et al. (2019) session (CC BY 4.0, NOTICE)
example: setup
	$(BIN)/snakemake --configfile config/steinmetz.yaml --cores $(CORES) --resources gpu=$(GPU_SLOTS)
	$(BIN)/snakemake --configfile config/steinmetz.yaml --report results-steinmetz/report.html
	@echo "results in results-steinmetz/, report in results-steinmetz/report.html"

## the whole test suite (unit, use-case, workflow, VBN fake-cache tests), then the unit tests
## again on the declared dependency floors
test: setup vbn-env
	$(BIN)/python -m pytest
	$(MAKE) test-floors

## the unit tests (and a dry run) in a fresh venv holding every direct dependency at its
## pyproject.toml floor (.ci/floors.py: core + workflow + test extras; torch stays at its
## constraints.txt pin: the only CPU build available offline)
test-floors: setup
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(BIN)/python .ci/floors.py workflow test > $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install -q -c $(FLOORS)/floors.txt -e '.[workflow,test]'
	$(FLOORS)/bin/python -m pip install -q --no-deps -c constraints.txt iblatlas
	$(FLOORS)/bin/python -m pip list --format=freeze > $(FLOORS)/installed.txt
	$(FLOORS)/bin/python .ci/floors.py --check $(FLOORS)/installed.txt workflow test
	$(FLOORS)/bin/python -m pytest -p no:cacheprovider -m '$(UNIT_TESTS)'
	$(FLOORS)/bin/snakemake -n --cores 1 --quiet rules   # the DAG at the Snakemake floor

.venv-vbn/bin/python: requirements-vbn.txt
	bash scripts/setup_vbn_env.sh

## the separate allensdk environment used only by the VBN extraction rule
vbn-env: .venv-vbn/bin/python

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake $(FLOORS)
