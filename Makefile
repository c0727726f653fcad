# Two commands on a fresh machine: `make demo` (main job, offline) and `make test`.
# Each creates .venv and installs the project with what it needs; nothing by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench bench-micro chaos profile lint clean notebooks

$(STAMP): pyproject.toml transports/_framing_c.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,profile]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: the pipeline on both transports, embedded broker, synthetic data, no network.
demo: $(STAMP)
	$(BIN)/harness demo

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

## The fast tier while working (under 3 min here): no Kafka broker, no test marked slow.
## `make test` stays the one CI runs.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not kafka"

## End-to-end Kafka vs ZeroMQ comparison (a few minutes).
bench: $(STAMP)
	$(BIN)/harness bench

## pytest-benchmark micro benchmarks, saved for `pytest-benchmark compare`.
bench-micro: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m pytest benchmarks/ --benchmark-autosave --benchmark-json=results/micro.json

## JupyterLab on notebooks/ (installs the `notebooks` extra once).
notebooks: $(STAMP)
	$(BIN)/pip install --quiet -e '.[notebooks]'
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) output results .pytest_cache
