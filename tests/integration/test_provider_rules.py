"""Requests a provider would refuse never reach it: the thinking tool loop on Claude through
the official OpenAI SDK, and the per-model rules (src/providers/models.rs) resolved by the
deployment's `unsupported_params` policy, against the strict Anthropic mock, which refuses each
forbidden combination with Anthropic's own message (and checks replayed thinking signatures)."""

from __future__ import annotations

import json

import openai
import pytest

from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders import Reply, StreamEvents
from mockproviders.anthropic import AnthropicMock, message_events, text_block, thinking_block, tool_use_block

from conftest import ANTHROPIC_KEY

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}

# One deployment per rule family of the table, all served by the strict mock.
MODELS = {
    "sonnet-4-5": "claude-sonnet-4-5",      # temperature or top_p; budget thinking; prefill
    "sonnet-4-6": "claude-sonnet-4-6",      # ... and no prefill
    "opus-4-7": "claude-opus-4-7",          # no sampling parameters; adaptive thinking only
    "fable-5-1": "claude-fable-5-1",        # thinks always; cannot be forced to call a tool
}


@pytest.fixture(scope="module")
def rules_gateway(anthropic_mock):
    groups = [ModelGroup(name, [Deployment("anthropic", anthropic_mock.port, model=model,
                                           api_key_env="TEST_ANTHROPIC_KEY")],
                         route={"retry_policy": None}, cluster={"outlier_detection": None})
              for name, model in MODELS.items()]
    groups.append(ModelGroup("sonnet-4-6-strict", [Deployment(
        "anthropic", anthropic_mock.port, model="claude-sonnet-4-6", api_key_env="TEST_ANTHROPIC_KEY",
        extra={"unsupported_params": "reject"})], route={"retry_policy": None}, cluster={"outlier_detection": None}))
    gw = Gateway(groups, env={"TEST_ANTHROPIC_KEY": ANTHROPIC_KEY})
    yield gw
    gw.stop()


@pytest.fixture
def client(rules_gateway):
    return openai.OpenAI(base_url=rules_gateway.url + "/v1", api_key="sk-anything", max_retries=0, timeout=30)


@pytest.fixture(autouse=True)
def fresh(anthropic_mock):
    anthropic_mock.reset()
    yield


def first_turn_reply() -> dict:
    """Claude thinking, then calling the tool: its thinking block is signed by the mock."""
    return AnthropicMock.message(thinking_block("The user wants Paris weather; call the tool."),
                                 text_block("Let me check."),
                                 tool_use_block("get_weather", {"city": "Paris"}, id="toolu_01ParisWeather"),
                                 stop_reason="tool_use")


