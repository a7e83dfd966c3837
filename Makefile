# The two quick-start commands: `make demo` and `make test`. Each sets itself up
# from a fresh clone (virtualenv, torch 2.13.0 CPU, the package, the npm-installed
# Solidity compiler) and re-runs setup only when the dependency files change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flare-installed

.PHONY: setup demo test test-slow test-all lint mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund --loglevel=error
	# Headless Chromium for the audit report's screenshot test: Debian's package, only when missing.
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not installed (needs apt-get as root); the audit HTML screenshot test will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flare-chain demo

# The default suite (every test not marked slow), well under ten minutes on 2 cores.
test: $(STAMP)
	$(PY) -m ruff check flare_chain scripts tests
	$(PY) -m mypy flare_chain
	$(PY) -m pytest -m "not slow"

# The slow tests: whole federations, the 4-daemon devnet with its faults. CI runs them after `test`.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

test-all: test test-slow

lint: $(STAMP)
	$(PY) -m ruff check flare_chain scripts tests
	$(PY) -m mypy flare_chain

# Mutation testing (scripts/mutation.py; README "Mutation testing"): at most MUTANTS mutants per module,
# each run against its own module's tests. Resumable; not part of CI. `MODULES="--module PATH ..."` narrows it.
MUTANTS ?= 25
mutation: $(STAMP)
	nice -n 19 $(PY) scripts/mutation.py --sample $(MUTANTS) $(MODULES)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
