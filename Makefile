# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= demo_workspace
TORCH_INDEX ?=

.PHONY: demo test test-all lint bench install clean

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

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache .ruff_cache
