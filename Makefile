# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Debian libraries that bpy, MediaPipe/OpenCV and pyrender load at import time.
SYSTEM_LIBS := libx11-6 libxext6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 \
	libice6 libxt6 libxcb1 libgl1 libgomp1 libglib2.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri
# The one-node Slurm the cluster tests start (tests/slurm_cluster.py); without them those skip.
CLUSTER_TOOLS := slurm-wlm munge

.PHONY: setup system-libs cluster-tools demo test test-fast lint bench

setup: $(VENV)/.installed

system-libs:
	@missing=$$(for p in $(SYSTEM_LIBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system libraries: $$missing"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
		else echo "run as root: apt-get install $$missing" && exit 1; fi; \
	fi

cluster-tools:
	@missing=$$(for p in $(CLUSTER_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then echo "installing cluster tools: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "the Slurm tests skip: run as root: apt-get install $$missing"; fi; \
	fi

# torch first and alone: a CPU wheel is on local disk, and naming it in every call keeps pip
# from swapping in a multi-GB CUDA build; projectaria-tools without its (unneeded) dependencies;
# torchvision, for HaMeR, outside site-packages: beside a CPU torch PyPI's (CUDA) build breaks
# every package that imports it, so only HaMeR's import puts it on the path; lpips without
# its torchvision (dwm_model/metrics.py); DreamSim's own code apart, as the reference its
# tests check ours against. timm declares torchvision, so pip takes PyPI's CUDA build of it into
# site-packages, where it breaks transformers and torchmetrics at import: it is uninstalled again.
$(VENV)/.installed: pyproject.toml constraints.txt | system-libs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]' torch==2.13.0
	$(BIN)/pip uninstall -q -y torchvision
	$(BIN)/pip install -q --no-deps projectaria-tools==2.3.0
	$(BIN)/pip install -q --no-deps lpips==0.1.4
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/dreamsim-reference dreamsim==0.2.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/hamer-torchvision torchvision==0.28.0
	touch $@

demo: setup
	$(BIN)/dwm-data demo

test: setup lint cluster-tools
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . > /dev/null

bench: setup
	$(BIN)/dwm-data bench io
