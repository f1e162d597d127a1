"""The OpenAI-compatible family through the real Envoy: a reasoning model's request is adjusted to
its rules (src/providers/models.rs) instead of refused by the strict OpenAI mock, with the
adjustments in the answer's headers; the deprecated `functions` interface through a preset without
it (Groq), with the official OpenAI SDK, answered in the legacy shape; and thinking replayed from
another provider's answer removed before OpenAI (which refuses unknown message fields) sees it."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders import Reply, StreamEvents
from mockproviders.openai import OpenAIMock, completion_chunks, tool_call

from conftest import KEYS

WEATHER = {"name": "get_weather", "description": "Current weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
ADJUSTED = "x-switchyard-adjusted-params"
DROPPED = "x-switchyard-dropped-params"


@pytest.fixture(scope="module")
def rules_gateway(openai_mock):
    def group(name: str, model: str, **extra) -> ModelGroup:
        return ModelGroup(name, [Deployment("openai", openai_mock.port, model=model, api_key_env="TEST_OPENAI_KEY",
                                            api_base_path="/v1", extra=extra)],
                          route={"retry_policy": None}, cluster={"outlier_detection": None})
    gw = Gateway([group("o3-mini", "o3-mini"), group("o3-mini-strict", "o3-mini", unsupported_params="reject"),
                  group("gpt-5", "gpt-5-mini")], env=KEYS)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def fresh(openai_mock, groq_mock):
    openai_mock.reset()
    groq_mock.reset()
    yield


def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-anything", max_retries=0, timeout=30)


def test_reasoning_model_request_is_adjusted_not_refused(rules_gateway, openai_mock):
    raw = sdk(rules_gateway).chat.completions.with_raw_response.create(
        model="o3-mini", messages=[QUESTION], max_tokens=64, temperature=0.2, reasoning_effort="low")
    assert raw.headers[ADJUSTED] == "max_tokens=max_completion_tokens"
    assert raw.headers[DROPPED] == "temperature"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: What is the weather in Paris?"
    sent = openai_mock.requests[-1].json
    assert sent["model"] == "o3-mini" and sent["max_completion_tokens"] == 64
    assert "max_tokens" not in sent and "temperature" not in sent
    assert sent["reasoning_effort"] == "low"
    # The strict mock refuses the client's own body for this model, with OpenAI's message.
    assert openai_mock.rejections == []


def test_reasoning_model_stream_is_adjusted_too(rules_gateway, openai_mock):
    r = rules_gateway.chat({"model": "gpt-5", "messages": [QUESTION], "stream": True, "max_tokens": 64,
                            "top_p": 0.5, "presence_penalty": 0})
    assert r.status_code == 200, r.text
    assert r.headers[ADJUSTED] == "max_tokens=max_completion_tokens"
    assert r.headers[DROPPED] == "top_p"
    assert r.text.rstrip().endswith("data: [DONE]")
    sent = openai_mock.requests[-1].json
    assert {"max_tokens", "top_p", "presence_penalty"}.isdisjoint(sent) and sent["max_completion_tokens"] == 64
    assert openai_mock.rejections == []


def test_what_the_model_cannot_do_without_is_refused_before_the_provider(rules_gateway, openai_mock):
    # A stop sequence changes the answer: refused by default on GPT-5, naming the parameter.
    r = rules_gateway.chat({"model": "gpt-5", "messages": [QUESTION], "stop": ["\n"]})
    assert r.status_code == 400
    assert (openai_error(r)["param"], openai_error(r)["code"]) == ("stop", "unsupported_parameter")
    # Under `reject` even the rename is refused.
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(rules_gateway).chat.completions.create(model="o3-mini-strict", messages=[QUESTION], max_tokens=64)
    assert raised.value.param == "max_tokens"
    assert openai_mock.requests == []


def test_legacy_functions_through_a_preset_without_them(gateway, groq_mock):
    groq_mock.enqueue(Reply(200, OpenAIMock.completion(
        None, tool_calls=[tool_call("get_weather", {"city": "Paris"}, id="call_groq_1")], finish_reason="tool_calls",
        model="llama-3.3-70b-versatile")))
    client = sdk(gateway)
    first = client.chat.completions.create(model="groq", messages=[QUESTION], functions=[WEATHER],
                                           function_call="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert (choice.message.function_call.name, choice.message.function_call.arguments) == \
        ("get_weather", '{"city": "Paris"}')
    sent = groq_mock.requests[-1].json
    assert "functions" not in sent and "function_call" not in sent
    assert sent["tools"] == [{"type": "function", "function": WEATHER}]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("auto", False)
    # The next turn sends the legacy history back: it reaches Groq as tool calls and tool
    # messages whose ids pair up (the strict mock checks the pairing).
    second = client.chat.completions.create(model="groq", functions=[WEATHER], messages=[
        QUESTION, {"role": "assistant", "content": None, "function_call": choice.message.function_call.model_dump()},
        {"role": "function", "name": "get_weather", "content": "18C and sunny"}])
    assert second.choices[0].message.content == "Echo: What is the weather in Paris?"
    history = groq_mock.requests[-1].json["messages"]
    assert history[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert history[2] == {"role": "tool", "tool_call_id": history[1]["tool_calls"][0]["id"],
                          "content": "18C and sunny"}
    assert groq_mock.rejections == []


def test_tool_calls_are_left_alone_for_clients_of_the_tools_interface(gateway, groq_mock):
    # Groq's answers are read (any of them may answer a legacy request), but only legacy
    # requests get the legacy shape.
    groq_mock.enqueue(Reply(200, OpenAIMock.completion(
        None, tool_calls=[tool_call("get_weather", {"city": "Paris"}, id="call_groq_2")], finish_reason="tool_calls",
        model="llama-3.3-70b-versatile")))
    completion = sdk(gateway).chat.completions.create(model="groq", messages=[QUESTION],
                                                      tools=[{"type": "function", "function": WEATHER}])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.function_call is None
    assert choice.message.tool_calls[0].id == "call_groq_2"
    assert "parallel_tool_calls" not in groq_mock.requests[-1].json


def test_legacy_function_call_streams_in_the_legacy_shape(gateway, groq_mock):
    completion = OpenAIMock.completion(None, tool_calls=[tool_call("get_weather", {"city": "Paris"})],
                                       finish_reason="tool_calls", model="llama-3.3-70b-versatile")
    groq_mock.enqueue(StreamEvents(completion_chunks(completion, include_usage=True)))
    stream = sdk(gateway).chat.completions.create(model="groq", messages=[QUESTION], functions=[WEATHER],
                                                  stream=True)
    chunks = list(stream)
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices and c.choices[0].delta.function_call]
    assert calls[0].name == "get_weather"
    assert "".join(c.arguments or "" for c in calls) == '{"city": "Paris"}'
    assert all(not (c.choices and c.choices[0].delta.tool_calls) for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "function_call"
    assert groq_mock.rejections == []


def test_thinking_from_another_provider_is_removed_before_openai(gateway, openai_mock):
    # An assistant turn answered earlier by Claude (e.g. before a fallback) carries its
    # thinking; OpenAI refuses unknown message fields.
    messages = [QUESTION,
                {"role": "assistant", "content": "Sunny, 18C.", "reasoning_content": "Paris weather.",
                 "thinking_blocks": [{"type": "thinking", "thinking": "Paris weather.", "signature": "EqQBCkgIARAB"}]},
                {"role": "user", "content": "And tomorrow?"}]
    r = gateway.chat({"model": "gpt", "messages": messages})
    assert r.status_code == 200, r.text
    assert openai_mock.requests[-1].json["messages"][1] == {"role": "assistant", "content": "Sunny, 18C."}
    assert openai_mock.rejections == []
    # Sent as is, the strict mock refuses it as OpenAI does.
    direct = openai_mock.requests[-1].json
    direct["messages"] = messages
    response = httpx.post(openai_mock.base_url + "/v1/chat/completions", content=json.dumps(direct),
                          headers={"authorization": "Bearer " + KEYS["TEST_OPENAI_KEY"],
                                   "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == ("Additional properties are not allowed ('reasoning_content', "
                                                   "'thinking_blocks' were unexpected) - 'messages.1'")
