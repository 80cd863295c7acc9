# The two commands of the README's Quick start. Each creates and fills .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# LibAUC (the pin of pyproject's `libauc` extra), only as the reference tests/test_stages.py checks the harness's
# AUC-M against (marker `reference`), installed without its dependencies: libauc.losses needs only torch, numpy,
# scikit-learn and tqdm, installed with `test`; the ones it declares (transformers, torch-geometric, ogb, OpenCV,
# medmnist, webdataset) serve parts of LibAUC the test never imports.
LIBAUC := $(shell sed -n 's/^ *"\(libauc==[^"]*\)",*$$/\1/p' pyproject.toml)

.PHONY: demo test test-fast test-slow perf clean-runs image image-name

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@test -n "$(LIBAUC)" || { echo "error: pyproject.toml's libauc extra has no \"libauc==VERSION\" pin" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --no-deps '$(LIBAUC)'
	@touch $(STAMP)

## make demo: the demo grid on the built-in synthetic dataset -> runs/demo/leaderboard.html
demo: $(STAMP)
	$(BIN)/bench run --grid grids/demo.yaml --out runs/demo

## make test: the whole test suite (CI runs exactly this through .ci/run)
test: $(STAMP)
	$(BIN)/python -m pytest

## make test-fast: the suite without its end-to-end tiers (markers `slow` and `cluster`): the loop while editing,
## 132 s on 2 cores here (README, "Development"); `make test` (what CI runs) before a commit
FAST_TESTS := not slow and not cluster
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m '$(FAST_TESTS)'

## make test-slow: only the end-to-end tiers, the rest of `make test`; with `make test-fast` on another machine, the
## whole suite as two CI jobs
SLOW_TESTS := slow or cluster
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m '$(SLOW_TESTS)'

## make perf: every measurement of BENCHMARKS.md, regenerated
perf: $(STAMP)
	$(BIN)/bench perf --out BENCHMARKS.md

clean-runs:
	rm -rf runs

## make image: the cluster image (docker/Dockerfile) every Ray node runs; IMAGE=REGISTRY/NAME:TAG to name it
# The tag starts with the Ray version of docker/Dockerfile: `bench cluster validate` reads it back from the tag.
RAY_VERSION := $(shell sed -n 's/^ARG RAY_VERSION=//p' docker/Dockerfile)
TORCH_CUDA  := $(shell sed -n 's/^ARG TORCH_CUDA=//p' docker/Dockerfile)
IMAGE       ?= cxr-imbalance-bench:$(RAY_VERSION)-$(TORCH_CUDA)

image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

image-name:
	@echo $(IMAGE)
