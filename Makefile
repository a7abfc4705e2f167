# Tillsammans: the two commands are `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/common libs/stack services/intake services/mapping services/consent services/meetings
STAMP := $(VENV)/.installed

.PHONY: install up down demo test bench lint clean

$(STAMP): constraints.txt requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-r requirements-dev.txt $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

install: $(STAMP) ## Create .venv with every service, the CLI and the test tools

up: $(STAMP) ## Start NATS and the four services of three demo organisations (Ctrl-C stops)
	$(BIN)/tillsammans up

down: ## Stop a stack started by `make up`
	@test -x $(BIN)/tillsammans && $(BIN)/tillsammans down || true

demo: $(STAMP) ## Run the journey of seed 001 against the running stack
	$(BIN)/tillsammans demo

test: $(STAMP) ## Run the whole test suite
	$(BIN)/python -m pytest

bench: $(STAMP) ## Measure throughput, latency and memory (not part of `make test`)
	$(BIN)/tillsammans bench $(BENCH_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check libs services tests
	$(BIN)/mypy libs/common/src libs/stack/src services/*/src

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) .tillsammans
