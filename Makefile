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

.PHONY: help venv kafka system-packages test test-kafka4 demo bench clean

help:
	@echo "elderwatch make targets:"
	@echo "  venv    create $(VENV): the pinned requirements.lock, then elderwatch (re-run when either changes)"
	@echo "  kafka   fetch the local Apache Kafka broker jars into the cache (needs java + mvn)"
	@echo "  system-packages  Debian packages the tests need ($(DEBIAN_PACKAGES)), installed with apt-get if missing"
	@echo "  test    run the test suite against a local broker (PYTEST_ARGS='...' to narrow it)"
	@echo "  test-kafka4  run the integration suite against a local Kafka 4.x broker (KAFKA4_VERSION=X.Y.Z for another 4.x)"
	@echo "  demo    run the end-to-end demo for DEMO_SECONDS seconds (0 = until Ctrl-C)"
	@echo "  bench   run the throughput benchmark"
	@echo "  clean   remove $(VENV) and the caches inside the repository (not ~/.cache)"
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) DEMO_SECONDS=$(DEMO_SECONDS) PYTEST_ARGS=$(PYTEST_ARGS)"

venv: $(VENV)/.installed

# Stamp file: reinstall only when the dependency declaration or the lock changes.
# requirements.lock pins every runtime and test dependency (pip-compile, from pyproject.toml: see README,
# Operations > Pinned versions); elderwatch itself goes in without resolving again (--no-deps).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

kafka: venv
	$(PY) -m elderwatch.localkafka fetch

# The browser tests drive Debian's chromium (Playwright with executable_path: no browser download);
# a CJK font so Chinese pages render (and their screenshots show characters, not boxes); prometheus for
# promtool, which checks and unit-tests the alert rules and the dashboard's queries (ops/, tests/unit/test_monitoring.py).
DEBIAN_PACKAGES ?= chromium fonts-wqy-microhei prometheus
system-packages:
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
	    echo "make: missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)" >&2; exit 1; fi; \
	  echo "== apt-get install$$missing"; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	fi

# pytest exits 5 when it collected no tests: that is a broken set-up (wrong
# path, import error hiding tests), never a pass.
test: venv kafka system-packages
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" -eq 5 ]; then \
	  echo "make test: pytest collected no tests (exit 5) -- this is a set-up failure, not a pass" >&2; \
	  exit 1; \
	fi; \
	exit "$$status"

# The integration suite on Kafka 4.x (CI runs 3.9, the default): the version is
# elderwatch.localkafka.KAFKA4_VERSION unless KAFKA4_VERSION is given; always a
# local broker (an exported KAFKA_BOOTSTRAP_SERVERS would test some other cluster).
test-kafka4: venv system-packages
	@version="$${KAFKA4_VERSION:-$$($(PY) -c 'from elderwatch.localkafka import KAFKA4_VERSION; print(KAFKA4_VERSION)')}"; \
	echo "== Kafka $$version (ELDERWATCH_KAFKA_VERSION) for tests/integration tests/browser"; \
	$(PY) -m elderwatch.localkafka fetch --version "$$version" >/dev/null; \
	status=0; env -u KAFKA_BOOTSTRAP_SERVERS ELDERWATCH_KAFKA_VERSION="$$version" \
	  $(PY) -m pytest tests/integration tests/browser $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" -eq 5 ]; then \
	  echo "make test-kafka4: pytest collected no tests (exit 5) -- this is a set-up failure, not a pass" >&2; \
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
