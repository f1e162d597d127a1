# Switchyard: `make run` starts the gateway, `make test` runs every test.
# Both do their own set-up on a fresh machine (Rust Wasm target, project .venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha1sum tools/requirements.txt | cut -c1-12)
WASM    := target/wasm32-wasip1/release/switchyard.wasm
# The same filter built to trap on demand, only to prove Envoy reloads a trapped VM.
TRAP_WASM_DIR := target/trap-test
CARGO   := cargo

.PHONY: run test build build-trap-test setup rust-target lint unit integration clean

run: setup build
	exec $(PY) tools/run.py

test: setup lint unit build integration

setup: rust-target $(STAMP)

rust-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(STAMP): tools/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

build: rust-target
	$(CARGO) build --locked --release --target wasm32-wasip1

build-trap-test: rust-target
	$(CARGO) build --locked --release --target wasm32-wasip1 --features trap-test --target-dir $(TRAP_WASM_DIR)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --release --target wasm32-wasip1 -- -D warnings
	$(PY) tools/gatewayconf.py envoy/gateway.yaml

unit:
	$(CARGO) test --locked

integration: setup build build-trap-test
	$(PY) -m pytest

clean:
	$(CARGO) clean
	rm -rf $(VENV)
