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

# kserve's client pins an older protobuf and pulls ~450 MB: it gets a venv of its own,
# which the Open Inference Protocol client tests (tests/service/test_clients.py) call.
KSERVE_VENV := .venv-kserve
$(KSERVE_VENV)/.installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(KSERVE_VENV)/bin/python -m pip install -q 'kserve>=0.14'
	touch $@

pytest: setup $(KSERVE_VENV)/.installed
	KSERVE_PYTHON=$(CURDIR)/$(KSERVE_VENV)/bin/python $(VENV)/bin/pytest -q

test: lint typecheck pytest

# Regenerate the small default model committed under models/ (served by the Docker image), then
# check it as the service will at startup: hash = card, 0 BN nodes, golden samples reproduce.
default-model: setup
	$(PY) -m training all --out models/digits --seed 0
	$(PY) scripts/smoke_client.py model models/digits/model.onnx

# Lint the Dockerfile, then build the image and run it for real with a throw-away Docker engine
# (root; installs docker.io + debootstrap if missing; leaves the host as it found it).
docker-smoke: setup
	$(VENV)/bin/hadolint Dockerfile
	bash scripts/docker-smoke.sh

# Strict schema validation of deploy/kubernetes (kubernetes-validate's bundled schemas + the
# InferenceService schema shipped there) and consistency with the Dockerfile and the service.
k8s-validate: setup
	$(PY) scripts/validate_k8s.py deploy/kubernetes

# Speed targets: each prints its figures as ratios against a baseline measured in the same run.
bench: $(MODEL)
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_fold
	$(PY) -m benchmarks.bench_export --run $(ARTIFACTS)
	$(PY) benchmarks/serve_load.py --model $(MODEL) --checkpoint $(ARTIFACTS)/checkpoint.pt

clean:
	rm -rf $(VENV) $(KSERVE_VENV) artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
