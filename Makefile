# fourdcontrast — `make test` and `make demo` build their own environment on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages for headless rendering (polyscope EGL, open3d) and the browser test.
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libx11-6 libusb-1.0-0 xvfb xauth \
                chromium fonts-liberation
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads otherwise spin and steal the core the main thread needs
# on a busy 2-core machine (measured: single sparse ops 2–8× slower).
PYTEST_ENV := MPLBACKEND=Agg FOURDCONTRAST_QUICK=1 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE

.PHONY: help install system-deps test test-fast lint demo benchmark gpu-check clean

help:
	@echo "make test       create .venv, install everything, lint, run all tests and notebooks (CI)"
	@echo "make test-fast  the quick loop: tests not marked slow/browser, no notebooks"
	@echo "make demo       the main job end to end on the embedded data"
	@echo "make benchmark  the speed benchmarks under benchmarks/"
	@echo "make gpu-check  the prepared GPU check (no .venv, no network; results in outputs/gpu_check/)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,notebooks,viz,open3d,fast]"
	# compile the optional native sparse kernels now (~30 s) rather than inside the first test
	$(BIN)/fourdcontrast native || echo "warning: native sparse kernels unavailable; the PyTorch path will be used"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "warning: missing Debian packages (headless rendering/browser tests will skip):" $$missing; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check fourdcontrast fourdviz tests benchmarks scripts

test: $(STAMP) system-deps lint
	$(PYTEST_ENV) $(BIN)/python -m pytest -q tests notebooks --nbval-lax --durations=15

test-fast: $(STAMP)
	$(PYTEST_ENV) $(BIN)/python -m pytest -q -m "not slow and not browser" tests

demo: $(STAMP)
	$(BIN)/fourdcontrast demo --out outputs/demo

benchmark: $(STAMP)
	$(BIN)/python benchmarks/sparse_engine.py
	$(BIN)/python benchmarks/generation.py

# On a GPU machine with PyTorch: runs from the source tree with $(PYTHON), installs nothing (≤ 8 min).
gpu-check:
	PYTHON=$(PYTHON) scripts/gpu_check.sh

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
