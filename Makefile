# Quickstart: `make demo` then `make test`. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch is installed first and pinned: an unpinned torch pulls gigabytes of CUDA.
TORCH := torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet $(TORCH) -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m codec.demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# Speed, latency and memory on this machine (and GPU throughput when there is one);
# figures and the machine they came from go in docs/benchmarks.md.
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/speed.py --compile
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/memory.py --minutes 60
	$(BIN)/python benchmarks/gpu_throughput.py --compile
	$(BIN)/python benchmarks/entropy.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check codec tests recipes benchmarks

clean:
	rm -rf $(VENV) out
