# One entry point for people and CI: `make run`, `make test`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint typecheck template-check security pytest bench build sam-local clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

## run: the collector's main job on local emulators (moto + exchange emulator), no account needed
run: $(STAMP)
	$(PY) -m localdev.run $(ARGS)

## test: every gate CI runs - lint, types, template checks, then the whole pytest suite
test: lint typecheck template-check security pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check handler localdev tests bench
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy localdev

template-check:
	bash scripts/check-template.sh

## security: bandit (medium+ fails) and pip-audit of requirements.txt (fails only on a known vulnerability)
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

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf .aws-sam .cache .pytest_cache .mypy_cache .ruff_cache
