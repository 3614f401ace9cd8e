# Quick start: `make demo` and `make test` set up .venv themselves (CPU PyTorch, never CUDA packages).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Pinned first: the CPU wheel of this exact version is on disk here. An unpinned `torch`
	# would pull several GB of CUDA packages from the registry.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,bench,adversarial,ssl,slurm,lightning,loggers,hf]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/selfadapt demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The edit loop: every unit test, without the tests marked slow (real-data training, processes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
