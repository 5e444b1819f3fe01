# Everything starts from a machine with only python3: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JS_STAMP := tests/js/node_modules/.installed-stamp

.PHONY: install run test check lint typecheck unit system-deps js-deps bench verify-docker clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The gateway on 127.0.0.1:8000 (the simulated model unless Google credentials are set).
run: install
	$(BIN)/gemini-sse serve

## System programs the tests drive for real: redis-server, Chromium and nginx.
## Installed with apt-get when we are root (as on CI); otherwise we stop and say what is missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "The tests need these system packages:$$missing"; \
			echo "Install them (e.g. sudo apt-get install$$missing) and run make test again."; \
			exit 1; \
		fi; \
	fi

## The Vercel AI SDK (and React, esbuild) that tests/test_aisdk.py drives, exactly as
## tests/js/package-lock.json pins them; reinstalled only when that changes.
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	touch $(JS_STAMP)

js-deps: $(JS_STAMP)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

check: lint typecheck

## Two tests at a time (pytest-xdist): most of the suite waits (for servers, child
## processes, the simulated model's pace), and a test that fails beside another is a
## flaky test, fixed at its cause.
unit: install system-deps js-deps
	$(BIN)/python -m pytest --numprocesses 2

test: check unit

bench: install
	$(BIN)/python -m bench

## The Dockerfile, built and run (docker), or its steps performed on this machine; slow.
verify-docker:
	$(PYTHON) scripts/verify_dockerfile.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
