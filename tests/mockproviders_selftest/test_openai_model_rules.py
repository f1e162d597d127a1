"""Self-test of the OpenAI and Azure mocks' per-model rules: reasoning models refuse what the API
refuses them (``max_tokens``, sampling other than the default, penalties, logprobs, ``stop`` on the
newest), with the API's message, param and code; what the gateway sends instead is accepted; and
message fields of other providers' answers (``thinking_blocks``, ``reasoning_content``) are refused.

Run: cd /work/main && .venv/bin/python -m pytest tests/mockproviders_selftest -q -k openai
"""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion

from mockproviders.azure import AzureOpenAIMock
from mockproviders.openai import openai_error_body, reasoning_family, tool_call

HEADERS = {"authorization": "Bearer test-openai-key"}
QUESTION = {"role": "user", "content": "Hello there"}


def body(model: str, **fields) -> dict:
    return {"model": model, "messages": [QUESTION], **fields}


def post(http, mock, payload, path="/v1/chat/completions", headers=HEADERS):
    return http.post(mock.base_url + path, content=json.dumps(payload).encode(),
                     headers={"content-type": "application/json", **headers})


def unsupported(name: str, hint: str = "") -> tuple[str, str, str]:
    return f"Unsupported parameter: '{name}' is not supported with this model.{hint}", name, "unsupported_parameter"


def only_default(name: str, value) -> tuple[str, str, str]:
    return (f"Unsupported value: '{name}' does not support {json.dumps(value)} with this model. Only the default (1) "
            "value is supported.", name, "unsupported_value")


MAX_TOKENS = unsupported("max_tokens", " Use 'max_completion_tokens' instead.")

REFUSED = [
    # (case id, model, fields, (message, param, code))
    ("o3-mini-max-tokens", "o3-mini", {"max_tokens": 100}, MAX_TOKENS),
    ("o4-mini-max-tokens", "o4-mini", {"max_tokens": 1}, MAX_TOKENS),
    ("gpt-5-max-tokens", "gpt-5", {"max_tokens": 1, "temperature": 0.5}, MAX_TOKENS),
    ("o3-mini-temperature", "o3-mini", {"temperature": 0}, unsupported("temperature")),
    ("o4-mini-top-p", "o4-mini", {"top_p": 0.5}, unsupported("top_p")),
    ("o1-temperature", "o1", {"temperature": 0.7}, only_default("temperature", 0.7)),
    ("gpt-5-temperature", "gpt-5-mini", {"temperature": 0.9}, only_default("temperature", 0.9)),
    ("gpt-5-top-p", "gpt-5-nano", {"top_p": 0.1}, only_default("top_p", 0.1)),
    ("gpt-5.1-reasoning-temperature", "gpt-5.1", {"reasoning_effort": "low", "temperature": 0.2},
     only_default("temperature", 0.2)),
    ("gpt-5.1-codex-temperature", "gpt-5.1-codex", {"temperature": 0.2}, only_default("temperature", 0.2)),
    ("o3-presence-penalty", "o3", {"presence_penalty": 0.5}, unsupported("presence_penalty")),
    ("gpt-5-frequency-penalty", "gpt-5", {"frequency_penalty": -1}, unsupported("frequency_penalty")),
    ("o1-logit-bias", "o1", {"logit_bias": {"50256": -100}}, unsupported("logit_bias")),
    ("o3-mini-logprobs", "o3-mini", {"logprobs": True}, unsupported("logprobs")),
    ("gpt-5-top-logprobs", "gpt-5", {"top_logprobs": 2}, unsupported("top_logprobs")),
    ("gpt-5.2-reasoning-logprobs", "gpt-5.2", {"reasoning_effort": "high", "logprobs": True}, unsupported("logprobs")),
    ("o3-stop", "o3", {"stop": "END"}, unsupported("stop")),
    ("o4-mini-stop", "o4-mini-2025-04-16", {"stop": ["END"]}, unsupported("stop")),
    ("gpt-5.2-stop", "gpt-5.2", {"stop": ["END"]}, unsupported("stop")),
    ("o1-mini-reasoning-effort", "o1-mini", {"reasoning_effort": "low"}, unsupported("reasoning_effort")),
]


