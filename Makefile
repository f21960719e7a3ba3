# kgrag — developer entry points.  `make demo` and `make test` set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
KGRAG := $(VENV)/bin/kgrag
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-all demo bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml tests/neo4j_lint/package.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# CPU torch first so nothing else pulls a CUDA build; never torchvision.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all,dev]'
	$(PY) -c "import torch, sys; sys.exit('torchvision must not be installed') if __import__('importlib').util.find_spec('torchvision') else None"
	cd tests/neo4j_lint && npm install --no-audit --no-fund --silent
	touch $@

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m "not neo4j"

demo: install
	bash scripts/demo.sh

bench: install
	$(PY) benchmarks/run_all.py

lint: install
	$(VENV)/bin/ruff check kgrag tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
