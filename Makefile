# One entry point for people and CI: `make run`, `make test`, `make bench`; `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# .venv is installed from the lock (exact versions, hashes checked); `make lock` regenerates it from the ranges.
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) | sha1sum | cut -c1-12)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help run test unit integration lint typecheck template-check security pytest bench build lock sam-local clean

$(STAMP): $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	rm -f $(VENV)/.installed-* && touch $@

## help: this list (each target with its "## name: what it does" line)
help:
	@awk '/^## [a-z-]+: / { sub(/^## /, ""); name = $$0; sub(/:.*/, "", name); sub(/^[^:]*: /, ""); \
		printf "  %-15s %s\n", name, $$0 }' $(firstword $(MAKEFILE_LIST))

## run: the collector's main job on local emulators (moto + exchange emulator), no account needed
run: $(STAMP)
	$(PY) -m localdev.run $(ARGS)

## test: every gate CI runs - lint, types, template checks, then the whole pytest suite
test: lint typecheck template-check security pytest

## unit: the fast inner loop - pure logic, no servers (tests/unit, and tests/property without DynamoDB Local)
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/property -m "not dynamodb_local" $(PYTEST_ARGS)

## integration: the code against local servers - the exchange emulator, moto's server, DynamoDB Local
integration: $(STAMP)
	$(PY) -m pytest -q tests/emulator tests/functional tests/integration $(PYTEST_ARGS)
	$(PY) -m pytest -q tests/property -m dynamodb_local $(PYTEST_ARGS)

## lint: ruff check, and ruff format --check over the whole tree
lint: $(STAMP)
	$(VENV)/bin/ruff check handler localdev tests bench
	$(VENV)/bin/ruff format --check .

## typecheck: mypy --strict over handler, localdev, tests and bench (the files listed in pyproject.toml)
typecheck: $(STAMP)
	$(VENV)/bin/mypy

## template-check: cfn-lint, sam validate --lint and checkov over template.yaml
template-check:
	bash scripts/check-template.sh

## security: bandit (medium+ fails) and pip-audit of the artifact's lock (fails only on a known vulnerability)
security: $(STAMP)
	bash scripts/security-check.sh

## pytest: the whole suite, including the sam build artifact test (RUN_SAM_BUILD=0 skips it) and
## make sam-local in Docker (RUN_SAM_LOCAL=0 skips it)
pytest: $(STAMP)
	RUN_SAM_BUILD=$${RUN_SAM_BUILD:-1} RUN_SAM_LOCAL=$${RUN_SAM_LOCAL:-1} $(PY) -m pytest $(PYTEST_ARGS)

## build: sam build without Docker (see scripts/sam-build.sh)
build:
	bash scripts/sam-build.sh

## sam-local: every events/ file through `sam local invoke` in Docker, from a fresh machine (scripts/sam-local.sh)
sam-local: $(STAMP)
	bash scripts/sam-local.sh

## lock: resolve requirements*.txt and lambda-runtime.txt into the hashed locks (see scripts/lock.sh)
lock: $(STAMP)
	bash scripts/lock.sh

## bench: the speed and memory measurements in bench/ (long; see bench/README.md)
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

## clean: remove build output and tool caches
clean:
	rm -rf .aws-sam .cache .pytest_cache .mypy_cache .ruff_cache
