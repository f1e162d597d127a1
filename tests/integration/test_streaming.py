"""Streaming (`"stream": true`) through the real Envoy + switchyard.wasm."""

from __future__ import annotations

import json
import time

import openai
import pytest

from harness import openai_error
from mockproviders import Reply, StreamEvents
from mockproviders.anthropic import AnthropicMock, anthropic_error_body, message_events, text_block, tool_use_block


def stream(gateway, body: dict) -> tuple[list, list[str]]:
    """Sends a streaming request; returns (parsed data events, raw data lines)."""
    with gateway.client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in r.headers
        raw = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    return [json.loads(x) if x != "[DONE]" else x for x in raw], raw


def content_of(events) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))


def test_anthropic_stream_is_translated(gateway, anthropic_mock):
    events, _ = stream(gateway, {"model": "claude", "messages": [{"role": "user", "content": "stream me please"}]})
    sent = anthropic_mock.requests[0].json
    assert sent["stream"] is True and anthropic_mock.rejections == []
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1, "one identity for the whole stream"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content_of(chunks) == "Echo: stream me please"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks), "no usage unless asked for"


def test_anthropic_stream_with_usage(gateway, anthropic_mock):
    events, _ = stream(gateway, {"model": "claude", "stream_options": {"include_usage": True},
                                 "messages": [{"role": "user", "content": "count my tokens"}]})
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 0
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + usage_chunk["usage"]["completion_tokens"]
    assert all(c["usage"] is None for c in chunks)


def test_anthropic_stream_tool_call_deltas(gateway, anthropic_mock):
    message = AnthropicMock.message(text_block("Checking."), tool_use_block("get_weather", {"city": "Paris", "unit": "c"}, id="toolu_stream1"),
                                    stop_reason="tool_use")
    anthropic_mock.enqueue(StreamEvents(message_events(message)))
    events, _ = stream(gateway, {"model": "claude", "messages": [{"role": "user", "content": "weather?"}],
                                 "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in events[:-1] if c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0] == {"index": 0, "id": "toolu_stream1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris", "unit": "c"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_error_before_the_first_byte_is_a_normal_error_response(gateway, anthropic_mock):
    anthropic_mock.enqueue(Reply(529, anthropic_error_body("overloaded_error", "Overloaded")))
    r = gateway.chat({"model": "claude", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503
    assert openai_error(r)["code"] == "overloaded"


def test_error_mid_stream_is_an_error_event_and_a_clean_end(gateway, anthropic_mock):
    message = AnthropicMock.message("This will be cut")
    events = message_events(message)
    anthropic_mock.enqueue(StreamEvents(events[:4] + [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]))
    parsed, raw = stream(gateway, {"model": "claude", "messages": [{"role": "user", "content": "x"}]})
    assert "[DONE]" not in raw
    assert parsed[-1] == {"error": {"message": "Overloaded", "type": "service_unavailable", "param": None, "code": "overloaded"}}


def test_provider_stream_cut_short_is_reported(gateway, anthropic_mock):
    events = message_events(AnthropicMock.message("never finished"))
    anthropic_mock.enqueue(StreamEvents(events[:4]))  # ends cleanly, but without message_stop
    parsed, raw = stream(gateway, {"model": "claude", "messages": [{"role": "user", "content": "x"}]})
    assert "[DONE]" not in raw and parsed[-1]["error"]["code"] == "incomplete_stream"


def test_first_chunk_is_not_held_back(gateway, anthropic_mock):
    events = message_events(AnthropicMock.message("slow answer arriving piece by piece"))
    # The mock waits 0.4 s between events; the whole stream takes several seconds.
    anthropic_mock.enqueue(StreamEvents(events, delay=0.4))
    with gateway.client.stream("POST", "/v1/chat/completions", json={
            "model": "claude", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic()
        rest = [line for line in lines if line.startswith("data: ")]
        end_at = time.monotonic()
    assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert rest[-1] == "data: [DONE]"
    # Had the gateway buffered, the first chunk would arrive with the last.
    assert end_at - first_at > 1.5


def test_openai_compatible_stream_usage_is_requested_and_hidden_unless_asked(gateway, openai_mock):
    events, _ = stream(gateway, {"model": "gpt", "messages": [{"role": "user", "content": "a b c"}]})
    assert openai_mock.requests[0].json["stream_options"] == {"include_usage": True}
    assert events[-1] == "[DONE]"
    assert all(e["choices"] for e in events[:-1]), "the usage chunk the gateway asked for is not shown"
    assert content_of(events) == "Echo: a b c"

    openai_mock.reset()
    events, _ = stream(gateway, {"model": "gpt", "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "a"}]})
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] > 0


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-anything", max_retries=0, timeout=30)


@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_openai_sdk_streaming(client, model):
    pieces, usage = [], None
    with client.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "hello streaming world"}]) as response:
        for chunk in response:
            if chunk.usage:
                usage = chunk.usage
            pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(pieces) == "Echo: hello streaming world"
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_openai_sdk_raises_on_mid_stream_error(client, anthropic_mock):
    events = message_events(AnthropicMock.message("cut"))
    anthropic_mock.enqueue(StreamEvents(events[:4] + [("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}})]))
    with pytest.raises(openai.APIError, match="Internal"):
        for _ in client.chat.completions.create(model="claude", stream=True, messages=[{"role": "user", "content": "x"}]):
            pass


def test_openai_sdk_tool_loop_streaming(client, anthropic_mock):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    anthropic_mock.enqueue(StreamEvents(message_events(AnthropicMock.message(
        tool_use_block("lookup", {"q": "switchyard"}, id="toolu_loop"), stop_reason="tool_use"))))
    calls = {}
    for chunk in client.chat.completions.create(model="claude", stream=True, tools=tools,
                                                messages=[{"role": "user", "content": "look up switchyard"}]):
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.id or entry["id"]
            entry["name"] = (call.function.name if call.function else None) or entry["name"]
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert calls == {0: {"id": "toolu_loop", "name": "lookup", "arguments": '{"q":"switchyard"}'}}
    # Second turn: the strict mock checks the tool_use/tool_result pairing.
    anthropic_mock.reset()
    reply = client.chat.completions.create(model="claude", tools=tools, messages=[
        {"role": "user", "content": "look up switchyard"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_loop", "type": "function", "function": {"name": "lookup", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": "toolu_loop", "content": "an LLM gateway inside Envoy"},
    ])
    assert reply.choices[0].message.content == "Echo: an LLM gateway inside Envoy"
    assert anthropic_mock.rejections == []
