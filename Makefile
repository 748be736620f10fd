# elderwatch developer entry points. `make` alone lists the targets.
#
# Everything runs inside $(VENV); the Kafka broker jars are cached outside the
# repository (${ELDERWATCH_CACHE:-~/.cache/elderwatch}), see elderwatch/localkafka.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_SECONDS ?= 0
PYTEST_ARGS ?=

.PHONY: help venv kafka test demo bench clean

help:
	@echo "elderwatch make targets:"
	@echo "  venv    create $(VENV) and install elderwatch with its test extras (re-run when pyproject.toml changes)"
	@echo "  kafka   fetch the local Apache Kafka broker jars into the cache (needs java + mvn)"
	@echo "  test    run the test suite against a local broker (PYTEST_ARGS='...' to narrow it)"
	@echo "  demo    run the end-to-end demo for DEMO_SECONDS seconds (0 = until Ctrl-C)"
	@echo "  bench   run the throughput benchmark"
	@echo "  clean   remove $(VENV) and the caches inside the repository (not ~/.cache)"
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) DEMO_SECONDS=$(DEMO_SECONDS) PYTEST_ARGS=$(PYTEST_ARGS)"

venv: $(VENV)/.installed

# Stamp file: reinstall only when the dependency declaration changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

kafka: venv
	$(PY) -m elderwatch.localkafka fetch

# pytest exits 5 when it collected no tests: that is a broken set-up (wrong
# path, import error hiding tests), never a pass.
test: venv kafka
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" -eq 5 ]; then \
	  echo "make test: pytest collected no tests (exit 5) -- this is a set-up failure, not a pass" >&2; \
	  exit 1; \
	fi; \
	exit "$$status"

demo: venv kafka
	$(PY) -m elderwatch.cli demo --seconds $(DEMO_SECONDS)

bench: venv kafka
	$(PY) -m bench

clean:
	rm -rf -- $(VENV) .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf -- {} +
