# The development loop (see CONTRIBUTING.md). Everything runs in the project's .venv.
PY ?= .venv/bin/python
export NO_MKDOCS_2_WARNING = 1
SOURCES = digest tests benchmarks scripts

.PHONY: help install lint format type test test-quick docs docs-serve configref bench mutation

help:
	@echo "make install     create .venv with the dev extra (tests, docs, linters)"
	@echo "make test-quick  the tests without the slow ones: pytest -m 'not slow'"
	@echo "make test        every test, as CI runs them"
	@echo "make lint        ruff check + ruff format --check   (make format fixes)"
	@echo "make type        mypy --strict digest"
	@echo "make docs        regenerate the config reference, then mkdocs build --strict"
	@echo "make docs-serve  the docs site with live reload on http://127.0.0.1:8000/"
	@echo "make bench       the benchmarks at the sizes docs/performance.md quotes"
	@echo "make mutation    mutation testing of the core modules (hours; docs/mutation.md)"

install:
	python3 -m venv .venv && $(PY) -m pip install -q -e '.[dev]'

lint:
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

format:
	$(PY) -m ruff format $(SOURCES)
	$(PY) -m ruff check --fix $(SOURCES)

type:
	$(PY) -m mypy --strict digest

test:
	$(PY) -m pytest

test-quick:
	$(PY) -m pytest -q -m "not slow"

configref:
	$(PY) scripts/configref.py

docs: configref
	$(PY) -m mkdocs build --strict --site-dir build/site

docs-serve:
	$(PY) -m mkdocs serve

bench:
	$(PY) benchmarks/fanout.py --subscribers 100000 --articles 2000 --naive-sample 100
	$(PY) benchmarks/content_load.py --articles 12763
	$(PY) benchmarks/public_app.py --subscribers 300000 --mint 100000

mutation:
	$(PY) -m pip install -q -e '.[dev,mutation]'
	$(PY) scripts/mutation.py
