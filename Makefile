# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= demo_workspace

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

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache .ruff_cache
