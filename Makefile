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
# `make evaluate BEST` evaluates the alias `best` of the registered model: postag-tagger, or
# the name EXPERIMENT's file gives (sweep.registered_model) or $POSTAG_REGISTERED_MODEL;
# MODEL=models:/postag-tagger/3 names any version. evaluate, serve and reproduce take both.
MODEL ?=
MODEL_ARGS = $(if $(MODEL),--model $(MODEL)) $(if $(EXPERIMENT),--experiment $(EXPERIMENT))
DATA ?=
# Servers bind to this machine only unless told otherwise (SERVER_HOST=0.0.0.0 exposes them).
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5001
RAY_PORT ?= 6379
HEAD ?=
# Where Ray Tune keeps checkpoints; on a cluster a location every node reaches (s3://...).
STORAGE ?=
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns/mlflow.db
# No target sends usage statistics or telemetry anywhere (Ray's, MLflow's); to send them,
# `make sweep RAY_USAGE_STATS_ENABLED=1 MLFLOW_DISABLE_TELEMETRY=false`.
export RAY_USAGE_STATS_ENABLED ?= 0
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: install test test-slow test-gpu lint format train bench bench-profile bench-serve bench-scale bench-tracking offline-bundle offline-install gpu-study sweep ui ui-screenshot evaluate reproduce BEST serve mlflow-server ray-head ray-worker clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# In a random order (pytest-randomly; the seed is printed), ending with the 25 slowest tests.
# Test files run side by side in TEST_WORKERS processes (pytest-xdist), each file whole in
# one of them so that its module fixtures start once, the long ones first (tests/conftest.py);
# TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not gpu" -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder --durations=25

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow or gpu"

# The GPU path on a machine with CUDA (skipped, saying so, without): bf16 autocast, trials
# packed on a GPU, the 40 x 256 stack for an epoch of EWT, then make bench's GPU figures.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu -rs
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; \
	then $(MAKE) bench; else echo "test-gpu: torch sees no CUDA device; make bench's GPU figures skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: $(STAMP)
	$(BIN)/postag train --config $(CONFIG)

bench: $(STAMP)
	$(BIN)/python -m pipelines.bench.training.race
	$(BIN)/python -m pipelines.bench.training.chars
	$(BIN)/python -m pipelines.bench.sweeps.timing
	$(BIN)/python -m pipelines.bench.training.memory
	$(BIN)/python -m pipelines.bench.training.text

# For a GPU node without network (docs/gpu.md): postag's packages and EWT bundled here into
# .offline-bundle/parts/ (ignored; OFFLINE_ARGS="--part-mib N" splits it, "--python-version
# 3.11" picks the node's Python), then, on the node, installed into .venv over its own torch.
OFFLINE_ARGS ?=
offline-bundle: $(STAMP)
	$(BIN)/python -m pipelines.bench.gpu.bundle bundle $(OFFLINE_ARGS)

offline-install:
	$(PYTHON) -m pipelines.bench.gpu.bundle install

# The GPU study (docs/gpu.md): the gpu tests, seed.yaml's sweep, make evaluate BEST, packed
# against one at a time, and where the GPU's time went, all in runs/gpu-study/.
GPU_STUDY_ARGS ?=
BUNDLED_EWT := $(wildcard $(CURDIR)/.offline-bundle/parts/part1/ewt)
# On an offline node (once make offline-install ran), .venv is offline-install's: a copy of
# the project newer than it must not start make's install step, which reaches for the network.
gpu-study: $(if $(BUNDLED_EWT),,$(STAMP))
	$(if $(BUNDLED_EWT),POSTAG_EWT_DIR=$(BUNDLED_EWT)) $(BIN)/python -m pipelines.bench.gpu.study \
		$(GPU_STUDY_ARGS)

# Where one epoch of the seed configuration's training goes, by part of the step
# (torch.profiler): the LSTM, the feed-forward layers, the loss, the optimizer, batching.
bench-profile: $(STAMP)
	$(BIN)/python -m pipelines.bench.training.profile

# `make serve` under load: 1 and 32 sentences a request, 1, 4 and 16 clients, 1 and 2 workers;
# BENCH_SERVE_ARGS="--members 1 3" measures one tagger, then an ensemble of 3 against it.
BENCH_SERVE_ARGS ?=
bench-serve: $(STAMP)
	$(BIN)/python -m pipelines.bench.serving.load $(BENCH_SERVE_ARGS)

