# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= demo_workspace
TORCH_INDEX ?=

.PHONY: demo test test-all lint bench install clean web-test

demo: $(VENV)/.installed  ## run the whole pipeline on the embedded synthetic dataset
	$(BIN)/python -m AutoSegNetLib demo --workspace $(WORKSPACE)

test: $(VENV)/.installed  ## fast test suite (what CI runs)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.installed  ## fast + slow tests (real shared data, longer training)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check .

install: $(VENV)/.installed

# The install steps live in scripts/install_engine.sh, shared with the Dockerfile so the two cannot drift.
# TORCH_INDEX (empty: pip's configured index) picks a torch build, e.g. https://download.pytorch.org/whl/cu126.
$(VENV)/.installed: pyproject.toml constraints.txt scripts/install_engine.sh
	PYTHON="$(PYTHON)" TORCH_INDEX="$(TORCH_INDEX)" bash scripts/install_engine.sh $(VENV) test
	touch $@

# The web UI has its own environment (trame-slicer pins slicer-core 5.11; docs/decisions/0021-web-ui-dependencies.md)
# and needs Debian's chromium (apt install chromium) for its browser test.
WEB_VENV ?= .venv-web
web-test: $(WEB_VENV)/.installed  ## the web UI's browser test (own environment .venv-web)
	$(WEB_VENV)/bin/python -m pytest -q -m "slow or not slow" Testing/web

# torch first (pinned in constraints.txt, TORCH_INDEX honoured: scripts/install_engine.sh), then trame-slicer, then
# the project with constraints.txt (keeps trame-slicer's slicer-core 5.11.0.6; pip check is clean), and playwright.
$(WEB_VENV)/.installed: pyproject.toml constraints.txt scripts/install_engine.sh
	PYTHON="$(PYTHON)" TORCH_INDEX="$(TORCH_INDEX)" bash scripts/install_engine.sh --torch-only $(WEB_VENV)
	$(WEB_VENV)/bin/python -m pip install --quiet "trame-slicer[standalone]==2.0.0"
	$(WEB_VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]" playwright
	touch $@

clean:
	rm -rf $(VENV) $(WEB_VENV) $(WORKSPACE) .pytest_cache .ruff_cache
