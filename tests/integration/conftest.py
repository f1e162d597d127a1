"""Shared fixtures: strict mock providers and one gateway in front of them.

The gateway serves these model groups, each a cluster with one deployment:

    claude        -> AnthropicMock (key from TEST_ANTHROPIC_KEY)
    gpt           -> OpenAIMock at /v1 (key from TEST_OPENAI_KEY), model rewritten
    gpt-prefixed  -> a second OpenAIMock under /compat/v1, no model rewrite
    claude-slow   -> the Anthropic mock behind a 1 s route timeout
    unreachable   -> a loopback port with nothing listening
    keyless       -> an Anthropic deployment whose key variable is not set
    gemini        -> GeminiMock, gemini-2.5-flash (key from TEST_GEMINI_KEY)
    gemini-3      -> GeminiMock, gemini-3-pro-preview (checks thought signatures)
    gemini-badkey -> GeminiMock with a key it does not accept
    gemini-embed  -> GeminiMock, gemini-embedding-001
    azure         -> AzureOpenAIMock, deployment URL with api-version
    azure-v1      -> AzureOpenAIMock, the /openai/v1 API
    azure-embed   -> AzureOpenAIMock, an embedding deployment (deployment URL)
    gpt-embed     -> OpenAIMock, text-embedding-3-small
    gpt-instruct  -> OpenAIMock, gpt-3.5-turbo-instruct (legacy completions)
    groq          -> an OpenAIMock under /openai/v1 behind the `groq` preset
    claude-drop   -> the Anthropic mock, unsupported_params: drop
    claude-strict -> the Anthropic mock, unsupported_params: reject
"""

from __future__ import annotations

import pytest

from gatewayconf import Deployment, ModelGroup, WASM
from harness import Gateway, closed_port
from mockproviders.anthropic import AnthropicMock
from mockproviders.azure import AzureOpenAIMock
from mockproviders.gemini import GeminiMock
from mockproviders.openai import OpenAIMock

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
OPENAI_KEY = "sk-openai-test-0123456789abcdef"
GEMINI_KEY = "AIzaSy-test-gemini-0123456789abcdef"
AZURE_KEY = "azure-test-key-0123456789abcdef"
AZURE_DEPLOYMENTS = {"gpt4o-deploy": "gpt-4o-2024-11-20", "embed-deploy": "text-embedding-3-small"}
KEYS = {"TEST_ANTHROPIC_KEY": ANTHROPIC_KEY, "TEST_OPENAI_KEY": OPENAI_KEY, "TEST_GEMINI_KEY": GEMINI_KEY,
        "TEST_AZURE_KEY": AZURE_KEY, "TEST_WRONG_GEMINI_KEY": "AIzaSy-not-the-right-key"}
MOCKS = ("anthropic_mock", "openai_mock", "openai_prefixed_mock", "gemini_mock", "azure_mock", "groq_mock")


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
def gemini_mock():
    with GeminiMock(api_key=GEMINI_KEY) as mock:
        yield mock


@pytest.fixture(scope="session")
def azure_mock():
    with AzureOpenAIMock(api_key=AZURE_KEY, deployments=AZURE_DEPLOYMENTS) as mock:
        yield mock


@pytest.fixture(scope="session")
def groq_mock():
    with OpenAIMock(api_key=OPENAI_KEY, base_path="/openai/v1") as mock:
        yield mock


@pytest.fixture(scope="session")
def gateway(anthropic_mock, openai_mock, openai_prefixed_mock, gemini_mock, azure_mock, groq_mock):
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
        ModelGroup("gemini", [Deployment("gemini", gemini_mock.port, model="gemini-2.5-flash",
                                         api_key_env="TEST_GEMINI_KEY")]),
        ModelGroup("gemini-3", [Deployment("gemini", gemini_mock.port, model="gemini-3-pro-preview",
                                           api_key_env="TEST_GEMINI_KEY")]),
        ModelGroup("gemini-badkey", [Deployment("gemini", gemini_mock.port, model="gemini-2.5-flash",
                                                api_key_env="TEST_WRONG_GEMINI_KEY")]),
        ModelGroup("gemini-embed", [Deployment("gemini", gemini_mock.port, model="gemini-embedding-001",
                                               api_key_env="TEST_GEMINI_KEY")]),
        ModelGroup("azure", [Deployment("azure", azure_mock.port, model="gpt4o-deploy", api_key_env="TEST_AZURE_KEY",
                                        extra={"api_version": "2024-10-21"})]),
        ModelGroup("azure-v1", [Deployment("azure", azure_mock.port, model="gpt4o-deploy",
                                           api_key_env="TEST_AZURE_KEY")]),
        ModelGroup("azure-embed", [Deployment("azure", azure_mock.port, model="embed-deploy",
                                              api_key_env="TEST_AZURE_KEY", extra={"api_version": "2024-10-21"})]),
        ModelGroup("gpt-embed", [Deployment("openai", openai_mock.port, model="text-embedding-3-small",
                                            api_key_env="TEST_OPENAI_KEY", api_base_path="/v1")]),
        ModelGroup("gpt-instruct", [Deployment("openai", openai_mock.port, model="gpt-3.5-turbo-instruct",
                                               api_key_env="TEST_OPENAI_KEY", api_base_path="/v1")]),
        ModelGroup("groq", [Deployment("groq", groq_mock.port, model="llama-3.3-70b-versatile",
                                       api_key_env="TEST_OPENAI_KEY", api_base_path="/openai/v1")]),
        ModelGroup("claude-drop", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                              api_key_env="TEST_ANTHROPIC_KEY", extra={"unsupported_params": "drop"})]),
        ModelGroup("claude-strict", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                                api_key_env="TEST_ANTHROPIC_KEY",
                                                extra={"unsupported_params": "reject"})]),
    ]
    # These groups test translation and error mapping, one attempt each: retries,
    # fallbacks and cooldowns have their own gateway in test_routing.py.
    for g in groups:
        g.route = {"retry_policy": None, **g.route}
        g.cluster = {"outlier_detection": None, **g.cluster}
    gw = Gateway(groups, env=KEYS)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def fresh_mocks(request):
    """Each test starts with empty recordings and no scripted replies."""
    for name in MOCKS:
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
    yield
