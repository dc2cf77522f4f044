# One-command set-up, demo and tests. `make demo` / `make test` create .venv/ on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CI and this repository pin torch/torchvision (a matching pair); set CONSTRAINTS= to not pin.
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
EXTRAS ?= dev,train,llm

.PHONY: setup demo test test-all lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

# The main job on the embedded default: fetch the offline weights, reconstruct the built-in
# sample images, and draw the demo prompts with the shipped generator (vqrae demo --help).
demo: setup
	$(BIN)/vqrae assets fetch all-offline
	$(BIN)/vqrae demo --out outputs/demo

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check vqrae tests benchmarks
	$(BIN)/ruff format --check vqrae tests benchmarks

bench: setup
	$(BIN)/python benchmarks/quantizer.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache
