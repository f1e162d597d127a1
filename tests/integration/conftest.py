"""Shared fixtures: strict mock providers and one gateway in front of them.

The gateway serves these model groups, each a cluster with one deployment:

    claude        -> AnthropicMock (key from TEST_ANTHROPIC_KEY)
    gpt           -> OpenAIMock at /v1 (key from TEST_OPENAI_KEY), model rewritten
    gpt-prefixed  -> a second OpenAIMock under /compat/v1, no model rewrite
    claude-slow   -> the Anthropic mock behind a 1 s route timeout
    unreachable   -> a loopback port with nothing listening
    keyless       -> an Anthropic deployment whose key variable is not set
"""

from __future__ import annotations

import pytest

from gatewayconf import Deployment, ModelGroup, WASM
from harness import Gateway, closed_port
from mockproviders.anthropic import AnthropicMock
from mockproviders.openai import OpenAIMock

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
OPENAI_KEY = "sk-openai-test-0123456789abcdef"
KEYS = {"TEST_ANTHROPIC_KEY": ANTHROPIC_KEY, "TEST_OPENAI_KEY": OPENAI_KEY}


@pytest.fixture(scope="session", autouse=True)
def built_wasm():
    assert WASM.exists(), f"{WASM} is missing: run `make build` (make test does)"


@pytest.fixture(scope="session")
def anthropic_mock():
    with AnthropicMock(api_key=ANTHROPIC_KEY) as mock:
        yield mock


@pytest.fixture(scope="session")
def openai_mock():
    with OpenAIMock(api_key=OPENAI_KEY) as mock:
        yield mock


@pytest.fixture(scope="session")
def openai_prefixed_mock():
    with OpenAIMock(api_key=OPENAI_KEY, base_path="/compat/v1") as mock:
        yield mock


@pytest.fixture(scope="session")
def gateway(anthropic_mock, openai_mock, openai_prefixed_mock):
    groups = [
        ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                         api_key_env="TEST_ANTHROPIC_KEY")]),
        ModelGroup("gpt", [Deployment("openai", openai_mock.port, model="gpt-4o-mini", api_key_env="TEST_OPENAI_KEY",
                                      api_base_path="/v1")]),
        ModelGroup("gpt-prefixed", [Deployment("openai", openai_prefixed_mock.port, api_key_env="TEST_OPENAI_KEY",
                                               api_base_path="/compat/v1")]),
        ModelGroup("claude-slow", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                              api_key_env="TEST_ANTHROPIC_KEY")], route_timeout="1s"),
        ModelGroup("unreachable", [Deployment("openai", closed_port(), model="x", api_key_env="TEST_OPENAI_KEY")]),
        ModelGroup("keyless", [Deployment("anthropic", anthropic_mock.port, api_key_env="TEST_UNSET_KEY")]),
    ]
    gw = Gateway(groups, env=KEYS)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def fresh_mocks(request):
    """Each test starts with empty recordings and no scripted replies."""
    for name in ("anthropic_mock", "openai_mock", "openai_prefixed_mock"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
    yield
