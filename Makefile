# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs layersync with its dependencies on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.layersync-installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/layersync demo

# Two workers (the machines have 2 cores); a test module stays on one worker, so the dbt project a
# module builds once (scope="module") is built once, not once per worker.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/push_scale.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
