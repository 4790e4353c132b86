# Burnrate developer tasks. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help setup demo replay test lint bench clean

help: ## list the tasks
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(BIN)/burnrate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

setup: $(BIN)/burnrate ## create .venv with the engine and the test tools

demo: setup ## the whole pipeline on an embedded broker: a page fires and resolves
	$(BIN)/burnrate demo

replay: setup ## backtest configs/example.yaml on the bundled sample events
	$(BIN)/burnrate replay --config configs/example.yaml --events configs/sample-events.jsonl.gz

test: ## run the whole test suite (scripts/test.sh: installs what it needs, embedded broker)
	bash scripts/test.sh

lint: setup ## ruff, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

BENCHMARKS := bench_decode bench_core bench_evaluate bench_memory bench_kafka bench_scrape bench_security bench_ui bench_gate bench_detection

bench: setup ## run every benchmark (about 20 minutes); results in benchmarks/results/
	@for b in $(BENCHMARKS); do echo "== $$b"; $(BIN)/python -m benchmarks.$$b || exit 1; done

clean: ## remove the virtualenv, caches and generated benchmark data
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis benchmarks/data .kafka
