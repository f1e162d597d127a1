"""Requests through the real Envoy + switchyard.wasm to strict mock providers:
what the provider received, and what the client got back."""

from __future__ import annotations

import base64
import json
import time

from conftest import ANTHROPIC_KEY, OPENAI_KEY
from mockproviders import Reply
from mockproviders.anthropic import AnthropicMock, text_block, thinking_block, tool_use_block


def only_request(mock):
    """The single request the mock got, and that it accepted it."""
    assert len(mock.requests) == 1, mock.requests
    assert mock.rejections == [], mock.rejections
    return mock.requests[0]


def test_anthropic_chat_is_translated_both_ways(gateway, anthropic_mock):
    before = int(time.time())
    r = gateway.chat({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "second question"},
        ],
    })
    assert r.status_code == 200, r.text
    sent = only_request(anthropic_mock)
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "first question"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
    }
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("msg_")
    assert before <= body["created"] <= int(time.time()) + 1
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system_fingerprint"] is None
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "Echo: second question", "refusal": None}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert r.headers["content-length"] == str(len(r.content))


def test_sampling_parameters_and_limits(gateway, anthropic_mock):
    r = gateway.chat({
        "model": "claude", "messages": [{"role": "user", "content": "count one two three four"}],
        "temperature": 0.4, "top_p": 0.8, "max_tokens": 100, "max_completion_tokens": 60, "stop": ["three", " "],
    })
    assert r.status_code == 200, r.text
    sent = only_request(anthropic_mock).json
    # claude-sonnet-4-5 takes temperature or top_p, not both (src/providers/models.rs).
    assert (sent["temperature"], "top_p" in sent, sent["max_tokens"]) == (0.4, False, 60)
    assert r.headers["x-switchyard-dropped-params"] == "top_p"
    assert sent["stop_sequences"] == ["three"], "whitespace-only stop sequences are dropped (Anthropic rejects them)"
    # The mock stops at the sequence like the real API does.
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    assert "three" not in r.json()["choices"][0]["message"]["content"]


def test_max_tokens_truncation_is_length(gateway, anthropic_mock):
    r = gateway.chat({"model": "claude", "max_tokens": 2,
                      "messages": [{"role": "user", "content": "a long enough sentence to be cut"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_usage_counts_cache_tokens_as_prompt_tokens(gateway, anthropic_mock):
    anthropic_mock.enqueue(Reply(200, AnthropicMock.message(
        "cached answer", input_tokens=10, output_tokens=4, cache_creation_input_tokens=100, cache_read_input_tokens=200)))
    r = gateway.chat({"model": "claude", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (310, 4, 314)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 200
    assert usage["cache_creation_input_tokens"] == 100


def test_tool_calling_round_trip(gateway, anthropic_mock):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    anthropic_mock.enqueue(Reply(200, AnthropicMock.message(
        text_block("Checking."), tool_use_block("get_weather", {"city": "Paris"}, id="toolu_01abc"),
        stop_reason="tool_use")))
    first = gateway.chat({"model": "claude", "tools": tools, "tool_choice": "required",
                          "messages": [{"role": "user", "content": "Weather in Paris?"}]})
    assert first.status_code == 200, first.text
    sent = only_request(anthropic_mock).json
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call == {"id": "toolu_01abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}

    anthropic_mock.reset()
    second = gateway.chat({"model": "claude", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ]})
    assert second.status_code == 200, second.text
    sent = only_request(anthropic_mock).json  # the strict mock checks tool_use/tool_result pairing
    assert sent["messages"][1]["content"][1] == {
        "type": "tool_use", "id": "toolu_01abc", "name": "get_weather", "input": {"city": "Paris"}}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01abc", "content": [{"type": "text", "text": "18C and sunny"}]}]}


def test_thinking_is_surfaced_as_reasoning_content(gateway, anthropic_mock):
    anthropic_mock.enqueue(Reply(200, AnthropicMock.message(thinking_block("Let me think."), text_block("42"))))
    r = gateway.chat({"model": "claude", "reasoning_effort": "low", "messages": [{"role": "user", "content": "?"}]})
    assert r.status_code == 200, r.text
    assert only_request(anthropic_mock).json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    message = r.json()["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("42", "Let me think.")


def test_images_inline_and_by_url(gateway, anthropic_mock):
    png = base64.b64encode(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f3e3d40000000049454e44ae426082")).decode()
    r = gateway.chat({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]})
    assert r.status_code == 200, r.text
    blocks = only_request(anthropic_mock).json["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


def test_large_body_above_envoy_default_buffer_fits(gateway, anthropic_mock):
    # 4 MiB of text: well above Envoy's 1 MiB default buffer, below the shipped 20 MiB.
    text = "lorem ipsum " * (4 * 1024 * 1024 // 12)
    r = gateway.chat({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text[:500]
    assert len(only_request(anthropic_mock).body) > 4 * 1024 * 1024


def test_params_anthropic_lacks_are_dropped_and_reported(gateway, anthropic_mock):
    r = gateway.chat({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
                      "seed": 7, "presence_penalty": 0.1, "logit_bias": {"1": 1}, "store": False})
    assert r.status_code == 200, r.text
    sent = only_request(anthropic_mock).json
    for param in ("seed", "presence_penalty", "logit_bias", "store"):
        assert param not in sent
    assert set(r.headers["x-switchyard-dropped-params"].split(",")) == {"seed", "presence_penalty", "logit_bias", "store"}


def test_openai_compatible_passthrough_rewrites_model_only(gateway, openai_mock):
    request = {"model": "gpt", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.3,
               "logit_bias": {"50256": -100}, "seed": 1}
    r = gateway.chat(request)
    assert r.status_code == 200, r.text
    sent = only_request(openai_mock)
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.json == {**request, "model": "gpt-4o-mini"}
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Echo: hello"
    assert "x-switchyard-dropped-params" not in r.headers


def test_openai_compatible_base_path_and_model_passthrough(gateway, openai_prefixed_mock):
    r = gateway.chat({"model": "gpt-prefixed", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    sent = only_request(openai_prefixed_mock)
    assert sent.path == "/compat/v1/chat/completions"
    assert sent.json["model"] == "gpt-prefixed", "no deployment model configured: the alias is sent as is"


def test_models_endpoints(gateway):
    listing = gateway.client.get("/v1/models")
    assert listing.status_code == 200
    ids = [m["id"] for m in listing.json()["data"]]
    assert ids == ["claude", "gpt", "gpt-prefixed", "claude-slow", "unreachable", "keyless", "gemini", "gemini-3",
                   "gemini-badkey", "gemini-embed", "azure", "azure-v1", "azure-embed", "gpt-embed", "gpt-instruct",
                   "groq", "claude-drop", "claude-strict"], "every configured model, in configuration order"
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in listing.json()["data"])
    one = gateway.client.get("/v1/models/claude")
    assert one.status_code == 200 and one.json()["id"] == "claude"


def test_requests_without_v1_prefix(gateway, openai_mock):
    r = gateway.client.post("/chat/completions", content=json.dumps(
        {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
    assert r.status_code == 200, r.text


def test_openai_compatible_stream_passes_through_unchanged(gateway, openai_mock):
    with gateway.client.stream("POST", "/v1/chat/completions", json={
            "model": "gpt", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "one two three"}]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Echo: one two three"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert only_request(openai_mock).json["model"] == "gpt-4o-mini"