@pytest.mark.parametrize("model, fields, expected", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_openai_reasoning_models_refuse_what_the_api_refuses(http, omock, model, fields, expected):
    response = post(http, omock, body(model, **fields))
    assert response.status_code == 400, response.text
    message, param, code = expected
    assert response.json() == openai_error_body(message, param=param, code=code)
    assert omock.rejections == [(400, response.json())]


ACCEPTED = [
    # What the gateway sends instead, and what the models do take.
    ("o3-mini-adjusted", "o3-mini", {"max_completion_tokens": 100, "reasoning_effort": "low"}),
    ("o3-mini-stop", "o3-mini-2025-01-31", {"stop": ["END"]}),
    ("o1-default-temperature", "o1", {"temperature": 1, "top_p": 1}),
    ("gpt-5-default-temperature", "gpt-5", {"temperature": 1, "reasoning_effort": "minimal"}),
    ("gpt-5.1-without-reasoning", "gpt-5.1", {"temperature": 0.2, "top_p": 0.5, "logprobs": True, "top_logprobs": 2}),
    ("gpt-5.2-effort-none", "gpt-5.2-2025-12-11", {"reasoning_effort": "none", "temperature": 0.2}),
    ("gpt-5-chat", "gpt-5-chat-latest", {"temperature": 0.2, "max_tokens": 5, "stop": "x", "presence_penalty": 1}),
    ("gpt-4o", "gpt-4o", {"temperature": 0.2, "max_tokens": 5, "logprobs": True, "logit_bias": {"1": 1}}),
    ("nulls", "o3", {"temperature": None, "max_tokens": None, "stop": None, "presence_penalty": None}),
]


@pytest.mark.parametrize("model, fields", [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_openai_reasoning_models_take_what_the_gateway_sends(http, omock, model, fields):
    response = post(http, omock, body(model, **fields))
    assert response.status_code == 200, response.text
    ChatCompletion.model_validate(response.json())


def test_openai_reasoning_families():
    families = {"o1-mini-2024-09-12": "o1-early", "o1-preview": "o1-early", "o1-2024-12-17": "o1",
                "o3-mini": "o3-mini", "o3": "o3", "o3-pro": "o3", "o4-mini": "o3", "gpt-5": "gpt-5",
                "gpt-5.2-pro": "gpt-5", "gpt-5-chat-latest": None, "gpt-4o-mini": None, "gpt-4.1": None}
    assert {model: reasoning_family(model) for model in families} == families


def test_openai_sdk_sees_the_api_error(omock):
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key="test-openai-key", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="o3-mini", messages=[QUESTION], max_tokens=10)
    assert raised.value.code == "unsupported_parameter" and raised.value.param == "max_tokens"
    reply = client.chat.completions.create(model="o3-mini", messages=[QUESTION], max_completion_tokens=10)
    assert reply.choices[0].message.content == "Echo: Hello there"


@pytest.mark.parametrize("field, value", [
    ("thinking_blocks", [{"type": "thinking", "thinking": "hmm", "signature": "EqQB"}]),
    ("reasoning_content", "hmm"),
    ("reasoning", "hmm"),
])
def test_openai_refuses_other_providers_message_fields(http, omock, field, value):
    messages = [QUESTION, {"role": "assistant", "content": "Hi.", field: value}, {"role": "user", "content": "Again"}]
    response = post(http, omock, {"model": "gpt-4o-mini", "messages": messages})
    assert response.status_code == 400
    assert response.json() == openai_error_body(
        f"Additional properties are not allowed ('{field}' was unexpected) - 'messages.1'")


def test_openai_takes_the_legacy_function_interface(http, omock):
    """OpenAI still takes ``functions``; the gateway passes them through to it (and only to it)."""
    function = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    messages = [QUESTION, {"role": "assistant", "content": None,
                           "function_call": {"name": "get_weather", "arguments": "{}"}},
                {"role": "function", "name": "get_weather", "content": "sunny"}]
    response = post(http, omock, {"model": "gpt-4o-mini", "messages": messages, "functions": [function],
                                  "function_call": "auto"})
    assert response.status_code == 200, response.text
    # The tools form of the same conversation, as the gateway rewrites it elsewhere.
    call = tool_call("get_weather", {}, id="call_1")
    messages = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    response = post(http, omock, {"model": "gpt-4o-mini", "messages": messages, "parallel_tool_calls": False,
                                  "tools": [{"type": "function", "function": function}], "tool_choice": "auto"})
    assert response.status_code == 200, response.text


# ----------------------------------------------------------------------------------------------
# Azure: the deployment's model decides
# ----------------------------------------------------------------------------------------------

AZURE_KEY = {"api-key": "test-azure-key"}


@pytest.fixture(scope="module")
def reasoning_azure():
    with AzureOpenAIMock(deployments={"o3-mini-prod": "o3-mini-2025-01-31", "gpt4o": "gpt-4o-2024-11-20"}) as mock:
        yield mock


def test_azure_openai_reasoning_deployments_refuse_like_openai(http, reasoning_azure):
    reasoning_azure.reset()
    path = "/openai/deployments/o3-mini-prod/chat/completions?api-version=2025-04-01-preview"
    response = post(http, reasoning_azure, {"messages": [QUESTION], "max_tokens": 5}, path=path, headers=AZURE_KEY)
    assert response.status_code == 400
    message, param, code = MAX_TOKENS
    assert response.json() == openai_error_body(message, param=param, code=code)
    # The body's model is ignored on deployment URLs: the deployment's model decides.
    response = post(http, reasoning_azure, {"model": "gpt-4o", "messages": [QUESTION], "temperature": 0.3},
                    path=path, headers=AZURE_KEY)
    assert response.json()["error"]["param"] == "temperature"
    response = post(http, reasoning_azure, {"messages": [QUESTION], "max_completion_tokens": 5}, path=path,
                    headers=AZURE_KEY)
    assert response.status_code == 200, response.text
    # The v1 API: the body's model names the deployment.
    response = post(http, reasoning_azure, {"model": "o3-mini-prod", "messages": [QUESTION], "top_p": 0.5},
                    path="/openai/v1/chat/completions", headers=AZURE_KEY)
    assert response.json() == openai_error_body(*unsupported("top_p")[:1], param="top_p",
                                                code="unsupported_parameter")
    response = post(http, reasoning_azure, {"model": "gpt4o", "messages": [QUESTION], "max_tokens": 5},
                    path="/openai/v1/chat/completions", headers=AZURE_KEY)
    assert response.status_code == 200, response.text
