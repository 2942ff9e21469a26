# mnv3: `make setup` once, then `make all` (data, train, reports) or `make test`. `make help` lists
# the targets.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# On our machines these install from the local disk; the pyproject ranges also admit torch 2.11.
# TORCH=cpu: PyTorch's CPU-only build from download.pytorch.org (must be reachable), for machines
# without a GPU: about 0.7 GB installed instead of the 6.4 GB .venv that PyPI's CUDA build makes on
# Linux. The "+cpu" pins keep pip from falling back to the CUDA build when that index is out of reach.
TORCH ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN ?= $(if $(filter cpu,$(TORCH)),torch==2.14.1+cpu torchvision==0.29.1+cpu,torch==2.14.1 torchvision==0.29.1)
TORCH_INDEX_ARGS = $(if $(filter cpu,$(TORCH)),--index-url $(TORCH_CPU_INDEX))

.PHONY: help setup test
help: ## list the targets, one line each (PROFILE=quick|full and the other variables: see the Makefile's comments)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed ## create .venv and install the package with its dev extras (TORCH=cpu: CPU-only torch)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX_ARGS) $(TORCH_PIN) || { echo "make setup: could not install $(TORCH_PIN)$(if $(TORCH_INDEX_ARGS), from $(TORCH_CPU_INDEX) (offline? then run make setup without TORCH=cpu))"; exit 1; }
	$(PY) -m pip install -q -e ".[dev]" $(TORCH_PIN)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test: setup ## run the test suite
	$(PY) -m pytest -q

# ------------------------------------------------------------------ data, training and reports
# PROFILE=quick (the default): minutes on a 2-core CPU; runs in runs/quick/, reports in
# reports/quick/ (both git-ignored). PROFILE=full is for a GPU: `make train` writes runs/full/,
# while `make reports` reads the committed copies in reports/full/runs/ and writes reports/full/.
# Offline machines: MNV3_DATA_MIRROR=DIR (environment or command line) is passed to every step.
PROFILE ?= quick
# Our offline machines keep a dataset mirror beside the checkout; elsewhere torchvision downloads.
MNV3_DATA_MIRROR ?= $(wildcard ../shared/datasets)
# The same list as mnv3.experiments.EXPERIMENTS (a test keeps them equal).
EXPERIMENTS := mnist_small cifar10_small_s2 cifar10_small_s1 cifar10_large_s1
DATASETS := mnist cifar10
DATA_ROOT ?= data
TRAIN_OUT ?= runs
RUNS_DIR ?= $(if $(filter full,$(PROFILE)),reports/full/runs,$(TRAIN_OUT)/$(PROFILE))
REPORTS_DIR ?= reports/$(PROFILE)
TRAIN_ARGS ?=
# The quick profile pins 2 CPU threads: CPU kernels split their sums by thread, so another count
# (torch's default is one per core) gives other weights. See the README's "Reproducibility".
THREADS_ARG ?= $(if $(filter quick,$(PROFILE)),--threads 2)
REPORT_ARGS ?=
MIRROR_ARG = $(if $(MNV3_DATA_MIRROR),--data-mirror $(MNV3_DATA_MIRROR))

.PHONY: data train reports all

# Decode each dataset split once into $(DATA_ROOT)/cache/<name>-<split>.pt.
data: ## decode MNIST and CIFAR-10 once into data/cache/ (from MNV3_DATA_MIRROR when set)
data: $(foreach d,$(DATASETS),$(DATA_ROOT)/cache/$(d)-train.pt $(DATA_ROOT)/cache/$(d)-test.pt)

$(DATA_ROOT)/cache/%.pt: | setup
	$(PY) -m mnv3.data --root $(DATA_ROOT) $(MIRROR_ARG) $*

# Every experiment of PROFILE. A run whose test.json exists is not retrained (delete its folder to
# retrain it); an interrupted one (last.pt, no test.json) is resumed. Several GPUs:
# TRAIN_CMD="torchrun --nproc_per_node 4 -m mnv3.train".
TRAIN_CMD ?= $(PY) -m mnv3.train
train: ## train every experiment of PROFILE into runs/<profile>/ (finished runs are skipped)
train: $(foreach e,$(EXPERIMENTS),$(TRAIN_OUT)/$(PROFILE)/$(e)/test.json)

$(TRAIN_OUT)/$(PROFILE)/%/test.json: | data
	$(TRAIN_CMD) --experiment $* --profile $(PROFILE) --out $(TRAIN_OUT) --data-root $(DATA_ROOT) $(MIRROR_ARG) $(THREADS_ARG) $(TRAIN_ARGS) $(if $(wildcard $(TRAIN_OUT)/$(PROFILE)/$*/last.pt),--resume)

