# Every target creates what it needs: a fresh machine runs `make serve` or `make test` directly.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARTIFACTS ?= artifacts/digits
MODEL := $(ARTIFACTS)/model.onnx
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: setup serve model test lint typecheck pytest docker-smoke k8s-validate default-model bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,serve,dev]'
	touch $@

setup: $(VENV)/.installed

# Train the default digits CNN if there is no model yet, fold, export and verify it.
$(MODEL): | $(VENV)/.installed
	$(PY) -m training all --out $(ARTIFACTS)

model: $(MODEL)

serve: $(MODEL)
	MODEL_PATH=$(MODEL) $(PY) -m service --host $(HOST) --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy training service

pytest: setup
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# Regenerate the small default model committed under models/ (served by the Docker image).
default-model: setup
	$(PY) -m training all --out models/digits --seed 0

docker-smoke: setup
	bash scripts/docker-smoke.sh

k8s-validate: setup
	$(PY) scripts/validate_k8s.py deploy/kubernetes

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
