"""Self-test of tools/mockproviders: the mocks must refuse what the real APIs refuse, answer in
the real wire formats, and misbehave exactly as scripted.

Run: cd /work/main && PYTHONPATH=tools .venv/bin/python -m pytest tests/mockproviders_selftest -q
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mockproviders import Default, Delay, Hang, Reply, Reset, ResetMidBody, StreamEvents
from mockproviders.anthropic import (AnthropicMock, anthropic_error_body, message_events, redacted_thinking_block, sse,
                                     text_block, thinking_block, tool_use_block)
from mockproviders.openai import OpenAIMock, completion_chunks, openai_error_body, tool_call
from mockproviders.openai import sse as openai_sse

try:  # the Anthropic SDK is an optional cross-check: it is not in tools/requirements.txt
    import anthropic
    from anthropic.types import Message
except ImportError:
    anthropic = None

needs_anthropic_sdk = pytest.mark.skipif(anthropic is None, reason="anthropic SDK (2.12.0) not installed")

REPO = Path(__file__).resolve().parents[2]
ANTHROPIC_KEY = "test-anthropic-key"
OPENAI_KEY = "test-openai-key"
ANTHROPIC_HEADERS = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": f"Bearer {OPENAI_KEY}"}

PNG_1X1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
PDF_B64 = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF").decode()
JPEG_B64 = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16).decode()


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anthropic_server():
    with AnthropicMock() as mock:
        yield mock


@pytest.fixture
def amock(anthropic_server):
    anthropic_server.reset()
    yield anthropic_server
    anthropic_server.reset()


def a_body(**overrides) -> dict:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello there"}]}
    body.update(overrides)
    return body


def o_body(**overrides) -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
    body.update(overrides)
    return body


def post_anthropic(http, mock, body, headers=ANTHROPIC_HEADERS, path="/v1/messages"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(mock.base_url + path, content=content, headers={"content-type": "application/json", **headers})


def post_openai(http, mock, body, headers=OPENAI_HEADERS, path="/v1/chat/completions"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(mock.base_url + path, content=content, headers={"content-type": "application/json", **headers})


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name = next((line[7:] for line in frame.splitlines() if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in frame.splitlines() if line.startswith("data: "))
        events.append((name, data))
    return events


def assert_anthropic_message(body: dict) -> None:
    """The body is a Messages API response; with the SDK installed, exactly its `Message` type."""
    assert body["type"] == "message" and body["role"] == "assistant"
    if anthropic is not None:
        Message.model_validate(body)


def raw_exchange(mock, request: bytes) -> tuple[bytes, BaseException | None]:
    """Send raw bytes and read until EOF or error; returns (bytes received, error)."""
    with socket.create_connection(("127.0.0.1", mock.port), timeout=3) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as error:
            return received, error
        return received, None


def raw_anthropic_request(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in ANTHROPIC_HEADERS.items())
    return (f"POST /v1/messages HTTP/1.1\r\nHost: mock\r\n{head}content-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n").encode() + payload


def tools(*names: str) -> list[dict]:
    return [{"name": name, "description": f"{name} tool", "input_schema": {"type": "object", "properties": {}}}
            for name in names or ("get_weather",)]


def tool_round_trip(tool_id: str = "toolu_01A") -> list[dict]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": tool_id, "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "18C"},
                                     {"type": "text", "text": "And tomorrow?"}]},
    ]


def with_messages(*messages: dict, **overrides) -> dict:
    return a_body(messages=list(messages), **overrides)


def user(content) -> dict:
    return {"role": "user", "content": content}


def assistant(content) -> dict:
    return {"role": "assistant", "content": content}


def image(source: dict) -> dict:
    return {"type": "image", "source": source}


# ----------------------------------------------------------------------------------------------
# Anthropic: every rejection rule gets the API's status, error type and message
# ----------------------------------------------------------------------------------------------

BLOCK_TAGS = ("'text', 'image', 'document', 'search_result', 'thinking', 'redacted_thinking', 'tool_use', "
              "'tool_result', 'server_tool_use'")
TOOL_ID_MISSING = ("`tool_use` ids were found without `tool_result` blocks immediately after: toolu_01A. Each "
                   "`tool_use` block must have a corresponding `tool_result` block in the next message.")

ANTHROPIC_BODY_REJECTIONS = [
    # (case id, body, expected message; a trailing "..." means "starts with")
    ("not-json", b"{not json", "The request body is not valid JSON: Expecting property name enclosed in double "
                               "quotes: line 1 column 2 (char 1)"),
    ("empty-body", b"", "The request body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    ("array-body", [a_body()], "Input should be a valid dictionary"),
    ("missing-model", {"max_tokens": 10, "messages": [user("hi")]}, "model: Field required"),
    ("missing-max-tokens", {"model": "m", "messages": [user("hi")]}, "max_tokens: Field required"),
    ("missing-messages", {"model": "m", "max_tokens": 10}, "messages: Field required"),
    ("model-not-string", a_body(model=5), "model: Input should be a valid string"),
    ("max-tokens-string", a_body(max_tokens="100"), "max_tokens: Input should be a valid integer"),
    ("max-tokens-bool", a_body(max_tokens=True), "max_tokens: Input should be a valid integer"),
    ("max-tokens-float", a_body(max_tokens=10.5), "max_tokens: Input should be a valid integer"),
    ("max-tokens-negative", a_body(max_tokens=-1), "max_tokens: Input should be greater than or equal to 0"),
    ("messages-object", a_body(messages={"role": "user"}), "messages: Input should be a valid list"),
    *[(f"openai-field-{name}", a_body(**{name: value}), f"{name}: Extra inputs are not permitted")
      for name, value in [("n", 1), ("seed", 7), ("logprobs", True), ("top_logprobs", 2), ("presence_penalty", 0.1),
                          ("frequency_penalty", 0.1), ("logit_bias", {}), ("response_format", {"type": "text"}),
                          ("stream_options", {"include_usage": True}), ("user", "u1"),
                          ("max_completion_tokens", 10), ("parallel_tool_calls", False), ("tool_calls", []),
                          ("stop", ["x"]), ("reasoning_effort", "low"), ("context_management", {}),
                          ("mcp_servers", []), ("output_format", {})]],
    ("temperature-high", a_body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
    ("temperature-negative", a_body(temperature=-0.1), "temperature: Input should be greater than or equal to 0"),
    ("temperature-string", a_body(temperature="0.5"), "temperature: Input should be a valid number"),
    ("top-p-high", a_body(top_p=1.01), "top_p: Input should be less than or equal to 1"),
    ("top-k-negative", a_body(top_k=-1), "top_k: Input should be greater than or equal to 0"),
    ("top-k-float", a_body(top_k=1.5), "top_k: Input should be a valid integer"),
    ("stream-string", a_body(stream="yes"), "stream: Input should be a valid boolean"),
    ("stop-sequences-string", a_body(stop_sequences="END"), "stop_sequences: Input should be a valid list"),
    ("stop-sequence-number", a_body(stop_sequences=[1]), "stop_sequences.0: Input should be a valid string"),
    ("stop-sequence-blank", a_body(stop_sequences=["ok", "  "]),
     "stop_sequences: each stop sequence must contain non-whitespace"),
    ("metadata-extra", a_body(metadata={"user_id": "u", "email": "a@b.c"}),
     "metadata.email: Extra inputs are not permitted"),
    ("metadata-user-id-int", a_body(metadata={"user_id": 5}), "metadata.user_id: Input should be a valid string"),
    ("metadata-list", a_body(metadata=[]), "metadata: Input should be a valid dictionary"),
    ("system-number", a_body(system=5), "system: Input should be a valid list"),
    ("system-image-block", a_body(system=[image({"type": "url", "url": "https://x/y.png"})]),
     "system.0.type: Input should be 'text'"),
    ("system-empty-text", a_body(system=[{"type": "text", "text": ""}]),
     "system: text content blocks must be non-empty"),
    ("system-cache-control-extra", a_body(system=[{"type": "text", "text": "x",
                                                   "cache_control": {"type": "ephemeral", "scope": "global"}}]),
     "system.0.cache_control.ephemeral.scope: Extra inputs are not permitted"),
    ("cache-control-ttl", a_body(system=[{"type": "text", "text": "x",
                                          "cache_control": {"type": "ephemeral", "ttl": "2h"}}]),
     "system.0.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"),
    ("service-tier", a_body(service_tier="priority"), "service_tier: Input should be 'auto' or 'standard_only'"),
    ("output-config-effort", a_body(output_config={"effort": "extreme"}),
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    # messages: shape
    ("messages-empty", a_body(messages=[]), "messages: at least one message is required"),
    *[(f"role-{role}", a_body(messages=[{"role": role, "content": "x"}]),
       "messages.0.role: Input should be 'user' or 'assistant'") for role in ("system", "tool", "developer")],
    ("message-missing-role", a_body(messages=[{"content": "x"}]), "messages.0.role: Field required"),
    ("message-missing-content", a_body(messages=[{"role": "user"}]), "messages.0.content: Field required"),
    *[(f"message-extra-{name}", a_body(messages=[{"role": "user", "content": "x", name: value}]),
       f"messages.0.{name}: Extra inputs are not permitted")
      for name, value in [("name", "bob"), ("tool_call_id", "c1"), ("tool_calls", []), ("reasoning_content", "")]],
    ("message-content-null", with_messages(user(None)), "messages.0.content: Input should be a valid list"),
    ("message-content-empty-string", with_messages(user(""), assistant("ok"), user("x")),
     "messages.0: all messages must have non-empty content except for the optional final assistant message"),
    ("message-content-empty-list", with_messages(user([])),
     "messages.0: all messages must have non-empty content except for the optional final assistant message"),
    ("empty-text-block", with_messages(user([text_block("")])), "messages: text content blocks must be non-empty"),
    ("blank-text-block", with_messages(user([text_block(" \n")])),
     "messages: text content blocks must contain non-whitespace text"),
    ("prefill-trailing-space", with_messages(user("hi"), assistant("The answer is ")),
     "messages: final assistant content cannot end with trailing whitespace"),
    # messages: blocks
    ("block-openai-image-url", with_messages(user([{"type": "image_url", "image_url": {"url": "https://x"}}])),
     f"messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected "
     f"tags: {BLOCK_TAGS}..."),
    ("block-without-type", with_messages(user([{"text": "hi"}])),
     "messages.0.content.0: Unable to extract tag using discriminator 'type'"),
    ("block-not-object", with_messages(user(["hi"])), "messages.0.content.0: Input should be a valid dictionary"),
    ("text-block-extra", with_messages(user([{"type": "text", "text": "hi", "cache": True}])),
     "messages.0.content.0.text.cache: Extra inputs are not permitted"),
    ("text-block-missing-text", with_messages(user([{"type": "text"}])),
     "messages.0.content.0.text.text: Field required"),
    ("image-media-type", with_messages(user([image({"type": "base64", "media_type": "image/bmp", "data": PNG_1X1})])),
     "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
     "or 'image/webp'"),
    ("image-data-url-left-in", with_messages(user([image({"type": "base64", "media_type": "image/png",
                                                           "data": "data:image/png;base64," + PNG_1X1})])),
     "messages.0.content.0.image.source.base64.data: Invalid base64 data"),
    ("image-not-an-image", with_messages(user([image({"type": "base64", "media_type": "image/png",
                                                       "data": base64.b64encode(b"hello").decode()})])),
     "messages.0.content.0.image.source.base64: Could not process image"),
    ("image-media-type-lies", with_messages(user([image({"type": "base64", "media_type": "image/jpeg",
                                                          "data": PNG_1X1})])),
     "messages.0.content.0.image.source.base64.data: The image was specified using the image/jpeg media type, "
     "but the image appears to be a image/png image"),
    ("image-source-kind", with_messages(user([image({"type": "image_url", "url": "https://x/y.png"})])),
     "messages.0.content.0.image.source: Input tag 'image_url' found using 'type' does not match any of the "
     "expected tags: 'base64', 'url', 'file'"),
    ("document-media-type", with_messages(user([{"type": "document", "source": {
        "type": "base64", "media_type": "application/msword", "data": PDF_B64}}])),
     "messages.0.content.0.document.source.base64.media_type: Input should be 'application/pdf'"),
    ("server-tool-block", with_messages(user("hi"), assistant([{"type": "server_tool_use", "id": "srvtoolu_1",
                                                                 "name": "web_search", "input": {}}])),
     "messages.1.content.0: type 'server_tool_use' is valid for the real API but not supported by this mock"),
    ("tool-use-bad-id", with_messages(user("hi"), assistant([tool_use_block("get_weather", {}, id="call abc")]),
                                      user([{"type": "tool_result", "tool_use_id": "call abc"}]), tools=tools()),
     "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"),
    ("tool-use-input-string", with_messages(user("hi"), assistant([{"type": "tool_use", "id": "toolu_01A",
                                                                     "name": "get_weather", "input": "{}"}]),
                                            tools=tools()),
     "messages.1.content.0.tool_use.input: Input should be a valid dictionary"),
    ("tool-use-in-user-turn", with_messages(user([tool_use_block("get_weather", {}, id="toolu_01A")]), tools=tools()),
     "messages.0.content.0: `tool_use` blocks can only be in `assistant` messages"),
    ("tool-result-in-assistant-turn", with_messages(user("hi"), assistant([{"type": "tool_result",
                                                                             "tool_use_id": "toolu_01A"}]),
                                                    tools=tools()),
     "messages.1.content.0: `tool_result` blocks can only be in `user` messages"),
    ("thinking-in-user-turn", with_messages(user([thinking_block("hmm", "sig")])),
     "messages.0.content.0: `thinking` blocks can only be in `assistant` messages"),
    ("tool-result-is-error-string", with_messages(*tool_round_trip()[:2], user([{
        "type": "tool_result", "tool_use_id": "toolu_01A", "is_error": "yes"}]), tools=tools()),
     "messages.2.content.0.tool_result.is_error: Input should be a valid boolean"),
    # conversation rules
    ("tool-blocks-without-tools", with_messages(*tool_round_trip()),
     "Requests which include `tool_use` or `tool_result` blocks must define tools."),
    ("tool-use-unanswered", with_messages(*tool_round_trip()[:2], user("never mind"), tools=tools()),
     f"messages.2: {TOOL_ID_MISSING}"),
    ("tool-result-not-first", with_messages(*tool_round_trip()[:2], user([
        text_block("here:"), {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]), tools=tools()),
     f"messages.2: {TOOL_ID_MISSING}"),
    ("tool-use-last-message", with_messages(*tool_round_trip()[:2], tools=tools()), f"messages.1: {TOOL_ID_MISSING}"),
    ("tool-result-unknown-id", with_messages(*tool_round_trip()[:2], user([
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "?"}]), tools=tools()),
     "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01B. Each "
     "`tool_result` block must have a corresponding `tool_use` block in the previous message."),
    ("tool-result-first-message", with_messages(user([{"type": "tool_result", "tool_use_id": "toolu_01A"}]),
                                                tools=tools()),
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01A. Each "
     "`tool_result` block must have a corresponding `tool_use` block in the previous message."),
    # tools and tool_choice
    ("tool-name-space", a_body(tools=tools("get weather")),
     "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"),
    ("tool-name-too-long", a_body(tools=tools("x" * 129)),
     "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"),
    ("tool-openai-shape", a_body(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
     "tools.0: Input tag 'function' found using 'type' does not match any of the expected tags: 'custom', "
     "'bash_20250124'..."),
    ("tool-parameters-not-input-schema", a_body(tools=[{"name": "f", "parameters": {"type": "object"}}]),
     "tools.0.custom.input_schema: Field required"),
    ("tool-schema-without-type", a_body(tools=[{"name": "f", "input_schema": {"properties": {}}}]),
     "tools.0.custom.input_schema.type: Field required"),
    ("tool-schema-array", a_body(tools=[{"name": "f", "input_schema": {"type": "array"}}]),
     "tools.0.custom.input_schema.type: Input should be 'object'"),
    ("tool-extra-field", a_body(tools=[{**tools()[0], "parameters": {}}]),
     "tools.0.custom.parameters: Extra inputs are not permitted"),
    ("tool-server-type", a_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
     "tools.0: type 'web_search_20250305' is valid for the real API but not supported by this mock"),
    ("tool-names-duplicate", a_body(tools=tools("a", "a")), "tools: Tool names must be unique."),
    ("tool-choice-string", a_body(tools=tools(), tool_choice="auto"), "tool_choice: Input should be a valid dictionary"),
    ("tool-choice-required", a_body(tools=tools(), tool_choice={"type": "required"}),
     "tool_choice: Input tag 'required' found using 'type' does not match any of the expected tags: 'auto', 'any', "
     "'tool', 'none'"),
    ("tool-choice-tool-without-name", a_body(tools=tools(), tool_choice={"type": "tool"}),
     "tool_choice.tool.name: Field required"),
    ("tool-choice-parallel-flag", a_body(tools=tools(), tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
     "tool_choice.auto.disable_parallel_tool_use: Input should be a valid boolean"),
    ("tool-choice-none-extra", a_body(tools=tools(), tool_choice={"type": "none", "disable_parallel_tool_use": True}),
     "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"),
    ("tool-choice-unknown-tool", a_body(tools=tools(), tool_choice={"type": "tool", "name": "nope"}),
     "tool_choice.tool.name: Tool 'nope' not found in `tools`"),
    ("tool-choice-without-tools", a_body(tool_choice={"type": "auto"}),
     "tool_choice may only be specified while providing tools"),
    # thinking
    ("thinking-small-budget", a_body(thinking={"type": "enabled", "budget_tokens": 512}),
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ("thinking-no-budget", a_body(thinking={"type": "enabled"}), "thinking.enabled.budget_tokens: Field required"),
    ("thinking-unknown-type", a_body(thinking={"type": "on"}),
     "thinking: Input tag 'on' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', "
     "'adaptive', 'between_tools'"),
    ("thinking-budget-not-below-max", a_body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 2048}),
     "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
     "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"),
    ("thinking-forced-tool", a_body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024},
                                    tools=tools(), tool_choice={"type": "any"}),
     "Thinking may not be enabled when tool_choice forces tool use."),
    ("thinking-temperature", a_body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024},
                                    temperature=0.2),
     "`temperature` may only be set to 1 when thinking is enabled."),
    ("thinking-top-k", a_body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, top_k=5),
     "`top_k` may not be set when thinking is enabled."),
    ("thinking-top-p-low", a_body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, top_p=0.9),
     "`top_p` must be between 0.95 and 1 when thinking is enabled."),
    ("thinking-tool-loop-without-its-blocks", with_messages(
        user("Weather?"), assistant([text_block("Checking."), tool_use_block("get_weather", {}, id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]),
        max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools()),
     "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is "
     "enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of "
     "`tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid "
     "this requirement, disable `thinking`. Please consult our documentation at "
     "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"),
    ("thinking-prefill", with_messages(user("Hi"), assistant("Well"), model="claude-sonnet-4-5", max_tokens=4096,
                                       thinking={"type": "enabled", "budget_tokens": 1024}),
     "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`..."),
    ("thinking-forged-signature", with_messages(
        user("Weather?"), assistant([thinking_block("Need a tool.", "EqForged"), tool_use_block("get_weather", {},
                                                                                                 id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]),
        max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools()),
     "messages.1.content.0: Invalid `signature` in `thinking` block"),
    ("thinking-altered-text", with_messages(
        user("Weather?"), assistant([{**thinking_block("Need a tool."), "thinking": "Need a tool!"},
                                     tool_use_block("get_weather", {}, id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]),
        max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools()),
     "messages.1.content.0: Invalid `signature` in `thinking` block"),
    ("thinking-block-last-in-turn", with_messages(user("Hi"), assistant([text_block("Hm."), thinking_block("x")]),
                                                  user("go on")),
     "messages.1: The final block in an assistant message cannot be `thinking`."),
    ("thinking-in-final-assistant-without-thinking", with_messages(
        user("Hi"), assistant([thinking_block("x"), text_block("Well")]), model="claude-sonnet-4-5"),
     "messages.1.content.0: When thinking is disabled, an `assistant` message in the final position cannot contain "
     "`thinking`. To use thinking blocks, enable `thinking` in your request."),
    # Per-model rules
    ("temperature-and-top-p-on-sonnet-4-5", a_body(model="claude-sonnet-4-5", temperature=0.3, top_p=0.8),
     "`temperature` and `top_p` cannot both be specified for this model. Please use only one."),
    ("temperature-and-top-p-on-haiku-4-5", a_body(model="claude-haiku-4-5-20251001", temperature=0.3, top_p=0.8),
     "`temperature` and `top_p` cannot both be specified for this model. Please use only one."),
    *[(f"{name}-on-opus-4-7", a_body(model="claude-opus-4-7", **{name: value}), f"`{name}` is deprecated for this model.")
      for name, value in [("temperature", 0.5), ("top_p", 0.9), ("top_k", 5)]],
    ("budget-thinking-on-opus-4-7", a_body(model="claude-opus-4-7", max_tokens=4096,
                                           thinking={"type": "enabled", "budget_tokens": 1024}),
     "thinking.type: `enabled` thinking is not supported for this model. Use `adaptive` thinking with "
     "`output_config.effort` instead."),
    ("adaptive-thinking-on-sonnet-4-5", a_body(model="claude-sonnet-4-5", thinking={"type": "adaptive"}),
     "thinking.type: `adaptive` thinking is not supported for this model..."),
    ("thinking-on-claude-3-5", a_body(model="claude-3-5-haiku-20241022", max_tokens=4096,
                                      thinking={"type": "enabled", "budget_tokens": 1024}),
     "thinking.type: `enabled` thinking is not supported for this model."),
    ("disabled-thinking-on-fable", a_body(model="claude-fable-5", thinking={"type": "disabled"}),
     "thinking.type: `disabled` is not supported for this model; omit `thinking` instead."),
    ("forced-tool-on-fable-5-1", a_body(model="claude-fable-5-1", tools=tools(), tool_choice={"type": "any"}),
     "tool_choice: this model does not support forced tool use; use `auto`."),
    ("prefill-on-sonnet-4-6", with_messages(user("Capital of France?"), assistant("The capital is")),
     "This model does not support assistant message prefill. The conversation must end with a user message."),
    ("prefill-on-opus-4-8", with_messages(user("Capital of France?"), assistant("The capital is"),
                                          model="claude-opus-4-8"),
     "This model does not support assistant message prefill. The conversation must end with a user message."),
]


@pytest.mark.parametrize("body, message", [case[1:] for case in ANTHROPIC_BODY_REJECTIONS],
                         ids=[case[0] for case in ANTHROPIC_BODY_REJECTIONS])
def test_anthropic_rejects_invalid_bodies(http, amock, body, message):
    response = post_anthropic(http, amock, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    if message.endswith("..."):
        assert error["error"]["message"].startswith(message[:-3])
    else:
        assert error["error"]["message"] == message
    assert error["request_id"] == response.headers["request-id"]
    assert amock.rejections == [(400, error)]


ANTHROPIC_HEADER_REJECTIONS = [
    ("missing-key", {"anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"),
    ("wrong-key", {"x-api-key": "nope", "anthropic-version": "2023-06-01"}, 401, "authentication_error",
     "invalid x-api-key"),
    ("wrong-bearer-key", {"authorization": "Bearer nope", "anthropic-version": "2023-06-01"}, 401,
     "authentication_error", "invalid x-api-key"),
    ("missing-version", {"x-api-key": ANTHROPIC_KEY}, 400, "invalid_request_error",
     "anthropic-version: header is required"),
    ("unknown-version", {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2024-10-22"}, 400,
     "invalid_request_error", 'anthropic-version: "2024-10-22" is not a valid version'),
    ("unknown-beta", {**ANTHROPIC_HEADERS, "anthropic-beta": "prompt-caching-2024-07-31,made-up-2099-01-01"}, 400,
     "invalid_request_error", "Unexpected value(s) `made-up-2099-01-01` for the `anthropic-beta` header. Please "
                              "consult our documentation at docs.anthropic.com or try again without the header."),
]


@pytest.mark.parametrize("headers, status, error_type, message", [case[1:] for case in ANTHROPIC_HEADER_REJECTIONS],
                         ids=[case[0] for case in ANTHROPIC_HEADER_REJECTIONS])
def test_anthropic_rejects_bad_headers(http, amock, headers, status, error_type, message):
    response = post_anthropic(http, amock, a_body(), headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == {"type": error_type, "message": message}


def test_anthropic_duplicated_version_header_is_one_invalid_value(amock):
    # A gateway that appends instead of replacing the header gets what the real API answers.
    connection = HTTPConnection("127.0.0.1", amock.port, timeout=5)
    connection.putrequest("POST", "/v1/messages")
    for name, value in [("x-api-key", ANTHROPIC_KEY), ("anthropic-version", "2023-06-01"),
                        ("anthropic-version", "2023-06-01")]:
        connection.putheader(name, value)
    payload = json.dumps(a_body()).encode()
    connection.putheader("content-length", str(len(payload)))
    connection.endheaders(payload)
    response = connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"]["message"] == \
        'anthropic-version: "2023-06-01, 2023-06-01" is not a valid version'
    connection.close()


@pytest.mark.parametrize("method, path", [("GET", "/v1/messages"), ("POST", "/v1/complete"),
                                          ("POST", "/v1/chat/completions"), ("GET", "/")])
def test_anthropic_unknown_routes_are_not_found(http, amock, method, path):
    response = http.request(method, amock.base_url + path, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "Not Found"}
    assert response.headers["request-id"].startswith("req_")


ANTHROPIC_ACCEPTED = [
    ("minimal", a_body()),
    ("every-optional-field", a_body(
        model="claude-sonnet-4-20250514", system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        metadata={"user_id": "3f1c"}, stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=40,
        tools=tools(), tool_choice={"type": "auto", "disable_parallel_tool_use": True}, thinking={"type": "disabled"},
        service_tier="standard_only", output_config={"effort": "low", "format": {"type": "json_schema", "schema": {
            "type": "object"}}}, stream=False, cache_control={"type": "ephemeral"}, inference_geo=None)),
    ("system-string", a_body(system="You are terse.")),
    ("tool-round-trip", with_messages(*tool_round_trip(), tools=tools())),
    ("parallel-tool-results", with_messages(
        user("Paris and Rome?"),
        assistant([tool_use_block("get_weather", {"city": "Paris"}, id="toolu_01A"),
                   tool_use_block("get_weather", {"city": "Rome"}, id="toolu_01B")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01B", "content": [text_block("21C")]},
              {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C", "is_error": False}]),
        tools=tools(), tool_choice={"type": "tool", "name": "get_weather"})),
    ("tool-type-custom-and-null", a_body(tools=[{**tools("a")[0], "type": "custom"}, {**tools("b")[0], "type": None}])),
    ("images-and-documents", with_messages(user([
        image({"type": "base64", "media_type": "image/png", "data": PNG_1X1}),
        image({"type": "base64", "media_type": "image/jpeg", "data": JPEG_B64}),
        image({"type": "url", "url": "https://example.com/cat.png"}),
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        text_block("Describe these.")]))),
    ("thinking-history", with_messages(
        user("Weather?"),
        assistant([thinking_block("Need a tool."), redacted_thinking_block("abc"),
                   tool_use_block("get_weather", {}, id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]),
        max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools())),
    ("adaptive-thinking", a_body(thinking={"type": "adaptive", "display": "summarized"})),
    ("consecutive-user-turns", with_messages(user("one"), user("two"))),
    ("prefill", with_messages(user("Capital of France?"), assistant("The capital is"), model="claude-sonnet-4-5")),
    ("empty-final-assistant", with_messages(user("Hi"), assistant(""))),
    # Per-model rules: what each family does accept.
    ("temperature-and-top-p-on-claude-4", a_body(model="claude-opus-4-20250514", temperature=0.3, top_p=0.8)),
    ("default-temperature-on-opus-4-7", a_body(model="claude-opus-4-7", temperature=1)),
    ("adaptive-thinking-on-opus-4-7", a_body(model="claude-opus-4-7", thinking={"type": "adaptive"},
                                             output_config={"effort": "xhigh"})),
    ("budget-thinking-on-sonnet-4-6", a_body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})),
    ("thinking-with-top-p-095", a_body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                                       top_p=0.95)),
    ("forced-tool-on-fable-5", a_body(model="claude-fable-5", tools=tools(), tool_choice={"type": "any"})),
    ("thinking-tool-loop-with-its-blocks", with_messages(
        user("Weather?"), assistant([thinking_block("Need a tool."), tool_use_block("get_weather", {}, id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]),
        max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools())),
    ("thinking-blocks-ignored-before-the-final-turn-without-thinking", with_messages(
        user("Weather?"), assistant([thinking_block("Need a tool."), tool_use_block("get_weather", {}, id="toolu_01A")]),
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]), tools=tools())),
]


@pytest.mark.parametrize("body", [case[1] for case in ANTHROPIC_ACCEPTED], ids=[case[0] for case in ANTHROPIC_ACCEPTED])
def test_anthropic_accepts_valid_requests(http, amock, body):
    response = post_anthropic(http, amock, body)
    assert response.status_code == 200, response.text
    assert_anthropic_message(response.json())
    assert amock.rejections == []


def test_anthropic_accepts_the_sdk_auth_and_version(http, amock):
    # anthropic-python 2.12.0 sends the key as a bearer token with anthropic-version 2026-10-21.
    headers = {"authorization": f"Bearer {ANTHROPIC_KEY}", "anthropic-version": "2026-10-21"}
    assert post_anthropic(http, amock, a_body(), headers=headers).status_code == 200


# ----------------------------------------------------------------------------------------------
# Anthropic: default replies
# ----------------------------------------------------------------------------------------------


def test_anthropic_default_reply_is_a_real_message(http, amock):
    response = post_anthropic(http, amock, a_body(system="Be nice.", messages=[user("Hello there")]))
    body = response.json()
    assert_anthropic_message(body)
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", body["id"])
    assert re.fullmatch(r"req_011C[0-9A-Za-z]{20}", response.headers["request-id"])
    assert response.headers["content-type"] == "application/json"
    assert body["model"] == "claude-sonnet-4-6"
    assert body["content"] == [{"type": "text", "text": "Echo: Hello there"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {"input_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                             "output_tokens": 3, "service_tier": "standard"}


def test_anthropic_echoes_last_user_text_blocks(http, amock):
    body = with_messages(user("first"), assistant("ok"), user([text_block("second"), text_block("third")]))
    assert post_anthropic(http, amock, body).json()["content"][0]["text"] == "Echo: second third"


def test_anthropic_echoes_tool_results_when_the_turn_has_no_text(http, amock):
    body = with_messages(*tool_round_trip()[:2], user([{"type": "tool_result", "tool_use_id": "toolu_01A",
                                                        "content": [text_block("18C and sunny")]}]), tools=tools())
    assert post_anthropic(http, amock, body).json()["content"][0]["text"] == "Echo: 18C and sunny"


def test_anthropic_stop_sequence_truncates(http, amock):
    body = post_anthropic(http, amock, a_body(messages=[user("alpha beta gamma")], stop_sequences=["gamma", "beta"])).json()
    assert body["content"][0]["text"] == "Echo: alpha "
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "beta")


def test_anthropic_max_tokens_truncates(http, amock):
    body = post_anthropic(http, amock, a_body(messages=[user("alpha beta gamma")], max_tokens=2)).json()
    assert body["content"][0]["text"] == "Echo: alpha"
    assert (body["stop_reason"], body["usage"]["output_tokens"]) == ("max_tokens", 2)


def test_anthropic_max_tokens_zero_generates_nothing(http, amock):
    body = post_anthropic(http, amock, a_body(max_tokens=0)).json()
    assert (body["content"], body["stop_reason"], body["usage"]["output_tokens"]) == ([], "max_tokens", 0)


def test_anthropic_reply_text_option(http):
    with AnthropicMock(api_key="k2", reply_text="Fixed answer.") as mock:
        response = post_anthropic(http, mock, a_body(), headers={"x-api-key": "k2", "anthropic-version": "2023-06-01"})
    assert response.json()["content"][0]["text"] == "Fixed answer."


def test_anthropic_stream_has_the_documented_event_sequence(http, amock):
    response = post_anthropic(http, amock, a_body(stream=True, messages=[user("one two three")]))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 4  # "Echo:", " one", " two", " three"
    payloads = [json.loads(data) for _, data in events]
    assert all(payload["type"] == name for (name, _), payload in zip(events, payloads))
    start = payloads[0]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == ([], None, 1)
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == "Echo: one two three"
    delta = payloads[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                              "output_tokens": 4}


def test_anthropic_stream_reports_stop_sequence(http, amock):
    response = post_anthropic(http, amock, a_body(stream=True, messages=[user("a b c")], stop_sequences=["c"]))
    delta = json.loads(parse_sse(response.text)[-2][1])
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "c"}


@needs_anthropic_sdk
def test_anthropic_sdk_round_trips_against_the_mock(amock):
    client = anthropic.Anthropic(base_url=amock.base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=[user("Hi SDK")])
    assert message.content[0].text == "Echo: Hi SDK"
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=[user("Hi stream")]) as stream:
        assert "".join(stream.text_stream) == "Echo: Hi stream"
        final = stream.get_final_message()
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 3)


@needs_anthropic_sdk
def test_anthropic_message_helper_builds_valid_tool_and_thinking_streams(amock):
    scripted = AnthropicMock.message(
        thinking_block("Let me check.", "sig-1"), text_block("Checking."),
        tool_use_block("get_weather", {"city": "Paris", "days": [1, 2]}, id="toolu_01X"),
        stop_reason="tool_use", input_tokens=50, cache_creation_input_tokens=7, cache_read_input_tokens=11)
    assert_anthropic_message(scripted)
    assert scripted["usage"]["cache_read_input_tokens"] == 11
    amock.enqueue(StreamEvents(message_events(scripted)))
    client = anthropic.Anthropic(base_url=amock.base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    with client.messages.stream(model="m", max_tokens=4096, messages=[user("Weather?")]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == "sig-1"
    assert final.content[2].input == {"city": "Paris", "days": [1, 2]}
    assert (final.stop_reason, final.usage.cache_creation_input_tokens) == ("tool_use", 7)


def test_anthropic_sse_helper_encodes_named_events():
    assert sse([("ping", {"type": "ping"}), b": comment\n\n"]) == b'event: ping\ndata: {"type":"ping"}\n\n: comment\n\n'


def test_anthropic_error_body_helper_has_the_api_shape():
    body = anthropic_error_body("overloaded_error", "Overloaded")
    assert body["type"] == "error" and body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert body["request_id"].startswith("req_")


# ----------------------------------------------------------------------------------------------
# Recording and HTTP behaviour (shared machinery)
# ----------------------------------------------------------------------------------------------


def test_every_request_is_recorded_including_rejected_ones(http, amock):
    post_anthropic(http, amock, a_body(n=2))
    post_anthropic(http, amock, a_body(), path="/v1/messages?beta=true")
    first, second = amock.requests
    assert (first.method, first.path, first.json["n"]) == ("POST", "/v1/messages", 2)
    assert first.headers["x-api-key"] == ANTHROPIC_KEY and "X-Api-Key" not in first.headers
    assert first.body == json.dumps(a_body(n=2)).encode()
    assert second.query == {"beta": ["true"]}
    assert [status for status, _ in amock.rejections] == [400]


def test_non_json_body_is_recorded_with_json_none(http, amock):
    post_anthropic(http, amock, b"\xff\xfe")
    assert amock.requests[0].json is None and amock.requests[0].body == b"\xff\xfe"


def test_chunked_request_bodies_are_read(amock):
    connection = HTTPConnection("127.0.0.1", amock.port, timeout=5)
    payload = json.dumps(a_body()).encode()
    connection.request("POST", "/v1/messages", body=iter([payload[:10], payload[10:]]),
                       headers={**ANTHROPIC_HEADERS, "transfer-encoding": "chunked"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    assert amock.requests[0].body == payload
    connection.close()


def test_connections_are_kept_alive_with_content_length(amock):
    connection = HTTPConnection("127.0.0.1", amock.port, timeout=5)
    for _ in range(2):
        connection.request("POST", "/v1/messages", body=json.dumps(a_body()), headers=ANTHROPIC_HEADERS)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200
        assert response.version == 11 and int(response.getheader("content-length")) == len(body)
        assert not response.will_close
    connection.close()


def test_concurrent_requests_are_all_served_and_recorded(amock):
    def ask(number: int) -> str:
        with httpx.Client(timeout=5) as client:
            return post_anthropic(client, amock, a_body(messages=[user(f"question {number}")])).json()["content"][0]["text"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, range(64)))
    assert answers == [f"Echo: question {number}" for number in range(64)]
    assert len(amock.requests) == 64


def test_reset_clears_requests_rejections_and_queue(http, amock):
    amock.enqueue(Reply(500, {}), Reply(500, {}))
    post_anthropic(http, amock, a_body(seed=1))
    amock.reset()
    assert (amock.requests, amock.rejections) == ([], [])
    assert post_anthropic(http, amock, a_body()).status_code == 200


def test_the_mock_logs_nothing(http, amock, capfd):
    post_anthropic(http, amock, a_body())
    post_anthropic(http, amock, a_body(seed=1))
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------------------------------
# Scripted actions
# ----------------------------------------------------------------------------------------------


def test_reply_sends_exactly_the_scripted_response(http, amock):
    error = anthropic_error_body("rate_limit_error", "Number of requests has exceeded your rate limit")
    amock.enqueue(Reply(429, error, headers={"retry-after": "7"}))
    response = post_anthropic(http, amock, a_body())
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (429, error, "7")
    assert response.headers["request-id"].startswith("req_")


def test_reply_with_raw_bytes_and_nonstandard_status(http, amock):
    amock.enqueue(Reply(529, body=b"upstream overloaded", headers={"content-type": "text/plain"}))
    response = post_anthropic(http, amock, a_body())
    assert (response.status_code, response.text, response.headers["content-type"]) == \
        (529, "upstream overloaded", "text/plain")


def test_validation_runs_before_scripted_actions(http, amock):
    amock.enqueue(Reply(200, {"scripted": True}))
    response = post_anthropic(http, amock, a_body(logit_bias={}))
    assert response.status_code == 400  # the scripted reply was consumed by the invalid request
    assert post_anthropic(http, amock, a_body()).json()["type"] == "message"


def test_validate_false_skips_validation(http, amock):
    amock.enqueue(Reply(200, {"scripted": True}, validate=False))
    assert post_anthropic(http, amock, b"garbage", headers={}).json() == {"scripted": True}


def test_actions_are_consumed_in_order_then_default_applies(http, amock):
    amock.enqueue(Reply(500, {"n": 1}), Default(), Reply(503, {"n": 3}))
    statuses = [post_anthropic(http, amock, a_body()).status_code for _ in range(4)]
    assert statuses == [500, 200, 503, 200]


def test_enqueue_refuses_non_actions(amock):
    with pytest.raises(TypeError):
        amock.enqueue({"status": 500})


def test_hang_sends_nothing_then_closes(amock):
    amock.enqueue(Hang(0.3))
    started = time.monotonic()
    received, error = raw_exchange(amock, raw_anthropic_request(a_body()))
    assert (received, error) == (b"", None)
    assert time.monotonic() - started >= 0.3


def test_hang_outlasts_a_client_timeout(amock):
    amock.enqueue(Hang(1.0))
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        post_anthropic(client, amock, a_body())


def test_close_interrupts_a_hang():
    mock = AnthropicMock()
    mock.enqueue(Hang(30))
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as sock:
        sock.sendall(raw_anthropic_request(a_body()))
        while not mock.requests:
            time.sleep(0.01)
        started = time.monotonic()
        mock.close()
        assert time.monotonic() - started < 2
        assert sock.recv(100) == b""
    mock.close()  # idempotent


def test_reset_aborts_with_rst(amock):
    amock.enqueue(Reset())
    received, error = raw_exchange(amock, raw_anthropic_request(a_body()))
    assert received == b"" and isinstance(error, ConnectionResetError)


def test_reset_mid_body_sends_a_truncated_body_then_rst(amock):
    amock.enqueue(ResetMidBody())
    received, error = raw_exchange(amock, raw_anthropic_request(a_body()))
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < length
    assert isinstance(error, ConnectionResetError)


def test_reset_mid_body_surfaces_as_a_read_error(http, amock):
    amock.enqueue(ResetMidBody())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post_anthropic(http, amock, a_body())


def test_delay_then_default(http, amock):
    amock.enqueue(Delay(0.3))
    started = time.monotonic()
    response = post_anthropic(http, amock, a_body())
    assert time.monotonic() - started >= 0.3
    assert response.json()["content"][0]["text"] == "Echo: Hello there"


def test_stream_events_are_paced_by_delay(amock):
    events = [("ping", {"type": "ping"})] * 3
    amock.enqueue(StreamEvents(events, delay=0.15))
    arrivals = []
    with httpx.Client(timeout=5) as client, client.stream(
            "POST", amock.base_url + "/v1/messages", json=a_body(stream=True), headers=ANTHROPIC_HEADERS) as response:
        for _ in response.iter_bytes():
            arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] >= 0.25


def test_stream_events_accept_raw_bytes(http, amock):
    amock.enqueue(StreamEvents(b"event: ping\ndata: {}\n\n"))
    assert post_anthropic(http, amock, a_body(stream=True)).text == "event: ping\ndata: {}\n\n"


def test_stream_then_reset_cuts_the_stream(amock):
    amock.enqueue(StreamEvents(message_events(AnthropicMock.message("partial answer"))[:3], then_reset=True))
    received = b""
    with httpx.Client(timeout=5) as client, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        with client.stream("POST", amock.base_url + "/v1/messages", json=a_body(stream=True),
                           headers=ANTHROPIC_HEADERS) as response:
            for chunk in response.iter_bytes():
                received += chunk
    assert [name for name, _ in parse_sse(received.decode())] == ["message_start", "content_block_start", "ping"]


# ----------------------------------------------------------------------------------------------
# OpenAI: rejections
# ----------------------------------------------------------------------------------------------

TOOL_FLOW = [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": None, "tool_calls": [tool_call("get_weather", {"city": "Paris"}, id="call_1")]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
]
O_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

OPENAI_REJECTIONS = [
    # (case id, body, message, param, code)
    ("not-json", b"{nope", None, None, None),
    ("array-body", [o_body()], None, None, None),
    ("unknown-field", o_body(thinking={"type": "enabled"}), "Unrecognized request argument supplied: thinking",
     None, None),
    ("unknown-fields", o_body(top_k=3, system="x"), "Unrecognized request arguments supplied: top_k, system",
     None, None),
    ("missing-model", {"messages": [user("hi")]}, "you must provide a model parameter", None, None),
    ("model-number", o_body(model=4), "Invalid type for 'model': expected a string, but got an integer instead.",
     "model", "invalid_type"),
    ("missing-messages", {"model": "gpt-4o"}, "Missing required parameter: 'messages'.", "messages",
     "missing_required_parameter"),
    ("messages-string", o_body(messages="hi"),
     "Invalid type for 'messages': expected an array, but got a string instead.", "messages", "invalid_type"),
    ("messages-empty", o_body(messages=[]), "Invalid 'messages': empty array. Expected an array with minimum length "
                                            "1, but got an empty array instead.", "messages", "empty_array"),
    ("message-not-object", o_body(messages=["hi"]),
     "Invalid type for 'messages[0]': expected an object, but got a string instead.", "messages[0]", "invalid_type"),
    ("missing-role", o_body(messages=[{"content": "hi"}]), "Missing required parameter: 'messages[0].role'.",
     "messages[0].role", "missing_required_parameter"),
    ("bad-role", o_body(messages=[{"role": "human", "content": "hi"}]),
     "Invalid value: 'human'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and "
     "'developer'.", "messages[0].role", "invalid_value"),
    ("user-without-content", o_body(messages=[{"role": "user"}]), "Missing required parameter: 'messages[0].content'.",
     "messages[0].content", "missing_required_parameter"),
    ("user-null-content", o_body(messages=[user(None)]), "Invalid value for 'content': expected a string, got null.",
     "messages.[0].content", None),
    ("tool-without-call-id", o_body(messages=[*TOOL_FLOW[:2], {"role": "tool", "content": "18C"}], tools=O_TOOLS),
     "Missing required parameter: 'messages[2].tool_call_id'.", "messages[2].tool_call_id",
     "missing_required_parameter"),
    ("assistant-without-content-or-calls", o_body(messages=[user("hi"), {"role": "assistant", "content": None},
                                                            user("?")]),
     "Invalid value for 'content': expected a string, got null.", "messages.[1].content", None),
    ("message-extra-field", o_body(messages=[{"role": "user", "content": "hi", "cache_control": {}}]),
     "Additional properties are not allowed ('cache_control' was unexpected) - 'messages.0'", None, None),
    ("tool-call-arguments-object", o_body(messages=[user("hi"), {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}], tools=O_TOOLS),
     "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, but got an object instead.",
     "messages[1].tool_calls[0].function.arguments", "invalid_type"),
    ("tool-without-preceding-calls", o_body(messages=[user("hi"), {"role": "tool", "tool_call_id": "c", "content": "x"}]),
     "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
     "messages.[1].role", None),
    ("tool-call-id-mismatch", o_body(messages=[*TOOL_FLOW, {"role": "tool", "tool_call_id": "call_9",
                                                             "content": "x"}], tools=O_TOOLS),
     "Invalid parameter: 'tool_call_id' of 'call_9' not found in 'tool_calls' of previous message.",
     "messages.[3].tool_call_id", None),
    ("tool-calls-unanswered", o_body(messages=[*TOOL_FLOW[:2], user("and?")], tools=O_TOOLS),
     "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
     "The following tool_call_ids did not have response messages: call_1", "messages.[1].role", None),
    ("content-part-anthropic-image", o_body(messages=[user([{"type": "image", "source": {}}])]),
     "Invalid value: 'image'. Supported values are: 'text', 'image_url', 'input_audio', and 'file'.",
     "messages[0].content[0].type", "invalid_value"),
    ("system-image-part", o_body(messages=[{"role": "system", "content": [{"type": "image_url",
                                                                           "image_url": {"url": "x"}}]}, user("hi")]),
     "Invalid value: 'image_url'. Supported values are: 'text'.", "messages[0].content[0].type", "invalid_value"),
    ("temperature-high", o_body(temperature=2.5), "Invalid 'temperature': decimal above maximum value. Expected a "
                                                  "value <= 2, but got 2.5 instead.", "temperature",
     "decimal_above_max_value"),
    ("temperature-string", o_body(temperature="hot"),
     "Invalid type for 'temperature': expected a decimal, but got a string instead.", "temperature", "invalid_type"),
    ("top-p-high", o_body(top_p=1.5), "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got "
                                      "1.5 instead.", "top_p", "decimal_above_max_value"),
    ("n-zero", o_body(n=0), "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
     "n", "integer_below_min_value"),
    ("max-tokens-zero", o_body(max_tokens=0), "Invalid 'max_tokens': integer below minimum value. Expected a value "
                                              ">= 1, but got 0 instead.", "max_tokens", "integer_below_min_value"),
    ("max-completion-tokens-zero", o_body(max_completion_tokens=0),
     "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.",
     "max_completion_tokens", "integer_below_min_value"),
    ("stream-string", o_body(stream="true"), "Invalid type for 'stream': expected a boolean, but got a string "
                                             "instead.", "stream", "invalid_type"),
    ("stream-options-without-stream", o_body(stream_options={"include_usage": True}),
     "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", None),
    ("stop-too-many", o_body(stop=["a", "b", "c", "d", "e"]), "Invalid 'stop': array too long. Expected an array "
                                                              "with maximum length 4, but got an array with length 5 "
                                                              "instead.", "stop", "array_above_max_length"),
    ("tool-choice-without-tools", o_body(tool_choice="auto"),
     "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", None),
    ("tool-choice-any", o_body(tools=O_TOOLS, tool_choice="any"),
     "Invalid value: 'any'. Supported values are: 'none', 'auto', and 'required'.", "tool_choice", "invalid_value"),
    ("tool-anthropic-shape", o_body(tools=[{"name": "f", "input_schema": {}}]),
     "Missing required parameter: 'tools[0].type'.", "tools[0].type", "missing_required_parameter"),
    ("tool-name-pattern", o_body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
     "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern "
     "'^[a-zA-Z0-9_-]{1,64}$'.", "tools[0].function.name", "invalid_value"),
    ("response-format-type", o_body(response_format={"type": "xml"}),
     "Invalid value: 'xml'. Supported values are: 'json_object', 'json_schema', and 'text'.",
     "response_format.type", "invalid_value"),
    ("reasoning-effort", o_body(reasoning_effort="extreme"),
     "Invalid value: 'extreme'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', and 'xhigh'.",
     "reasoning_effort", "invalid_value"),
]
UNPARSABLE = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
              "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If "
              "you have trouble figuring out how to fix this, please contact us through our help center at "
              "help.openai.com.)")


@pytest.mark.parametrize("body, message, param, code", [case[1:] for case in OPENAI_REJECTIONS],
                         ids=[case[0] for case in OPENAI_REJECTIONS])
def test_openai_rejects_invalid_bodies(http, omock, body, message, param, code):
    response = post_openai(http, omock, body)
    assert response.status_code == 400, response.text
    expected = openai_error_body(message or UNPARSABLE, param=param, code=code)
    assert response.json() == expected
    assert omock.rejections == [(400, expected)]


def test_openai_missing_key(http, omock):
    response = post_openai(http, omock, o_body(), headers={})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


def test_openai_wrong_key_is_masked(http, omock):
    response = post_openai(http, omock, o_body(), headers={"authorization": "Bearer sk-proj-abcdefghijklmnop1234"})
    assert response.status_code == 401
    assert response.json() == openai_error_body(
        "Incorrect API key provided: sk-proj-****************1234. You can find your API key at "
        "https://platform.openai.com/account/api-keys.", code="invalid_api_key")


@pytest.mark.parametrize("method, path", [("POST", "/v1/responses"), ("GET", "/v1/chat/completions"),
                                          ("GET", "/v1/embeddings"), ("POST", "/v1/messages")])
def test_openai_unknown_routes(http, omock, method, path):
    response = http.request(method, omock.base_url + path, headers=OPENAI_HEADERS)
    assert response.status_code == 404
    assert response.json() == openai_error_body(f"Invalid URL ({method} {path})")


OPENAI_ACCEPTED = [
    ("minimal", o_body()),
    ("tool-flow", o_body(messages=[*TOOL_FLOW, {"role": "user", "content": "thanks"}], tools=O_TOOLS,
                         tool_choice={"type": "function", "function": {"name": "get_weather"}},
                         parallel_tool_calls=False)),
    ("parts-and-roles", o_body(messages=[
        {"role": "developer", "content": "Be brief."}, {"role": "system", "content": [{"type": "text", "text": "Hi"}]},
        user([{"type": "text", "text": "What is this?"},
              {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_1X1, "detail": "low"}}]),
        {"role": "assistant", "content": "A pixel.", "name": "bot"}, user("ok")])),
    ("sampling", o_body(temperature=2, top_p=0, n=2, max_tokens=5, max_completion_tokens=5, presence_penalty=-2,
                        frequency_penalty=2, seed=1, stop="END", logprobs=True, top_logprobs=3, user="u1",
                        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                        reasoning_effort="low", service_tier="auto", store=False, metadata={"k": "v"})),
    ("nulls-mean-defaults", o_body(temperature=None, max_tokens=None, stream=None, stop=None, n=None)),
]


@pytest.mark.parametrize("body", [case[1] for case in OPENAI_ACCEPTED], ids=[case[0] for case in OPENAI_ACCEPTED])
def test_openai_accepts_valid_requests(http, omock, body):
    response = post_openai(http, omock, body)
    assert response.status_code == 200, response.text
    ChatCompletion.model_validate(response.json())


# ----------------------------------------------------------------------------------------------
# OpenAI: default replies
# ----------------------------------------------------------------------------------------------


def test_openai_default_reply_is_a_real_chat_completion(http, omock):
    response = post_openai(http, omock, o_body())
    body = response.json()
    ChatCompletion.model_validate(body)
    assert re.fullmatch(r"chatcmpl-[0-9A-Za-z]{29}", body["id"])
    assert response.headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion" and abs(body["created"] - time.time()) < 60
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert re.fullmatch(r"fp_[0-9a-f]{10}", body["system_fingerprint"])
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Echo: Hello there",
                                                        "refusal": None, "annotations": []},
                                "logprobs": None, "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5,
                             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                           "accepted_prediction_tokens": 0,
                                                           "rejected_prediction_tokens": 0}}


def test_openai_dated_models_are_echoed_unchanged(http, omock):
    assert post_openai(http, omock, o_body(model="gpt-4o-2024-08-06")).json()["model"] == "gpt-4o-2024-08-06"


def test_openai_truncation_and_n(http, omock):
    body = post_openai(http, omock, o_body(messages=[user("a b c")], max_completion_tokens=2, n=2)).json()
    assert [choice["message"]["content"] for choice in body["choices"]] == ["Echo: a", "Echo: a"]
    assert {choice["finish_reason"] for choice in body["choices"]} == {"length"}
    stopped = post_openai(http, omock, o_body(messages=[user("a b c")], stop=["b"])).json()["choices"][0]
    assert (stopped["message"]["content"], stopped["finish_reason"]) == ("Echo: a ", "stop")


def test_openai_stream_with_usage(http, omock):
    response = post_openai(http, omock, o_body(stream=True, stream_options={"include_usage": True}))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert all(name is None for name, _ in events)  # data-only framing
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Echo: Hello there"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


def test_openai_stream_without_usage_has_no_usage_field(http, omock):
    chunks = [json.loads(data) for _, data in parse_sse(post_openai(http, omock, o_body(stream=True)).text)[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_sdk_round_trips_against_the_mock(omock):
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[user("Hi SDK")])
    assert completion.choices[0].message.content == "Echo: Hi SDK"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[user("Hi stream")], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: Hi stream"
    assert chunks[-1].usage.completion_tokens == 3
    assert [model.id for model in client.models.list()][:2] == ["gpt-4o", "gpt-4o-mini"]


def test_openai_scripted_tool_call_stream_reassembles(omock):
    scripted = OpenAIMock.completion(None, tool_calls=[tool_call("get_weather", {"city": "Paris"}, id="call_7")],
                                     finish_reason="tool_calls")
    ChatCompletion.model_validate(scripted)
    omock.enqueue(StreamEvents(completion_chunks(scripted, include_usage=True)))
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    with client.chat.completions.stream(model="gpt-4o-mini", messages=[user("Weather?")]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("call_7", "get_weather", {"city": "Paris"})
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_sse_helper_encodes_data_only_frames():
    assert openai_sse([{"a": 1}, "[DONE]"]) == b'data: {"a":1}\n\ndata: [DONE]\n\n'


def test_openai_echoes_tool_results(http, omock):
    body = post_openai(http, omock, o_body(messages=[*TOOL_FLOW, user("So?")], tools=O_TOOLS)).json()
    assert body["choices"][0]["message"]["content"] == "Echo: So?"


def test_openai_error_replies_reach_the_sdk_as_typed_errors(omock):
    omock.enqueue(Reply(429, openai_error_body("Rate limit reached", "requests", code="rate_limit_exceeded")))
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[user("hi")])


def test_openai_custom_base_path(http):
    with OpenAIMock(base_path="/openai/v1") as mock:
        assert post_openai(http, mock, o_body(), path="/openai/v1/chat/completions").status_code == 200
        assert post_openai(http, mock, o_body()).status_code == 404
        models = http.get(mock.base_url + "/openai/v1/models", headers=OPENAI_HEADERS).json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"


def test_openai_models_requires_the_key(http, omock):
    assert http.get(omock.base_url + "/v1/models").status_code == 401


# ----------------------------------------------------------------------------------------------
# The demo provider
# ----------------------------------------------------------------------------------------------


def start_demo(tmp_path, env_value="demo-key"):
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    env.pop("DEMO_PROVIDER_API_KEY", None)
    if env_value is not None:
        env["DEMO_PROVIDER_API_KEY"] = env_value
    port_file = tmp_path / "demo.port"
    process = subprocess.Popen(
        [sys.executable, "-m", "mockproviders.demo", "--port", "0", "--api-key-env", "DEMO_PROVIDER_API_KEY",
         "--port-file", str(port_file)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, port_file


def test_demo_provider_serves_a_friendly_reply_and_stops_on_sigterm(http, tmp_path):
    process, port_file = start_demo(tmp_path)
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"demo provider listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        port = int(match.group(1))
        assert port_file.read_text() == f"{port}\n"
        response = http.post(f"http://127.0.0.1:{port}/v1/messages", json=a_body(messages=[user("hi there")]),
                             headers={"x-api-key": "demo-key", "anthropic-version": "2023-06-01"})
        assert response.json()["content"][0]["text"] == \
            "Hello from the Switchyard demo provider (Anthropic Messages format). You said: hi there"
        wrong = http.post(f"http://127.0.0.1:{port}/v1/messages", json=a_body(),
                          headers={"x-api-key": "other", "anthropic-version": "2023-06-01"})
        assert wrong.status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.communicate()


def test_demo_provider_refuses_to_start_without_its_key(tmp_path):
    process, port_file = start_demo(tmp_path, env_value=None)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 2 and stdout == ""
    assert "DEMO_PROVIDER_API_KEY is not set" in stderr
    assert not port_file.exists()
