"""Gemini requests the API would refuse never reach it: `reasoning_effort` resolved by each
model's rules (src/providers/models.rs, the Gemini rows) and the deployment's
`unsupported_params` policy, against the strict Gemini mock, which refuses each forbidden thinking
configuration with Gemini's own message; and the deprecated `functions` interface end to end with
the official OpenAI SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders import Reply, StreamEvents
from mockproviders.gemini import GeminiMock, function_call_part, gemini_error_body, response_chunks, stream_events

from conftest import GEMINI_KEY

WEATHER = {"name": "get_weather", "description": "Current weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
SIGNATURE = "c2lnbmVkLWJ5LWdlbWluaQ=="

# One deployment per thinking form of the table, all served by the strict mock.
MODELS = {
    "flash": "gemini-2.5-flash",         # budgets 0-24576
    "pro-2.5": "gemini-2.5-pro",         # budgets 128-32768, cannot stop thinking
    "pro-3": "gemini-3-pro-preview",     # levels low and high; checks thought signatures
    "flash-3": "gemini-3-flash-preview",  # levels minimal to high
}


@pytest.fixture(scope="module")
def rules_gateway(gemini_mock):
    def group(name, model, **extra):
        return ModelGroup(name, [Deployment("gemini", gemini_mock.port, model=model, api_key_env="TEST_GEMINI_KEY",
                                            extra=extra)],
                          route={"retry_policy": None}, cluster={"outlier_detection": None})
    groups = [group(name, model) for name, model in MODELS.items()]
    groups.append(group("pro-2.5-strict", "gemini-2.5-pro", unsupported_params="reject"))
    gw = Gateway(groups, env={"TEST_GEMINI_KEY": GEMINI_KEY})
    yield gw
    gw.stop()


@pytest.fixture
def client(rules_gateway):
    return openai.OpenAI(base_url=rules_gateway.url + "/v1", api_key="sk-anything", max_retries=0, timeout=30)


@pytest.fixture(autouse=True)
def fresh(gemini_mock):
    gemini_mock.reset()
    yield
    gemini_mock.reset()


def thinking_sent(mock) -> dict | None:
    return (mock.requests[-1].json.get("generationConfig") or {}).get("thinkingConfig")


# Each row: (model group, reasoning_effort, what the mock refuses when sent naively, what it must
# receive instead, the adjusted-params header).
RULES = [
    ("pro-2.5", "none", ({"thinkingBudget": 0}, "Budget 0 is invalid. This model only works in thinking mode."),
     {"thinkingBudget": 128, "includeThoughts": True}, "reasoning_effort=thinkingBudget 128"),
    ("pro-3", "medium", ({"thinkingLevel": "MEDIUM"}, "Thinking level MEDIUM is not supported for this model. "
                                                     "Please retry with other thinking level."),
     {"thinkingLevel": "HIGH", "includeThoughts": True}, "reasoning_effort=high"),
    ("pro-3", "none", ({"thinkingLevel": "MINIMAL"}, "Thinking level MINIMAL is not supported for this model. "
                                                    "Please retry with other thinking level."),
     {"thinkingLevel": "LOW", "includeThoughts": True}, "reasoning_effort=low"),
    ("flash", "low", ({"thinkingLevel": "LOW"}, "Thinking level is not supported for this model."),
     {"thinkingBudget": 1024, "includeThoughts": True}, None),
    ("flash-3", "none", ({"thinkingBudget": 0, "thinkingLevel": "MINIMAL"},
                         "You can only set only one of thinking budget and thinking level."),
     {"thinkingLevel": "MINIMAL", "includeThoughts": True}, "reasoning_effort=minimal"),
]


@pytest.mark.parametrize("group, effort, naive, expected, adjusted", RULES, ids=[f"{r[0]}-{r[1]}" for r in RULES])
def test_thinking_the_model_would_refuse_is_adjusted_and_reported(rules_gateway, gemini_mock, group, effort, naive,
                                                                  expected, adjusted):
    # What a naive translation would send is refused by the mock, in Gemini's words...
    refused_config, message = naive
    direct = httpx.post(f"{gemini_mock.base_url}/v1beta/models/{MODELS[group]}:generateContent",
                        headers={"x-goog-api-key": GEMINI_KEY}, timeout=10,
                        json={"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                              "generationConfig": {"thinkingConfig": refused_config}})
    assert (direct.status_code, direct.json()) == (400, gemini_error_body(400, "INVALID_ARGUMENT", message))
    gemini_mock.reset()
    # ...while the gateway sends what the model takes, and says what it changed.
    r = rules_gateway.chat({"model": group, "messages": [QUESTION], "reasoning_effort": effort})
    assert r.status_code == 200, r.text
    assert thinking_sent(gemini_mock) == expected
    assert r.headers.get("x-switchyard-adjusted-params") == adjusted
    assert "x-switchyard-dropped-params" not in r.headers
    assert gemini_mock.rejections == []


def test_reject_policy_refuses_what_the_default_adjusts(rules_gateway, gemini_mock):
    r = rules_gateway.chat({"model": "pro-2.5-strict", "messages": [QUESTION], "reasoning_effort": "none"})
    assert r.status_code == 400
    error = openai_error(r)
    assert (error["param"], error["code"]) == ("reasoning_effort", "unsupported_parameter")
    assert "Gemini 2.5 Pro cannot turn thinking off" in error["message"]
    assert gemini_mock.requests == []
    # What the model takes as asked still passes.
    r = rules_gateway.chat({"model": "pro-2.5-strict", "messages": [QUESTION], "reasoning_effort": "high"})
    assert r.status_code == 200, r.text
    assert thinking_sent(gemini_mock) == {"thinkingBudget": 4096, "includeThoughts": True}


@pytest.mark.parametrize("group", ["flash", "pro-3"])
def test_legacy_functions_through_gemini_with_the_sdk(client, gemini_mock, group):
    gemini_mock.enqueue(Reply(200, GeminiMock.response(
        [function_call_part("get_weather", {"city": "Paris"}, thought_signature=SIGNATURE)],
        model_version=MODELS[group])))
    first = client.chat.completions.create(model=group, messages=[QUESTION], functions=[WEATHER],
                                           function_call="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert (choice.message.function_call.name, choice.message.function_call.arguments) == \
        ("get_weather", '{"city":"Paris"}')
    sent = gemini_mock.requests[-1].json
    assert sent["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": WEATHER["description"],
                                                        "parametersJsonSchema": WEATHER["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    # The legacy result pairs with the call by name; on Gemini 3 the call, which lost its thought
    # signature (a function_call has no id to carry it), goes back with Google's dummy one.
    second = client.chat.completions.create(model=group, functions=[WEATHER], messages=[
        QUESTION, {"role": "assistant", "content": None, "function_call": choice.message.function_call.model_dump()},
        {"role": "function", "name": "get_weather", "content": "18C and sunny"}])
    assert second.choices[0].message.content == "Echo: {\"output\":\"18C and sunny\"}"
    assert second.choices[0].finish_reason == "stop"
    assert gemini_mock.rejections == []
    call_part, answer_part = (content["parts"][0] for content in gemini_mock.requests[-1].json["contents"][1:])
    assert call_part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert call_part.get("thoughtSignature") == ("skip_thought_signature_validator" if group == "pro-3" else None)
    assert answer_part == {"functionResponse": {"name": "get_weather", "response": {"output": "18C and sunny"}}}


def test_legacy_function_call_streams_in_the_legacy_shape(client, gemini_mock):
    reply = GeminiMock.response(["Checking.", function_call_part("get_weather", {"city": "Paris"}),
                                 function_call_part("get_weather", {"city": "Rome"})])
    gemini_mock.enqueue(StreamEvents(stream_events(response_chunks(reply))))
    stream = client.chat.completions.create(model="flash", messages=[QUESTION], functions=[WEATHER], stream=True)
    chunks = list(stream)
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices and c.choices[0].delta.function_call]
    # Gemini has no switch against parallel calls: a legacy client gets the first.
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city":"Paris"}')]
    assert all(not c.choices or c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "function_call"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Checking."
    assert gemini_mock.requests[-1].query["alt"] == ["sse"]
    assert gemini_mock.requests[-1].json["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
