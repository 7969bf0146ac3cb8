# Every target creates what it needs: a fresh clone runs `make serve` or `make test` directly.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
# `make serve` serves MODEL; a MODEL file that does not exist yet is trained first (DATASET,
# SEED), exported and verified, e.g. `make serve MODEL=artifacts/wine/model.onnx DATASET=wine`.
MODEL ?= models/digits/model.onnx
DATASET ?= digits
SEED ?= 0
ARTIFACTS ?= artifacts/digits
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup serve model test lint typecheck pytest chromium docker-smoke k8s-validate \
	default-model bench clean

# One venv, with one of three sets of extras: serve = the service alone (what `make serve` needs
# for a model that exists), train = + torch, onnx, scikit-learn... (installed only when a model
# must be trained), dev = + linters, type checker, test clients and the browser driver (`make
# test`). Each step installs only what is missing and marks the smaller sets done too. The
# project itself is installed editable in a developer's venv (the dev set); for serving and
# training a plain install does, since both run from the working tree. Serving and training
# skip pip's byte-compiling of every installed file (--no-compile: measured 35 s instead of
# 138 s for the train set here); Python compiles the modules it imports when it imports them.
VENV_NEW = test -x $(PY) || $(PYTHON) -m venv $(VENV)
EDITABLE = $(if $(wildcard $(VENV)/.dev),-e )

$(VENV)/.serve: pyproject.toml
	$(VENV_NEW)
	$(PIP) --no-compile $(EDITABLE)'.[serve]'
	touch $@

$(VENV)/.train: pyproject.toml
	$(VENV_NEW)
	$(PIP) --no-compile $(EDITABLE)'.[train,serve]'
	touch $(VENV)/.serve $@

$(VENV)/.dev: pyproject.toml
	$(VENV_NEW)
	$(PIP) -e '.[train,serve,dev]'
	touch $(VENV)/.serve $(VENV)/.train $@

setup: $(VENV)/.dev

# A model that is missing is trained, folded, exported and verified where it is asked for. The
# committed default model exists, so a fresh clone serves it at once, without torch.
%/model.onnx:
	$(MAKE) --no-print-directory $(VENV)/.train
	$(PY) -m training all --dataset $(DATASET) --seed $(SEED) --out $(@D)

model: $(ARTIFACTS)/model.onnx

# Binds 127.0.0.1 unless HOST is set. The server replaces the recipe's shell (exec), so Ctrl-C
# and SIGTERM reach it directly: it drains and exits, and make has no error to report.
serve: $(MODEL) $(VENV)/.serve
	@echo "serve: $(MODEL) on http://$(HOST):$(PORT)/ (demo page), /docs (API docs); Ctrl-C stops it"
	@MODEL_PATH=$(MODEL) exec $(PY) -m service --host $(HOST) --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy training service bnfold

# kserve's client pins an older protobuf and pulls ~450 MB: it gets a venv of its own,
# which the Open Inference Protocol client tests (tests/service/test_clients.py) call.
KSERVE_VENV := .venv-kserve
$(KSERVE_VENV)/.installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(KSERVE_VENV)/bin/python -m pip install -q 'kserve>=0.14'
	touch $@

# The browser tests (tests/browser) drive Debian's chromium: installed here when missing (as
# root; elsewhere they are skipped, and fail under CI). Playwright never downloads a browser.
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null; \
	else echo "warning: $(CHROMIUM) missing: 'apt-get install chromium' for tests/browser" >&2; fi

pytest: setup chromium $(KSERVE_VENV)/.installed
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
bench: setup $(ARTIFACTS)/model.onnx
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_fold
	$(PY) -m benchmarks.bench_export --run $(ARTIFACTS)
	$(PY) benchmarks/serve_load.py --model $(ARTIFACTS)/model.onnx --checkpoint $(ARTIFACTS)/checkpoint.pt
	$(PY) -m benchmarks.bench_drift --load
	$(PY) -m benchmarks.bench_adabn
	$(PY) -m benchmarks.bench_swap --baseline

clean:
	rm -rf $(VENV) $(KSERVE_VENV) artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
