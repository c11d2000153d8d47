# Set-up, demo and tests. `make demo` and `make test` install everything they need on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
RUNNER := mobilepre/tfjs_runner
TOOLS := tests/tools

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock $(RUNNER)/package-lock.json $(TOOLS)/package-lock.json
	@# From Debian's packages: Chromium, the browser runtime (validate --runtime chromium, browser tests);
	@# Gradle and ShellCheck, which the build integrations' tests run (integrations/).
	missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v gradle >/dev/null || missing="$$missing gradle"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q $$missing || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; }; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(PY) -c "from mobilepre.quantize._tf import tensorflowjs_converter; tensorflowjs_converter(); import keras, ai_edge_litert"
	cd $(RUNNER) && npm ci --no-audit --no-fund --loglevel=error
	cd $(TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mobilepre build --out demo-out --force

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) $(RUNNER)/node_modules $(TOOLS)/node_modules demo-out
