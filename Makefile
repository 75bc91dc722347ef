# Leadscore: `make run` serves a trained demo model; `make test` runs every test. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
DATA ?= data/demo
LEADS ?= 20000
SEED ?= 0
KEYS_FILE := .leadscore/keys.env
PYTEST_ARGS ?=
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export LEADSCORE_DATABASE_URL ?= sqlite:///leadscore.db
# pyspark is published only as a 430 MB source archive. This machine's package index answers uv's
# revalidation with a fresh copy every time, so uv rebuilt it on every install and kept each build in its
# cache (1.4 GB a time: 49 installs filled the disk). It is built once per machine into this wheelhouse.
WHEELHOUSE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/leadscore/wheelhouse
PYSPARK := $(shell sed -n 's/^pyspark==//p' constraints.txt)
PYSPARK_WHEEL := $(WHEELHOUSE)/pyspark-$(PYSPARK)-py2.py3-none-any.whl

.PHONY: run install install-test data model keys store serve test lint typecheck lab wheel-check bench clean help

help:
	@echo "make run   - install, build demo data, train, register the champion, serve API + sales page"
	@echo "make test  - install test tools, lint (ruff format, ruff, vulture, mypy) and run every test"
	@echo "make typecheck - mypy on the installed layout (.ci/mypy.sh)"
	@echo "make lab   - JupyterLab with the project's kernel"
	@echo "make bench - run the benchmarks (see docs/benchmarks.md)"

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[postgres]'
	@touch $@

$(PYSPARK_WHEEL): | $(BIN)/uv
	@mkdir -p $(WHEELHOUSE)
	# the build's own directory goes however the recipe ends, and a failed build fails make (a `; rm` last
	# made the recipe succeed without the wheel, and uv then built pyspark from source on every install)
	tmp=$$(mktemp -d -p $(WHEELHOUSE)) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps --no-cache-dir -w $$tmp pyspark==$(PYSPARK) && \
	mv $$tmp/$(notdir $@) $@

$(VENV)/.installed-test: $(VENV)/.installed $(PYSPARK_WHEEL)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt --find-links $(WHEELHOUSE) \
		-e '.[test,notebooks,spark]'
	$(BIN)/python -m ipykernel install --sys-prefix --name leadscore --display-name "Python (leadscore)" >/dev/null
	@touch $@

install: $(VENV)/.installed

data: $(DATA)/dataset.json
$(DATA)/dataset.json: | $(VENV)/.installed
	$(BIN)/leadscore demo-data --leads $(LEADS) --seed $(SEED) --out $(DATA)

model: data
	$(BIN)/leadscore train --data $(DATA) --if-missing

# Keys come from LEADSCORE_API_KEYS when it is set; otherwise they are generated once into $(KEYS_FILE),
# and printed that once only (later runs say where they are: a terminal's scrollback is no place for keys).
keys: | $(VENV)/.installed
	@if [ -z "$${LEADSCORE_API_KEYS:-}" ]; then \
		if [ -e $(KEYS_FILE) ]; then $(BIN)/leadscore keys --file $(KEYS_FILE) --no-show; \
		else $(BIN)/leadscore keys --file $(KEYS_FILE); fi; fi

# The most recent demo leads, their events and outcomes, scored once: what the sales page shows.
store: model
	$(BIN)/leadscore import --data $(DATA) --recent 500

run: model keys store
	@if [ -z "$${LEADSCORE_API_KEYS:-}" ]; then set -a; source $(KEYS_FILE); set +a; \
	where="in $(KEYS_FILE) (readable only by you); print them with: $(BIN)/leadscore keys --file $(KEYS_FILE)"; \
	else where="from LEADSCORE_API_KEYS"; fi; \
	echo; \
	echo "Leadscore is starting on http://$(HOST):$(PORT)"; \
	echo "  API docs:    http://$(HOST):$(PORT)/docs"; \
	echo "  Sales page:  http://$(HOST):$(PORT)/ui   (sign in with the sales or admin key)"; \
	echo "  API keys:    $$where"; \
	echo "  MLflow UI:   $(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port 5000"; \
	echo; \
	exec $(BIN)/leadscore serve --host $(HOST) --port $(PORT)

test: lint
	@bash .ci/system-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the gates (CONTRIBUTING.md says what each enforces): formatting, lint rules, dead code
lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/vulture
	bash .ci/mypy.sh

# types alone (settings in pyproject; strict on features and model); also run by `make lint`
typecheck: $(VENV)/.installed-test
	bash .ci/mypy.sh

lab: $(VENV)/.installed-test
	$(BIN)/jupyter lab --notebook-dir=notebooks

wheel-check: | $(BIN)/uv
	bash .ci/wheel-check.sh

bench: $(VENV)/.installed-test
	$(BIN)/python bench/features.py && $(BIN)/python bench/score.py && $(BIN)/python bench/train.py && $(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) data mlflow.db mlruns leadscore.db* .leadscore.db.migrate-lock .leadscore
