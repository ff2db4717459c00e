# evoprune: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the project metadata or the pins change; then compile the local search's
# kernels once (10-20 s), so that the first search times the search and not the compiler.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,ray]'
	$(BIN)/python -m evoprune.local.compile
	touch $(STAMP)

install: $(STAMP)

# The paper's GA and the memetic search on the same network and data (moons, B, seed 0).
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/evoprune search --dataset moons --arch B --seed 0 --quiet --out runs/demo/ga
	$(BIN)/evoprune search --dataset moons --arch B --seed 0 --variant memetic --quiet --out runs/demo/memetic
	$(BIN)/evoprune compare runs/demo/ga runs/demo/memetic
	$(BIN)/evoprune plot boundary runs/demo/memetic runs/demo/ga --out runs/demo/boundary.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluate.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_analyses.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
