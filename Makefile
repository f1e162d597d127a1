# Switchyard: `make run` starts the gateway, `make test` runs every test.
# Both do their own set-up on a fresh machine (Rust Wasm target, project .venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha1sum tools/requirements.txt | cut -c1-12)
WASM    := target/wasm32-wasip1/release/switchyard.wasm
SWITCHYARD := target/release/switchyard
# The same filter built to trap on demand, only to prove Envoy reloads a trapped VM.
TRAP_WASM_DIR := target/trap-test
CARGO   := cargo
# LiteLLM's own pydantic models check the sidecar's admin API responses (tests only).
LITELLM_VENV  := .venv-litellm

.PHONY: run test build cli sidecar sidecar-test postgres litellm-venv build-trap-test build-bench bench bench-cpu bench-profile bench-tools setup rust-target lint unit integration clean

OHA_VERSION     := 1.16.0
LITELLM_VERSION := 1.106.2

run: setup build cli sidecar
	exec $(PY) tools/run.py

test: setup lint unit build build-bench integration

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

# The native `switchyard` command line; the config lint checks endpoint metadata with it.
cli:
	$(CARGO) build --locked --release -p switchyard-cli

# The sidecar: virtual keys, teams, users, end users, the LiteLLM-compatible admin API.
sidecar:
	$(CARGO) build --locked --release -p switchyard-sidecar

# Debian's PostgreSQL, for the sidecar tests (they start their own server on loopback and
# stop it). A cluster the package starts by itself on install is stopped again.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql \
	  && { pg_lsclusters -h 2>/dev/null | while read -r v c _; do pg_ctlcluster "$$v" "$$c" stop || true; done; }; }

litellm-venv: $(LITELLM_VENV)/.installed-$(LITELLM_VERSION)

$(LITELLM_VENV)/.installed-$(LITELLM_VERSION):
	test -x $(LITELLM_VENV)/bin/python || python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet "litellm[proxy]==$(LITELLM_VERSION)"
	rm -f $(LITELLM_VENV)/.installed-*
	touch $@

# Only the sidecar's suite (`make integration` runs it with the others).
sidecar-test: setup sidecar postgres litellm-venv
	$(PY) -m pytest tests/sidecar

build-trap-test: rust-target
	$(CARGO) build --locked --release --target wasm32-wasip1 --features trap-test --target-dir $(TRAP_WASM_DIR)

# `make test` builds the benchmark (never runs it) so it cannot rot.
build-bench:
	$(CARGO) build --locked --release -p switchyard-bench
	$(CARGO) bench --locked --no-run

# Side by side in one run: direct, plain Envoy, Switchyard, LiteLLM (see bench/compare.py).
bench: setup build sidecar build-bench bench-tools
	$(PY) bench/compare.py

# Quick and steady: Envoy CPU per request, plain vs Switchyard, master key vs a virtual key
# with RPM/TPM limits (three or four minutes).
bench-cpu: setup build sidecar build-bench bench-tools
	$(PY) bench/compare.py --cpu

# Where the CPU per request goes: Envoy configs adding Switchyard's parts one at a time,
# then time per callback and host call inside the VM (builds with --features idle, profile).
bench-profile: setup build sidecar build-bench bench-tools
	$(CARGO) build --locked --release --target wasm32-wasip1 --features idle --target-dir target/idle
	$(CARGO) build --locked --release --target wasm32-wasip1 --features profile --target-dir target/profile
	$(PY) bench/compare.py --profile

bench-tools:
	test -x .bench/bin/oha || $(CARGO) install oha --version $(OHA_VERSION) --locked --root .bench
	test -x .bench/litellm-venv/bin/litellm || ( python3 -m venv .bench/litellm-venv \
	  && .bench/litellm-venv/bin/pip install --quiet "litellm[proxy]==$(LITELLM_VERSION)" ) \
	  || echo "LiteLLM could not be installed; the benchmark runs without it and says so"

lint: cli litellm-venv
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --release --target wasm32-wasip1 -- -D warnings
	# The development builds of `make bench-profile` and the trap test, so they never rot.
	$(CARGO) clippy --locked --release --target wasm32-wasip1 --features profile,idle,trap-test -- -D warnings
	$(PY) tools/gatewayconf.py --switchyard $(SWITCHYARD) envoy/gateway.yaml
	# The price catalog is what tools/gen_catalog.py makes of the pinned LiteLLM price map.
	$(PY) tools/gen_catalog.py --check

unit:
	$(CARGO) test --locked
	$(CARGO) test --locked -p switchyard-cli
	$(CARGO) test --locked -p switchyard-sidecar

integration: setup build build-trap-test cli sidecar postgres litellm-venv
	$(PY) -m pytest

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(LITELLM_VENV)
