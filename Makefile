# llama-sft-dagster commands. Each target sets up what it needs on a fresh machine.
#   make demo   - run the whole pipeline offline on the demo profile (raw data -> merged model), quietly,
#                 with a summary at the end (CONFIG=recipes/small_rank.yaml runs a recipe)
#   make test   - run the test suite (installs the venv and the browser the UI test drives)
#   make test-fast - the unit and graph tiers without the tests marked slow (daily work; CI runs make test)
#   make ui     - start the Dagster web UI on 127.0.0.1:3000
#   make mlflow - the MLflow UI on the project's tracking store, 127.0.0.1:5000
#   make tensorboard - TensorBoard on the training runs' folders, 127.0.0.1:6006
#   make stale  - materialize only missing/stale assets, printing why (SELECT='*train_adapter' to narrow)
#   make sweep  - LoRA rank sweep, one run per rank (RANKS="8 16 32 64 128"), then its report
#   make deploy-local / deploy-stop - the team deployment on 127.0.0.1: PostgreSQL, the code location's gRPC
#                 server, dagster-webserver, dagster-daemon (queued runs, the gpu pool), an MLflow server
#   make chat   - chat in the terminal with the champion (MODEL=3: registered version 3; MODEL=<folder>: a
#                 merged model or an adapter), streaming, with the trained system prompt and chat template
#   make gpu-check - Llama-3.1-8B-shaped LoRA steps on the GPU: tokens/s, MFU, memory, masking (one line without CUDA)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE ?= $(CURDIR)/.sft_state
export DAGSTER_HOME ?= $(STATE)/dagster_home
export SFT_STATE_DIR ?= $(STATE)
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
MLFLOW_PORT ?= 5000
TENSORBOARD_PORT ?= 6006
# pytest-xdist workers for `make test` / `make test-fast`, a test file each at a time (--dist loadfile), the
# slowest files first (tests/conftest.py SLOW_FILES_FIRST; --no-loadscope-reorder keeps that order): much of
# the suite waits on servers and subprocesses. The session's demo and rehearsal runs are built once for all
# workers (tests/support/session_build.py). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
UV := $(BIN)/uv
# uv reads UV_* settings, not pip's: a find-links folder the machine gives pip (e.g. a local CPU torch
# wheel) is handed on to uv
ifneq ($(PIP_FIND_LINKS),)
export UV_FIND_LINKS ?= $(PIP_FIND_LINKS)
endif
# The torch build: `cuda` where `nvidia-smi -L` lists a GPU, else `cpu` (the pinned version's CPU build, as the
# machine's index or find-links folder offers it); TORCH_BUILD=cpu|cuda overrides the probe. The CUDA build comes
# from TORCH_INDEX_URL when set (your mirror, or file:// of a local simple index), else from uv's PyTorch backend,
# which picks the build matching the installed driver (--torch-backend auto). A GPU install adds the `gpu` extra:
# prebuilt kernels only (Liger, the `kernels` package), nothing compiled.
TORCH_VERSION := 2.13.0
TORCH_BUILD ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo cuda || echo cpu)
TORCH_SOURCE = $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),--torch-backend auto)
EXTRAS = test,k8s$(if $(filter cuda,$(TORCH_BUILD)),$(comma)gpu)
comma := ,

.PHONY: lock install torch demo chat test test-fast ui mlflow tensorboard browser postgres deploy-local deploy-stop stale sweep bench gpu-check clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	# uv installs in parallel (measured on 2 cores: see README "Quick start"); it is bootstrapped into the venv
	$(BIN)/python -m pip install -q uv

# the torch build alone (see TORCH_BUILD above); `make torch TORCH_BUILD=cuda` switches an existing venv
torch: $(UV)
ifeq ($(TORCH_BUILD),cuda)
	# no find-links here: a CPU wheel offered there would satisfy torch==$(TORCH_VERSION) too
	env -u UV_FIND_LINKS $(UV) pip install -q --python $(BIN)/python --reinstall-package torch $(TORCH_SOURCE) torch==$(TORCH_VERSION)
else
	$(UV) pip install -q --python $(BIN)/python --reinstall-package torch torch==$(TORCH_VERSION)
endif
	@$(BIN)/python -c "import torch; print('torch', torch.__version__, '($(TORCH_BUILD) build)')"

$(BIN)/.installed: pyproject.toml deploy/requirements.lock | $(UV)
	$(MAKE) --no-print-directory torch
	# torch==2.13.0 is pinned in pyproject: the build installed above satisfies it and stays. Constrained by
	# deploy/requirements.lock, the locked set deploy/Dockerfile installs (one Dagster family: dagster 1.13.27 +
	# dagster-k8s/dagster-postgres 0.29.27 with their own pins); refresh it with `make lock`
	$(UV) pip install -q --python $(BIN)/python -e '.[$(EXTRAS)]' -c deploy/requirements.lock
	# `source .venv/bin/activate` then gives the project's instance and lets
	# `dagster asset materialize --select ...` find the code location when typed in the repo root
	# (dagster 1.13's `asset materialize` reads -m from this variable, not from pyproject).
	# (a reinstall replaces the block rather than adding a second one after it)
	sed -i '/^# llama-sft-dagster$$/,+2d' $(BIN)/activate
	printf '\n# llama-sft-dagster\nexport DAGSTER_HOME="$${DAGSTER_HOME:-$(DAGSTER_HOME)}"\nexport DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME=llama_sft_dagster.definitions\n' >> $(BIN)/activate
	touch $@

