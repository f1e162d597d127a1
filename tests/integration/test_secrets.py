"""Keys come from the environment, never travel the wrong way, never reach a log."""

from __future__ import annotations

import pytest

from conftest import ANTHROPIC_KEY, KEYS, OPENAI_KEY
from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders import Reply
from mockproviders.anthropic import anthropic_error_body

CLIENT_KEY = "sk-client-virtual-key-do-not-forward"
HI = [{"role": "user", "content": "hi"}]


def test_client_credentials_are_never_forwarded(gateway, anthropic_mock, openai_mock):
    # Also provider settings only adapters may set: a client's Anthropic version or beta
    # flags must not reach Anthropic (the route strips them; the filter spends no call).
    client_headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY, "api-key": CLIENT_KEY,
                      "openai-organization": "org-client", "x-goog-api-key": CLIENT_KEY,
                      "anthropic-version": "1999-01-01", "anthropic-beta": "client-chosen-beta"}
    assert gateway.chat({"model": "claude", "messages": HI}, headers=client_headers).status_code == 200
    assert gateway.chat({"model": "gpt", "messages": HI}, headers=client_headers).status_code == 200
    [to_anthropic] = anthropic_mock.requests
    [to_openai] = openai_mock.requests
    assert to_anthropic.headers["x-api-key"] == ANTHROPIC_KEY
    assert to_openai.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert to_anthropic.headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in to_anthropic.headers
    assert "anthropic-version" not in to_openai.headers and "anthropic-beta" not in to_openai.headers
    for sent in (to_anthropic, to_openai):
        assert CLIENT_KEY not in repr(sent.headers)
        assert "openai-organization" not in sent.headers and "x-goog-api-key" not in sent.headers
        assert "x-forwarded-for" not in sent.headers, "client addresses stay inside the gateway"
        assert "x-switchyard-model" not in sent.headers


def test_keys_never_appear_in_logs(gateway, anthropic_mock):
    # Provoke every path that logs: success, provider errors, misconfiguration.
    anthropic_mock.enqueue(Reply(401, anthropic_error_body("authentication_error", f"bad {ANTHROPIC_KEY}")))
    gateway.chat({"model": "claude", "messages": HI}, headers={"authorization": f"Bearer {CLIENT_KEY}"})
    gateway.chat({"model": "keyless", "messages": HI})
    gateway.chat({"model": "gpt", "messages": HI})
    log = gateway.log()
    assert "switchyard" in log, "the log under test must contain the filter's output"
    for secret in (*KEYS.values(), CLIENT_KEY):
        assert secret not in log


@pytest.fixture(scope="module")
def locked_gateway(anthropic_mock):
    gw = Gateway(
        [ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, api_key_env="TEST_ANTHROPIC_KEY")])],
        env={**KEYS, "GATEWAY_MASTER_KEY": "sk-gateway-master"},
        master_key_env="GATEWAY_MASTER_KEY",
    )
    yield gw
    gw.stop()


@pytest.mark.parametrize("headers,status", [
    ({}, 401),
    ({"authorization": "Bearer sk-wrong"}, 401),
    ({"authorization": "Bearer sk-gateway-master"}, 200),
    ({"x-api-key": "sk-gateway-master"}, 200),
])
def test_master_key_gates_every_route(locked_gateway, anthropic_mock, headers, status):
    r = locked_gateway.chat({"model": "claude", "messages": HI}, headers=headers)
    assert r.status_code == status, r.text
    models = locked_gateway.client.get("/v1/models", headers=headers)
    assert models.status_code == status
    if status == 401:
        error = openai_error(r)
        assert error["type"] == "authentication_error" and "sk-gateway-master" not in r.text
    else:
        assert "sk-gateway-master" not in repr(anthropic_mock.requests[-1].headers)


def test_master_key_variable_missing_refuses_to_start(anthropic_mock):
    with pytest.raises(RuntimeError, match="exited"):
        Gateway([ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port)])],
                env={}, master_key_env="GATEWAY_MASTER_KEY")
