"""A stream that goes wrong after its first byte reached the client, through the real Envoy.

Nothing can be retried once the client has bytes. What the client sees then:

* the provider goes silent: the upstream filter's stall watchdog ends the stream with an
  OpenAI error event (`data: {"error":...}`, code `stream_stalled`, no `[DONE]`) after
  `stream_stall_timeout` seconds, then the connection is reset; the OpenAI SDK raises
  `APIError` with the gateway's message;
* the provider resets the connection: Envoy's router resets the client's stream at once
  (no filter callback can still write to it), so the client sees a broken connection and
  the SDK raises `APIConnectionError`. That limit is pinned here, so that a change in
  Envoy which lifts it is noticed.

The gateway here has a 1 s stall limit (shipped: 55 s) and one worker, so concurrent
streams share one VM and one watchdog.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from conftest import KEYS
from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders import StallAfterHeaders, StreamEvents
from mockproviders.anthropic import AnthropicMock, message_events, text_block
from mockproviders.openai import OpenAIMock, completion_chunks

STALL_LIMIT = 1


@pytest.fixture(scope="module")
def gw(anthropic_mock, openai_mock):
    groups = [
        ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                         api_key_env="TEST_ANTHROPIC_KEY")]),
        ModelGroup("gpt", [Deployment("openai", openai_mock.port, model="gpt-4o-mini", api_key_env="TEST_OPENAI_KEY",
                                      api_base_path="/v1")]),
        # Envoy's own limit on silence, for a stall before the first byte (above the
        # filter's stall limit, as the lint insists).
        ModelGroup("claude-idle", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                              api_key_env="TEST_ANTHROPIC_KEY")],
                   stream_route={"retry_policy": {"per_try_idle_timeout": "2s", "num_retries": 0}}),
    ]
    for g in groups:
        g.route = {"retry_policy": None, **g.route}
        g.cluster = {"outlier_detection": None, **g.cluster}
    gateway = Gateway(groups, env=KEYS, concurrency=1, upstream_config={"stream_stall_timeout": STALL_LIMIT})
    yield gateway
    gateway.stop()


def stalling_anthropic_stream(mock: AnthropicMock) -> StreamEvents:
    """The first events of an answer in one write, then 30 s of silence before the rest."""
    events = message_events(AnthropicMock.message(text_block("Hello there, this answer stalls")))
    first = b"".join(mock.encode_event(e) for e in events[:4])
    return StreamEvents([first] + events[4:], delay=30)


def stalling_openai_stream(mock: OpenAIMock) -> StreamEvents:
    chunks = completion_chunks(OpenAIMock.completion("Hello there, this answer stalls"), include_usage=True)
    first = b"".join(mock.encode_event(c) for c in chunks[:2])
    return StreamEvents([first] + chunks[2:], delay=30)


def read_stream(gw, model: str) -> tuple[list, Exception | None, float]:
    """Streams a chat completion with a raw HTTP client; returns the data events (parsed,
    or "[DONE]"), the error that ended the read if any, and when the last event came."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    events, error, started, last_at = [], None, time.monotonic(), 0.0
    try:
        with gw.client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    events.append(data if data == "[DONE]" else json.loads(data))
                    last_at = time.monotonic() - started
    except httpx.HTTPError as e:
        error = e
    return events, error, last_at


def content_of(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))


@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_a_stream_stalled_after_its_first_byte_ends_with_an_error_event(gw, anthropic_mock, openai_mock, model):
    if model == "claude":
        anthropic_mock.enqueue(stalling_anthropic_stream(anthropic_mock))
    else:
        openai_mock.enqueue(stalling_openai_stream(openai_mock))
    events, error, last_at = read_stream(gw, model)
    assert "[DONE]" not in events, "a stalled stream must not look complete"
    assert content_of(events).startswith("Hello"), "the first bytes reached the client"
    provider = "anthropic" if model == "claude" else "openai"
    assert events[-1] == {"error": {
        "message": f"The {provider} provider sent nothing for {STALL_LIMIT} s in the middle of the stream; "
                   "the gateway ended it.",
        "type": "timeout", "param": None, "code": "stream_stalled"}}
    # Caught at the first once-a-second check past the limit, long before the 30 s stall ends.
    assert STALL_LIMIT <= last_at < STALL_LIMIT + 3
    # Then the connection is reset: Envoy lets no filter end the stream cleanly.
    assert isinstance(error, httpx.RemoteProtocolError), error
    stalls = gw.stats(f"wasmcustom.switchyard.stream_stalls.{provider}")
    assert sum(stalls.values()) >= 1, stalls