# Execute the notebooks into $(REPORTS_DIR)/notebooks/, convert them to $(REPORTS_DIR)/*.html and
# write $(REPORTS_DIR)/index.html. A failing cell fails make, naming the notebook and the cell.
reports: | setup ## execute the notebooks and render reports/<profile>/index.html
	$(PY) -m mnv3.reports run --profile $(PROFILE) --runs-dir $(RUNS_DIR) --out $(REPORTS_DIR) --data-root $(DATA_ROOT) $(MIRROR_ARG) $(REPORT_ARGS)

# In order, also under -j.
# Export is not part of `all`: exporting and checking the four quick runs took 7.7 minutes on the
# idle 2-core CPU, more than `all` itself (6.5). `make export reports` adds the 06 pages' numbers.
all: ## data, train and reports, in order
	$(MAKE) data
	$(MAKE) train
	$(MAKE) reports

# (export, android-assets and bench targets go below.)

# Export every finished run of PROFILE (a run folder with test.json) to RUN/export/: model.pte
# (ExecuTorch fp32, the app's file), model_int8.pte, model.ptl (legacy), model.onnx, model.json and
# parity.json / parity.md, which notebooks/06_export.ipynb shows. A run is re-exported when its
# test.json is newer than its parity.json. PROFILE=full exports the committed reports/full/runs/
# (only parity.json, parity.md and model.json of those are committed; see .gitignore).
# The quick profile compares fewer images: see EXPORT_ARGS below. Latency is timed by `make bench`,
# not here (add --latency-runs N to EXPORT_ARGS to time it during export).
EXPORT_ARGS ?= $(if $(filter quick,$(PROFILE)),--parity-samples 128)
EXPORTS = $(strip $(foreach e,$(EXPERIMENTS),$(if $(wildcard $(RUNS_DIR)/$(e)/test.json),$(RUNS_DIR)/$(e)/export/parity.json)))
ANDROID_RUNS := $(RUNS_DIR)/mnist_small $(RUNS_DIR)/cifar10_small_s1

.PHONY: export android-assets

export: $(EXPORTS) ## export every finished run of PROFILE (ExecuTorch fp32/int8, .ptl, ONNX) with parity reports
	$(if $(EXPORTS),,@echo "make export: no finished run in $(RUNS_DIR); train them first: make train PROFILE=$(PROFILE)")

$(RUNS_DIR)/%/export/parity.json: $(RUNS_DIR)/%/test.json | setup
	$(PY) -m mnv3.export $(RUNS_DIR)/$* --data-root $(DATA_ROOT) $(MIRROR_ARG) $(EXPORT_ARGS)

# The Android app's assets (android-demo/app/src/main/assets/{mnist,cifar10}/, git-ignored): the
# fp32 model.pte of mnist_small and cifar10_small_s1, model.json, test images and golden.json.
# It needs only the finished runs and the test sets, never `make export`: the .pte is copied from
# RUN/export/ when an export of the same checkpoint is there, else only the fp32 .pte is exported
# (no int8, ONNX or parity). CUSTOM_RUN=RUN_DIR adds a third model, any run (your own images:
# --dataset folder:PATH), in assets/custom/, which the app shows as a third button.
CUSTOM_RUN ?=
android-assets: ## the app's assets: fp32 .pte (an export's, else exported alone), model.json, test images, golden predictions (CUSTOM_RUN=RUN: a third model)
android-assets: $(foreach r,$(ANDROID_RUNS),$(r)/test.json) | $(DATA_ROOT)/cache/mnist-test.pt $(DATA_ROOT)/cache/cifar10-test.pt
	$(PY) -m mnv3.export android-assets --mnist $(RUNS_DIR)/mnist_small --cifar $(RUNS_DIR)/cifar10_small_s1$(if $(CUSTOM_RUN), --custom $(CUSTOM_RUN)) --data-root $(DATA_ROOT) $(MIRROR_ARG)

# Benchmarks (python -m mnv3.bench --help): CPU latency against torchvision and the mobile runtimes,
# training throughput and the width frontier -> reports/bench/*.json (07_benchmarks in make reports).
# The first run exports every program it times (several minutes on the 2-core CPU; cached in ~/.cache/mnv3/bench);
# with the cache filled, the committed reports/bench run took 150 s (the JSON files' "seconds").
BENCH_ARGS ?=
.PHONY: bench
bench: | setup ## benchmarks: CPU latency, training throughput, width frontier -> reports/bench/*.json
	$(PY) -m mnv3.bench --out reports/bench --runs-dir $(RUNS_DIR) $(BENCH_ARGS)

