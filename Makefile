# Set-up, demo and tests. `make demo` and `make test` install everything they need on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
RUNNER := mobilepre/tfjs_runner

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock $(RUNNER)/package-lock.json
	@# Chromium from Debian's packages: the browser runtime (validate --runtime chromium, browser tests).
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(PY) -c "from mobilepre.quantize._tf import tensorflowjs_converter; tensorflowjs_converter(); import keras, ai_edge_litert"
	cd $(RUNNER) && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mobilepre build --out demo-out --force

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) $(RUNNER)/node_modules demo-out