def test_the_openai_sdk_raises_the_stall_as_an_api_error(gw, anthropic_mock):
    anthropic_mock.enqueue(stalling_anthropic_stream(anthropic_mock))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="claude", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            received.append(chunk)
    assert not isinstance(raised.value, openai.APIConnectionError), raised.value
    assert "sent nothing for 1 s" in raised.value.message
    assert received and received[0].choices[0].delta.role == "assistant"


def test_a_slow_but_steady_stream_is_not_cut(gw, anthropic_mock):
    # 0.5 s between events, the stream lasts several times the stall limit.
    events = message_events(AnthropicMock.message(text_block("slow answer arriving piece by piece")))
    anthropic_mock.enqueue(StreamEvents(events, delay=0.5))
    got, error, last_at = read_stream(gw, "claude")
    assert error is None, error
    assert got[-1] == "[DONE]" and content_of(got) == "slow answer arriving piece by piece"
    assert last_at > 2 * STALL_LIMIT


def test_only_the_stalled_one_of_two_concurrent_streams_is_ended(gw, anthropic_mock):
    """Both streams run in one VM: the error event must reach the stream that stalled,
    and only it."""
    steady = message_events(AnthropicMock.message(text_block("steady answer for the other client")))
    anthropic_mock.enqueue(stalling_anthropic_stream(anthropic_mock), StreamEvents(steady, delay=0.4))
    stalled_result = {}

    def stalled_client():
        stalled_result["value"] = read_stream(gw, "claude")

    thread = threading.Thread(target=stalled_client)
    thread.start()
    deadline = time.monotonic() + 5
    while len(anthropic_mock.requests) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # its first bytes are through: the second request gets the second action
    steady_events, steady_error, _ = read_stream(gw, "claude")
    thread.join(timeout=30)
    stalled_events, stalled_error, _ = stalled_result["value"]
    assert steady_error is None, steady_error
    assert steady_events[-1] == "[DONE]" and content_of(steady_events) == "steady answer for the other client"
    assert not any(isinstance(e, dict) and "error" in e for e in steady_events)
    assert stalled_events[-1]["error"]["code"] == "stream_stalled"
    assert isinstance(stalled_error, httpx.RemoteProtocolError)


def test_a_stall_before_the_first_byte_is_still_a_normal_error_response(gw, anthropic_mock):
    # The headers are held until the first byte of body, so Envoy's per-attempt silence
    # limit answers (and, with retries configured, would retry elsewhere).
    anthropic_mock.enqueue(StallAfterHeaders(10))
    r = gw.chat({"model": "claude-idle", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 504
    assert openai_error(r)["code"] == "timeout"


def test_a_stream_cut_by_its_provider_after_its_first_byte_is_a_broken_connection(gw, anthropic_mock):
    """The known limit (README): when the provider resets the connection mid-stream,
    Envoy's router resets the client's stream straight away (`onUpstreamReset` ->
    `sendLocalReply`, which can only reset once headers were sent); the filters get no
    body callback, only their end, where no data can be written."""
    events = message_events(AnthropicMock.message(text_block("Hello there, this stream will be cut")))
    anthropic_mock.enqueue(StreamEvents(events[:4], then_reset=True))
    got, error, _ = read_stream(gw, "claude")
    assert content_of(got).startswith("Hello")
    assert "[DONE]" not in got and not any(isinstance(e, dict) and "error" in e for e in got)
    assert isinstance(error, httpx.RemoteProtocolError), error

    anthropic_mock.enqueue(StreamEvents(events[:4], then_reset=True))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.APIConnectionError):
        for _ in client.chat.completions.create(model="claude", stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
            pass