# The search (python -m mnv3.search --help): NetAdapt (the paper's section 4.2) over cifar10_small_s1's
# spec, with latency measured on ExecuTorch (fp32, XNNPACK, batch 1, one thread) on this CPU. Four steps,
# each skipped once its file exists: the seed run, the latency model (fitted and validated), the
# search, and the comparison (the searched spec and the two bracketing width multipliers trained from
# scratch, SEARCH_SEEDS seeds each); then the results are copied into reports/search/ (notebook 08).
# PROFILE=quick (the default, a 2-core CPU): the seed is the full profile's recipe cut to SEED_EPOCHS
# epochs, each comparison run COMPARE_EPOCHS; one thread, the fastest on a machine others share (our
# 2-core machine under load trained several times slower with 2). PROFILE=full (a GPU): the seed and the
# comparison runs train the full profile on the GPU; the latency is measured on the CPU all the same.
SEARCH_DIR ?= runs/search
SEED_EPOCHS ?= 15
COMPARE_EPOCHS ?= 5
SEARCH_SEEDS ?= 0,1
SEARCH_THREADS ?= 1
# Comparison runs trained at once, each with SEARCH_THREADS threads (2 x 1 thread keeps both cores busy).
SEARCH_JOBS ?= $(if $(filter full,$(PROFILE)),1,2)
SEARCH_ARGS ?= --target 75%
SEED_NAME := $(if $(filter full,$(PROFILE)),cifar10_small_s1,cifar10_small_s1-cpu$(SEED_EPOCHS))
SEED_RUN := $(SEARCH_DIR)/full/$(SEED_NAME)
SEED_ARGS := $(if $(filter full,$(PROFILE)),,--epochs $(SEED_EPOCHS) --compile false --channels-last true --threads $(SEARCH_THREADS))
NETADAPT := $(SEARCH_DIR)/netadapt-$(PROFILE)
.PHONY: search
search: $(NETADAPT)/comparison.json ## NetAdapt from a cifar10_small_s1 seed, then the comparison with width multipliers -> reports/search/
	$(PY) -m mnv3.search publish $(NETADAPT) --seed-run $(SEED_RUN) --to reports/search

$(SEED_RUN)/test.json: | data
	$(TRAIN_CMD) --experiment cifar10_small_s1 --profile full --out $(SEARCH_DIR) --name $(SEED_NAME) --data-root $(DATA_ROOT) $(MIRROR_ARG) $(SEED_ARGS) $(if $(wildcard $(SEED_RUN)/last.pt),--resume)

# The latency model's design (channels in whole vectors, random widths from 0.5 to 1) was settled on
# `--seed 0 --cuts 0.75,0.5`; it is validated here on specs and cuts that played no part in it.
$(NETADAPT)/latency-validation.json: $(SEED_RUN)/test.json
	$(PY) -m mnv3.search latency $(SEED_RUN) --out $(NETADAPT) --seed 1 --cuts 0.625,0.375

$(NETADAPT)/searched.json: $(NETADAPT)/latency-validation.json
	$(PY) -m mnv3.search run $(SEED_RUN) --out $(NETADAPT) $(SEARCH_ARGS) --threads $(SEARCH_THREADS) --data-root $(DATA_ROOT) $(MIRROR_ARG)

$(NETADAPT)/comparison.json: $(NETADAPT)/searched.json
	$(PY) -m mnv3.search compare $(NETADAPT) --seed-run $(SEED_RUN) --seeds $(SEARCH_SEEDS) --threads $(SEARCH_THREADS) --jobs $(SEARCH_JOBS) --data-root $(DATA_ROOT) $(MIRROR_ARG) $(if $(filter full,$(PROFILE)),,--epochs $(COMPARE_EPOCHS))

# The GPU machine is offline and receives only the working tree: copy the mirror into it (git-ignored
# .mirror/, about 30 MB) and carry that folder. Then, there: bash scripts/gpu_plan.sh smoke (scripts/gpu_plan.md)
GPU_MIRROR ?= .mirror
.PHONY: gpu-mirror
gpu-mirror: ## copy the dataset mirror into .mirror/ for the offline GPU machine
	@test -n "$(MNV3_DATA_MIRROR)" || { echo "make gpu-mirror: no mirror to copy; run it with MNV3_DATA_MIRROR=DIR (a folder laid out as in data/README.md)"; exit 2; }
	mkdir -p $(GPU_MIRROR)/MNIST/raw
	cp $(MNV3_DATA_MIRROR)/MNIST/raw/*.gz $(GPU_MIRROR)/MNIST/raw/
	cp $(MNV3_DATA_MIRROR)/cifar10-jpeg.tar.gz $(GPU_MIRROR)/

# Compile the Android app (main and unit tests) against android.jar API 23 and the ExecuTorch Java
# API, then run its JVM unit tests (scripts/android_check.sh --help). Fetches its tools once into
# .cache/android-check/ (about 130 MB); tests/test_android.py runs it in `make test`.
.PHONY: android-check
android-check: ## compile the Android app against android.jar and ExecuTorch's Java API, run its JVM unit tests
	bash scripts/android_check.sh
