# llama-sft-dagster commands. Each target sets up what it needs on a fresh machine.
#   make demo   - run the whole pipeline offline on the demo profile (raw data -> merged model), quietly,
#                 with a summary at the end (CONFIG=recipes/small_rank.yaml runs a recipe)
#   make test   - run the test suite (installs the venv and the browser the UI test drives)
#   make ui     - start the Dagster web UI on 127.0.0.1:3000
#   make mlflow - the MLflow UI on the project's tracking store, 127.0.0.1:5000
#   make tensorboard - TensorBoard on the training runs' folders, 127.0.0.1:6006
#   make stale  - materialize only missing/stale assets, printing why (SELECT='*train_adapter' to narrow)
#   make sweep  - LoRA rank sweep, one run per rank (RANKS="8 16 32 64 128"), then its report
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

.PHONY: install torch demo test ui mlflow tensorboard browser stale sweep bench gpu-check clean

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

$(BIN)/.installed: pyproject.toml | $(UV)
	$(MAKE) --no-print-directory torch
	# torch==2.13.0 is pinned in pyproject: the build installed above satisfies it and stays
	$(UV) pip install -q --python $(BIN)/python -e '.[$(EXTRAS)]'
	# deploy/ validation (tests/unit/test_deploy.py): the dagster-k8s/postgres matching dagster 1.13.28
	# is not published, so 0.29.27 goes in without its dagster pin, as in deploy/Dockerfile
	$(UV) pip install -q --python $(BIN)/python --no-deps dagster-k8s==0.29.27 dagster-postgres==0.29.27
	# `source .venv/bin/activate` then gives the project's instance and lets
	# `dagster asset materialize --select ...` find the code location when typed in the repo root
	# (dagster 1.13's `asset materialize` reads -m from this variable, not from pyproject).
	printf '\n# llama-sft-dagster\nexport DAGSTER_HOME="$${DAGSTER_HOME:-$(DAGSTER_HOME)}"\nexport DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME=llama_sft_dagster.definitions\n' >> $(BIN)/activate
	touch $@

install: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install
	$(BIN)/python -m llama_sft_dagster.cli.demo $(if $(CONFIG),-c $(CONFIG))

# Debian's chromium for the browser test (Playwright drives /usr/bin/chromium; no browser download)
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

ui: install
	$(BIN)/python -m llama_sft_dagster.cli.ui --host $(UI_HOST) --port $(UI_PORT)

mlflow: install
	# one worker: a single-user local UI (the default 4 take minutes to start on a small machine)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(STATE)/mlflow.db --host $(UI_HOST) --port $(MLFLOW_PORT) --workers 1

tensorboard: install
	mkdir -p $(STATE)/artifacts/train_adapter/tensorboard
	$(BIN)/tensorboard --logdir $(STATE)/artifacts/train_adapter/tensorboard --host $(UI_HOST) --port $(TENSORBOARD_PORT)

stale: install
	$(BIN)/sft-materialize-stale $(if $(SELECT),--select '$(SELECT)') $(STALE_ARGS)

RANKS ?= 8 16 32 64 128
sweep: install
	for r in $(RANKS); do \
	  $(BIN)/dagster asset materialize -m llama_sft_dagster.definitions --select lora_rank_sweep --partition $$r || exit 1; \
	done
	$(BIN)/dagster asset materialize -m llama_sft_dagster.definitions --select rank_sweep_report

# seed-faithful baseline vs the project (bare stages and dg.materialize, both dedup backends) on a generated
# 95K-pair corpus, the real Llama 3 tokenizer from ../shared/data; ~10 min on 2 idle cores (REPEATS=3: 3 rounds)
bench: install
	$(BIN)/python benchmarks/data_graph.py --pairs $(or $(PAIRS),95000) --dagster --floors --repeats $(or $(REPEATS),1)

# needs a CUDA GPU with ~40 GB (8B in bf16 + LoRA r64); without CUDA it says so and exits 0
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(STATE)
