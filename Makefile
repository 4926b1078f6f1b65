# Every target installs what it needs into .venv on first use; logic lives in Python entry points.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= experiments/seed.yaml
# Empty: the sweep picks seed.yaml with a CUDA GPU, cpu.yaml without, and says why.
EXPERIMENT ?=
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
# `make evaluate BEST` evaluates the alias `best`; MODEL=models:/postag-tagger/3 any version.
MODEL ?= models:/postag-tagger@best
DATA ?=
# Servers bind to this machine only unless told otherwise (SERVER_HOST=0.0.0.0 exposes them).
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5001
RAY_PORT ?= 6379
HEAD ?=
# Where Ray Tune keeps checkpoints; on a cluster a location every node reaches (s3://...).
STORAGE ?=
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns/mlflow.db

.PHONY: install test test-slow lint format train bench sweep ui evaluate BEST serve mlflow-server ray-head ray-worker clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not gpu"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow or gpu"

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: $(STAMP)
	$(BIN)/postag train --config $(CONFIG)

bench: $(STAMP)
	$(BIN)/python -m pipelines.bench
	$(BIN)/python -m pipelines.bench_chars
	$(BIN)/python -m pipelines.bench_sweep

sweep: $(STAMP)
	$(BIN)/python -m pipelines.sweep $(if $(EXPERIMENT),--config $(EXPERIMENT)) \
		$(if $(STORAGE),--storage $(STORAGE)) $(SWEEP_ARGS)

evaluate: $(STAMP)
	$(BIN)/postag evaluate --model $(MODEL) $(if $(DATA),--data $(DATA))

# MODEL over HTTP on this machine (POST /invocations), with this venv: no conda, no download.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 5002
serve: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(BIN)/postag serve \
		--host $(SERVE_HOST) --port $(SERVE_PORT) --model $(MODEL)

# A word, not a task: it lets `make evaluate BEST` read as it should.
BEST:
	@:

ui: $(STAMP)
	mkdir -p mlruns
	$(BIN)/mlflow ui --host $(UI_HOST) --port $(UI_PORT) --backend-store-uri $(MLFLOW_TRACKING_URI) \
		--default-artifact-root $(CURDIR)/mlruns/artifacts

# A tracking server for several machines, artifacts proxied by the server. BACKEND_STORE and
# ARTIFACTS_DESTINATION move them to PostgreSQL and an object store (README, Scaling out).
BACKEND_STORE ?= sqlite:///$(CURDIR)/mlruns/server/mlflow.db
ARTIFACTS_DESTINATION ?= $(CURDIR)/mlruns/server/artifacts
mlflow-server: $(STAMP)
	mkdir -p mlruns/server
	$(BIN)/mlflow server --host $(SERVER_HOST) --port $(SERVER_PORT) \
		--backend-store-uri $(BACKEND_STORE) \
		--artifacts-destination $(ARTIFACTS_DESTINATION) --serve-artifacts

ray-head: $(STAMP)
	$(BIN)/ray start --head --node-ip-address $(SERVER_HOST) --port $(RAY_PORT) --include-dashboard=false

ray-worker: $(STAMP)
	test -n "$(HEAD)" || (echo "usage: make ray-worker HEAD=host:port" && false)
	$(BIN)/ray start --address $(HEAD) --node-ip-address $(SERVER_HOST)

clean:
	rm -rf $(VENV) .cache runs .pytest_cache .ruff_cache *.egg-info