# Eight small trials on one node with 1 CPU, two nodes with 1 CPU each, one node with 2 CPUs.
bench-scale: $(STAMP)
	$(BIN)/python -m pipelines.bench.sweeps.scale

# 100 and 1,000 simulated trials x 20 epochs (training a no-op) through the sweep's driver into
# `mlflow server` on PostgreSQL: epochs logged a second, the driver's memory, nothing lost.
bench-tracking: $(STAMP)
	$(BIN)/python -m pipelines.bench.sweeps.tracking

sweep: $(STAMP)
	$(BIN)/python -m pipelines.sweep $(if $(EXPERIMENT),--config $(EXPERIMENT)) \
		$(if $(STORAGE),--storage $(STORAGE)) $(SWEEP_ARGS)

# RAW=1: from the test file's raw text (its `# text =` lines), scored as CoNLL 2018 did.
RAW ?=
# TIMING=1: also the tagging time per sentence on one thread, as a Pareto search measures it.
TIMING ?=
evaluate: $(STAMP)
	$(BIN)/postag evaluate $(MODEL_ARGS) $(if $(DATA),--data $(DATA)) $(if $(RAW),--raw) \
		$(if $(TIMING),--timing)

# The run RUN names (a run id, or a models:/ URI: the best version's run by default) trained
# again from its MLflow record, every epoch compared with what it logged.
RUN ?= $(MODEL)
reproduce: $(STAMP)
	$(BIN)/postag reproduce $(RUN) $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

# MODEL over HTTP on this machine (POST /invocations), with this venv: no conda, no download.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 5002
# Server processes, each with the model loaded; make bench-serve measures 1 against 2.
SERVE_WORKERS ?= 1
serve: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(BIN)/postag serve \
		--host $(SERVE_HOST) --port $(SERVE_PORT) $(MODEL_ARGS) --workers $(SERVE_WORKERS)

# A word, not a task: it lets `make evaluate BEST` read as it should.
BEST:
	@:

# The README's picture of the MLflow UI, refreshed by the UI test on a CI-sized sweep.
ui-screenshot: $(STAMP)
	POSTAG_UI_SCREENSHOT=$(CURDIR)/reports/mlflow-compare-runs.png $(BIN)/python -m pytest \
		-p no:randomly tests/e2e/test_mlflow_ui.py -k compare

ui: $(STAMP)
	mkdir -p mlruns
	$(BIN)/postag ui --host $(UI_HOST) --port $(UI_PORT) --backend-store-uri $(MLFLOW_TRACKING_URI) \
		--default-artifact-root $(CURDIR)/mlruns/artifacts $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

# A tracking server for several machines, artifacts proxied by the server. BACKEND_STORE and
# ARTIFACTS_DESTINATION move them to PostgreSQL and an object store (README, Scaling out);
# AUTH=1 requires logins (the admin's password from MLFLOW_AUTH_ADMIN_PASSWORD).
BACKEND_STORE ?= sqlite:///$(CURDIR)/mlruns/server/mlflow.db
ARTIFACTS_DESTINATION ?= $(CURDIR)/mlruns/server/artifacts
AUTH ?=
mlflow-server: $(STAMP)
	mkdir -p mlruns/server
	$(BIN)/postag mlflow-server --host $(SERVER_HOST) --port $(SERVER_PORT) \
		--backend-store $(BACKEND_STORE) --artifacts-destination $(ARTIFACTS_DESTINATION) \
		$(if $(AUTH),--auth --auth-folder mlruns/server)

# Nodes that ask each other for Ray's auth token (the file RAY_AUTH_TOKEN_PATH, default
# ~/.ray/auth_token): the head makes it once; copy it to each worker and driver machine.
ray-head: $(STAMP)
	$(BIN)/postag ray-node head --host $(SERVER_HOST) --port $(RAY_PORT)

ray-worker: $(STAMP)
	$(BIN)/postag ray-node worker --host $(SERVER_HOST) --address "$(HEAD)"

clean:
	rm -rf $(VENV) .cache runs .pytest_cache .ruff_cache *.egg-info