def tool_result(call_id: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": "18C and sunny"}


def sent_turns(mock) -> list[dict]:
    return mock.requests[-1].json["messages"]


def test_thinking_tool_loop_round_trips_through_the_sdk(client, anthropic_mock):
    anthropic_mock.enqueue(Reply(200, first_turn_reply()))
    first = client.chat.completions.create(model="sonnet-4-5", messages=[QUESTION], tools=[WEATHER_TOOL],
                                           reasoning_effort="low")
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.reasoning_content == "The user wants Paris weather; call the tool."
    assert message.thinking_blocks == [thinking_block("The user wants Paris weather; call the tool.")]
    # The usual SDK tool loop: append the assistant message object as returned, then results.
    second = client.chat.completions.with_raw_response.create(
        model="sonnet-4-5", tools=[WEATHER_TOOL], reasoning_effort="low",
        messages=[QUESTION, message, tool_result(message.tool_calls[0].id)])
    assert second.status_code == 200
    assert "x-switchyard-dropped-params" not in second.headers
    answer = second.parse().choices[0].message
    assert answer.content == "Echo: 18C and sunny"
    assert answer.thinking_blocks[0]["type"] == "thinking"
    sent = anthropic_mock.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert [block["type"] for block in sent["messages"][1]["content"]] == ["thinking", "text", "tool_use"]
    assert anthropic_mock.rejections == []


def test_streamed_thinking_tool_loop_round_trips_through_the_sdk_stream_helper(client, anthropic_mock):
    anthropic_mock.enqueue(StreamEvents(message_events(first_turn_reply())))
    with client.chat.completions.stream(model="sonnet-4-5", messages=[QUESTION], tools=[WEATHER_TOOL],
                                        reasoning_effort="low") as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    block = thinking_block("The user wants Paris weather; call the tool.")
    # The SDK's accumulator keeps the stream's `index`; the gateway ignores it on the way back.
    assert message.thinking_blocks == [{**block, "index": 0}]
    messages = [QUESTION, message.model_dump(exclude_none=True), tool_result(message.tool_calls[0].id)]
    with client.chat.completions.stream(model="sonnet-4-5", messages=messages, tools=[WEATHER_TOOL],
                                        reasoning_effort="low") as stream:
        answer = stream.get_final_completion()
    assert answer.choices[0].message.content == "Echo: 18C and sunny"
    sent = anthropic_mock.requests[-1].json
    assert sent["thinking"]["type"] == "enabled"
    assert sent["messages"][1]["content"][0] == block
    assert anthropic_mock.rejections == []


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_without_thinking_blocks_drops_thinking_and_says_so(rules_gateway, anthropic_mock, stream):
    # A client that rebuilds the assistant message from its tool calls only.
    history = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01ParisWeather", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}, tool_result("toolu_01ParisWeather")]
    r = rules_gateway.chat({"model": "sonnet-4-5", "messages": history, "tools": [WEATHER_TOOL],
                            "reasoning_effort": "high", "stream": stream})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-dropped-params"] == "reasoning_effort"
    assert "thinking" not in anthropic_mock.requests[-1].json
    assert anthropic_mock.rejections == []


def test_an_altered_thinking_block_is_refused_by_the_provider_not_hidden(rules_gateway, anthropic_mock):
    # The gateway passes blocks on unchanged; the signature check is the provider's.
    forged = {**thinking_block("The user wants Paris weather; call the tool."), "thinking": "Something else."}
    history = [QUESTION, {"role": "assistant", "content": None, "thinking_blocks": [forged], "tool_calls": [
        {"id": "toolu_01P", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        tool_result("toolu_01P")]
    r = rules_gateway.chat({"model": "sonnet-4-5", "messages": history, "tools": [WEATHER_TOOL],
                            "reasoning_effort": "low"})
    assert r.status_code == 400
    assert "Invalid `signature` in `thinking` block" in openai_error(r)["message"]


# Each row: (model group, request fields, what the mock must receive, dropped, adjusted).
RULES = [
    ("sonnet-4-5", {"temperature": 1.7}, {"temperature": 1.0}, None, "temperature=1"),
    ("sonnet-4-5", {"temperature": 0.4, "top_p": 0.9}, {"temperature": 0.4}, "top_p", None),
    ("sonnet-4-5", {"reasoning_effort": "low", "temperature": 0.4, "top_k": 7},
     {"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"temperature", "top_k"}, None),
    ("sonnet-4-5", {"reasoning_effort": "low", "tools": [WEATHER_TOOL], "tool_choice": "required"},
     {"tool_choice": {"type": "any"}}, "reasoning_effort", None),
    ("opus-4-7", {"temperature": 0.2, "top_p": 0.5}, {}, {"temperature", "top_p"}, None),
    ("opus-4-7", {"reasoning_effort": "high"}, {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
     None, None),
    ("fable-5-1", {"tools": [WEATHER_TOOL], "tool_choice": "required"}, {}, None, None),
]


@pytest.mark.parametrize("group, fields, expected, dropped, adjusted", RULES,
                         ids=[f"{r[0]}-{'-'.join(r[1])}" for r in RULES])
def test_per_model_rules_reach_the_provider_resolved(rules_gateway, anthropic_mock, group, fields, expected,
                                                     dropped, adjusted):
    r = rules_gateway.chat({"model": group, "messages": [QUESTION], **fields})
    if group == "fable-5-1":
        # A forced tool choice is semantic: refused by default with the parameter named.
        assert r.status_code == 400 and openai_error(r)["param"] == "tool_choice"
        assert anthropic_mock.requests == []
        return
    assert r.status_code == 200, r.text
    sent = anthropic_mock.requests[-1].json
    for key, value in expected.items():
        assert sent[key] == value, key
    for key in ("temperature", "top_p", "top_k"):
        if key not in expected:
            assert key not in sent or (key == "temperature" and "thinking" in sent and sent[key] == 1)
    names = {dropped} if isinstance(dropped, str) else (dropped or set())
    assert set(filter(None, r.headers.get("x-switchyard-dropped-params", "").split(","))) == names
    assert r.headers.get("x-switchyard-adjusted-params") == adjusted
    assert anthropic_mock.rejections == []


def test_prefill_is_refused_before_the_provider_on_models_without_it(rules_gateway, anthropic_mock):
    body = {"messages": [QUESTION, {"role": "assistant", "content": "It is"}]}
    r = rules_gateway.chat({"model": "sonnet-4-6", **body})
    assert r.status_code == 400
    assert openai_error(r)["param"] == "messages[1]"
    assert anthropic_mock.requests == []
    # Where prefill is accepted, trailing whitespace (which Anthropic refuses) is trimmed.
    r = rules_gateway.chat({"model": "sonnet-4-5", "messages": [QUESTION, {"role": "assistant", "content": "It is "}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-adjusted-params"] == "messages[1].content=trailing whitespace removed"
    assert anthropic_mock.requests[-1].json["messages"][-1]["content"] == [{"type": "text", "text": "It is"}]


def test_reject_policy_refuses_what_default_would_adjust(rules_gateway, anthropic_mock):
    r = rules_gateway.chat({"model": "sonnet-4-6-strict", "messages": [QUESTION], "temperature": 0.3, "top_p": 0.5})
    assert r.status_code == 400
    error = openai_error(r)
    assert (error["param"], error["code"]) == ("top_p", "unsupported_parameter")
    assert anthropic_mock.requests == []


def test_legacy_functions_through_anthropic_with_the_sdk(client, anthropic_mock):
    anthropic_mock.enqueue(Reply(200, AnthropicMock.message(
        tool_use_block("get_weather", {"city": "Paris"}), stop_reason="tool_use")))
    first = client.chat.completions.create(model="sonnet-4-5", messages=[QUESTION],
                                           functions=[WEATHER_TOOL["function"]], function_call="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert choice.message.function_call.arguments == '{"city":"Paris"}'
    sent = anthropic_mock.requests[-1].json
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    # The legacy result message pairs with the call; the mock checks tool_use/tool_result pairing.
    second = client.chat.completions.create(model="sonnet-4-5", functions=[WEATHER_TOOL["function"]], messages=[
        QUESTION, {"role": "assistant", "content": None, "function_call": choice.message.function_call.model_dump()},
        {"role": "function", "name": "get_weather", "content": "18C and sunny"}])
    assert second.choices[0].message.content == "Echo: 18C and sunny"
    assert anthropic_mock.rejections == []


def test_legacy_function_call_streams_in_the_legacy_shape(rules_gateway, anthropic_mock):
    anthropic_mock.enqueue(StreamEvents(message_events(AnthropicMock.message(
        tool_use_block("get_weather", {"city": "Paris"}), stop_reason="tool_use"))))
    r = rules_gateway.chat({"model": "sonnet-4-5", "messages": [QUESTION], "stream": True,
                            "functions": [WEATHER_TOOL["function"]]})
    assert r.status_code == 200
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    calls = [c["choices"][0]["delta"]["function_call"] for c in chunks if "function_call" in c["choices"][0]["delta"]]
    assert calls[0]["name"] == "get_weather"
    assert "".join(c["arguments"] for c in calls) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
