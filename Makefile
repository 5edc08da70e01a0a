# mcp-trace — the two commands a newcomer needs are `make demo` and `make test`;
# `make setup` installs everything both need (idempotent).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PHOENIX_VENV := .venv-phoenix
WASM := target/wasm32-wasip1/release/mcp_trace.wasm
PHOENIX_VERSION := 20.26.1

.PHONY: setup setup-rust setup-python setup-phoenix setup-bench build test unit lint e2e demo bench clean

setup: setup-rust setup-python setup-phoenix setup-bench

setup-rust:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

setup-python: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt tests/constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt
	@touch $@

# The demo's trace backend lives in its own venv: it is large and its pins must not
# fight the test peers'.
setup-phoenix: $(PHOENIX_VENV)/.installed

$(PHOENIX_VENV)/.installed:
	@test -x $(PHOENIX_VENV)/bin/python || python3 -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/pip install --quiet --disable-pip-version-check arize-phoenix==$(PHOENIX_VERSION)
	@touch $@

# Load generators for `make bench` (Debian packages); skipped where apt is unavailable.
setup-bench:
	@command -v wrk >/dev/null && command -v h2load >/dev/null || \
	  { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client >/dev/null) || \
	    echo "setup: wrk/h2load not installed (no apt-get); make bench needs them"; }

build: setup-rust
	cargo build --release --target wasm32-wasip1

# Unit tests of the core, lints, then the end-to-end suite against the real Envoy.
test: unit lint e2e

unit:
	cargo test

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -- -D warnings

# Two runs: the client's OTel provider is process-global, and each suite points it at
# its own OTLP receiver.
e2e: build setup-python
	$(PY) -m pytest -q -p no:cacheprovider tests/peers
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

demo: build setup-python setup-phoenix
	$(PY) demo/run_demo.py

bench: build setup-python setup-bench
	$(PY) bench/run_bench.py

clean:
	cargo clean
	rm -rf $(VENV) $(PHOENIX_VENV) .demo