# the locked set (deploy/requirements.lock) from pyproject.toml, for linux/x86_64 and Python 3.11
lock: $(BIN)/.installed
	$(UV) pip compile pyproject.toml --extra k8s --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-header -q -o deploy/requirements.lock

install: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install
	$(BIN)/python -m llama_sft_dagster.cli.demo $(if $(CONFIG),-c $(CONFIG))

chat: install
	$(BIN)/python -m llama_sft_dagster.cli.chat --model '$(or $(MODEL),champion)' $(CHAT_ARGS)

# Debian's chromium for the browser test (Playwright drives /usr/bin/chromium; no browser download)
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Debian's PostgreSQL server for make deploy-local and the deployment tests (tests/e2e/test_deployment.py);
# the project starts its own server in .sft_state/deploy/postgres, never the package's cluster
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

test: install browser postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20 $(PYTEST_ARGS)

# daily work: pure logic and dg.materialize tiers, leaving out what trains a model or starts servers
# (`slow`); no browser needed. `make test` (and CI) still runs everything.
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests/unit tests/graph $(PYTEST_ARGS)

ui: install
	$(BIN)/python -m llama_sft_dagster.cli.ui --host $(UI_HOST) --port $(UI_PORT)

mlflow: install
	# one worker: a single-user local UI (the default 4 take minutes to start on a small machine)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(STATE)/mlflow.db --host $(UI_HOST) --port $(MLFLOW_PORT) --workers 1

tensorboard: install
	mkdir -p $(STATE)/artifacts/train_adapter/tensorboard
	$(BIN)/tensorboard --logdir $(STATE)/artifacts/train_adapter/tensorboard --host $(UI_HOST) --port $(TENSORBOARD_PORT)

# ports: DEPLOY_PG_PORT, DEPLOY_GRPC_PORT, DEPLOY_UI_PORT, DEPLOY_MLFLOW_PORT (default: free ones, printed)
deploy-local: install postgres
	$(BIN)/python -m llama_sft_dagster.cli.deploy start

deploy-stop:
	$(BIN)/python -m llama_sft_dagster.cli.deploy stop

stale: install
	$(BIN)/sft-materialize-stale $(if $(SELECT),--select '$(SELECT)') $(STALE_ARGS)

RANKS ?= 8 16 32 64 128
SWEEP_LOG = $(STATE)/logs/sweep-r$$r.log
# quiet as `make demo`: each rank's run (Dagster's events, the training ranks' output) goes to its log file
# under $(STATE)/logs, one line per rank here, the last lines of the log if it fails; then the sweep table
# and where to look. The events also stay in the instance: the UI shows each run in full.
# $(call sweep_step,ARGS): one quiet `dagster asset materialize ARGS` into $(SWEEP_LOG); on failure, its log's tail
sweep_step = $(BIN)/dagster asset materialize -m llama_sft_dagster.definitions $(1) > $(SWEEP_LOG) 2>&1 \
	|| { echo "FAILED (log: $(SWEEP_LOG))"; tail -n 15 $(SWEEP_LOG); exit 1; }

sweep: install
	@mkdir -p $(STATE)/logs; for r in $(RANKS); do \
	  printf 'rank %-4s training and scoring an adapter ... ' $$r; start=$$(date +%s); \
	  $(call sweep_step,--select lora_rank_sweep --partition $$r); echo "done in $$(( $$(date +%s) - start )) s"; \
	done
	@r=report; printf 'rank_sweep_report ... '; $(call sweep_step,--select rank_sweep_report); echo done
	@echo; cat $(STATE)/artifacts/rank_sweep_report/report.md
	@echo "Where to look:"
	@echo "  the table and plot (make ui):   http://$(UI_HOST):$(UI_PORT)/assets/rank_sweep_report"
	@echo "  one MLflow run per rank:        make mlflow, then http://$(UI_HOST):$(MLFLOW_PORT) (experiment llama-sft)"
	@echo "  the curves side by side:        make tensorboard, then http://$(UI_HOST):$(TENSORBOARD_PORT)"
	@echo "  the table as a file:            $(STATE)/artifacts/rank_sweep_report/report.md"
	@echo "  each rank's log:                $(STATE)/logs/sweep-r<rank>.log"

# seed-faithful baseline vs the project (bare stages and dg.materialize, both dedup backends) on a generated
# 95K-pair corpus, the real Llama 3 tokenizer from ../shared/data; ~10 min on 2 idle cores (REPEATS=3: 3 rounds)
bench: install
	$(BIN)/python benchmarks/data_graph.py --pairs $(or $(PAIRS),95000) --dagster --floors --repeats $(or $(REPEATS),1)

# needs a CUDA GPU with ~40 GB (8B in bf16 + LoRA r64); without CUDA it says so and exits 0
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(STATE)
