# Two entry points for a fresh machine (README): `make demo` and `make test`.
# `make demo`: 4 minutes of training, then this run's and the shipped headline checkpoint's gains side by side
# (scored at the first success, the metric both residuals were trained for: --settle-steps 0).
# Both depend on `setup`, which is idempotent: it re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp

.PHONY: setup test-setup demo experiment test test-slow test-cluster bench lint format clean constraints

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch first: 2.13.0 is the local CPU build here; an installed torch (e.g. CUDA) is kept.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	@# The exact versions the tests and committed results were made with (see `make constraints`).
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@# Offscreen rendering without a GPU: Mesa's EGL (software). Installed when apt is usable.
	@if ! ldconfig -p 2>/dev/null | grep -q libEGL_mesa; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 >/dev/null; \
	  else echo "note: install Mesa EGL (libegl1 libegl-mesa0 libgl1-mesa-dri) for offscreen rendering"; fi; \
	fi
	@touch $(STAMP)

demo: setup
	$(BIN)/rllib-paper experiment --config demo --out runs/demo --episodes 100 --seed 1000 --workers 2 \
	  --settle-steps 0 --reference results/experiment_scripted_phase2_anneal/train/checkpoints/final

# The full learning experiment (the shipped faster setup: 1.7 M env steps, 25 to 28 min of training on a
# quiet 2-core host at ~1,100 env steps/s; the headline took 65 min on an older host; then 2 x 200 evaluation episodes).
experiment: setup
	$(BIN)/rllib-paper experiment --config residual_scripted --out runs/experiment_scripted_phase2 --episodes 200 --seed 1000

# What only the tests need: Debian's chromium, to load report.html in a real headless browser
# (tests/test_html_report.py skips, saying why, without it). Installed where apt is usable and
# we are root; `make demo` never installs it.
test-setup: setup
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install chromium for the report.html browser test (it skips without one)"; fi; \
	fi

test: setup test-setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-cluster: setup
	$(BIN)/python -m pytest -q -m cluster

bench: setup
	$(BIN)/rllib-paper bench env
	$(BIN)/rllib-paper bench pusher
	$(BIN)/rllib-paper bench eval
	$(BIN)/rllib-paper bench train
	$(BIN)/rllib-paper bench groot

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate constraints.txt from the set-up venv (after changing a dependency): every installed
# package at its version, except this project and torch (installed first, CPU or GPU build).
constraints: setup
	@{ echo "# Exact versions of a working set-up (Python 3.11, CPU torch 2.13.0); written by \`make constraints\`."; \
	   echo "# make setup installs with -c constraints.txt; pyproject.toml keeps open ranges for other environments."; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(rllib-paper|rllib_paper|torch)(==| @)'; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
