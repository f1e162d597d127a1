"""A trap in the filter (a panic: the filter is built never to panic, and fuzzed for it)
must cost one worker a moment, not the gateway: Envoy reloads the VM
(failure_policy FAIL_RELOAD) and clients meanwhile get a retryable OpenAI error."""

from __future__ import annotations

import time

import pytest

import gatewayconf
from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error

TRAP_WASM = gatewayconf.ROOT / "target" / "trap-test" / "wasm32-wasip1" / "release" / "switchyard.wasm"
HI = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def trap_gateway(anthropic_mock, monkeypatch):
    assert TRAP_WASM.exists(), "build it with `make build-trap-test` (make test does)"
    shipped = gatewayconf.set_wasm_path
    monkeypatch.setattr(gatewayconf, "set_wasm_path", lambda doc, wasm=None: shipped(doc, TRAP_WASM))
    gw = Gateway([ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, api_key_env="K")])],
                 env={"K": anthropic_mock.api_key}, concurrency=1)
    yield gw
    gw.stop()


def test_a_trapped_vm_is_reloaded_and_serving_resumes(trap_gateway):
    assert trap_gateway.chat(HI).status_code == 200
    trapped = trap_gateway.chat(HI, headers={"x-switchyard-test-trap": "1"})
    assert trapped.status_code == 503
    error = openai_error(trapped)
    assert error["code"] == "gateway_recovering" and trapped.headers["retry-after"] == "1"

    deadline = time.monotonic() + 10
    while (status := trap_gateway.chat(HI).status_code) != 200:
        assert status == 503, status
        assert time.monotonic() < deadline, "the VM was not reloaded"
        time.sleep(0.05)
    reloads = trap_gateway.stats("wasm.switchyard.downstream.vm_reload_success")
    assert reloads["wasm.switchyard.downstream.vm_reload_success"] >= 1
    assert trap_gateway.proc.poll() is None, "Envoy itself must survive"
