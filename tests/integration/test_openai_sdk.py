"""The official `openai` Python SDK against the gateway, unchanged except base_url."""

from __future__ import annotations

import openai
import pytest

from mockproviders import Reply
from mockproviders.anthropic import AnthropicMock, anthropic_error_body, text_block, tool_use_block


@pytest.fixture
def client(gateway):
    # max_retries=0: the SDK's own retries would hide which status the gateway sent.
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-anything", max_retries=0, timeout=30)


def test_chat_completion_through_anthropic(client, anthropic_mock):
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        max_completion_tokens=50,
        temperature=0.5,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: Say hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert anthropic_mock.rejections == []


def test_tool_call_through_anthropic(client, anthropic_mock):
    anthropic_mock.enqueue(Reply(200, AnthropicMock.message(
        text_block("One moment."), tool_use_block("lookup", {"q": "x"}, id="toolu_9"), stop_reason="tool_use")))
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "look it up"}],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
    )
    call = completion.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("toolu_9", "lookup", '{"q":"x"}')
    assert completion.choices[0].finish_reason == "tool_calls"


def test_chat_completion_through_openai_compatible(client):
    completion = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Echo: hi"


def test_models_list(client):
    assert [m.id for m in client.models.list()][:2] == ["claude", "gpt"]
    assert client.models.retrieve("claude").id == "claude"


@pytest.mark.parametrize("call,exception,status", [
    (lambda c: c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]), openai.NotFoundError, 404),
    (lambda c: c.chat.completions.create(model="claude", messages=[]), openai.BadRequestError, 400),
    (lambda c: c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=3), openai.BadRequestError, 400),
])
def test_sdk_raises_the_right_exceptions(client, call, exception, status):
    with pytest.raises(exception) as caught:
        call(client)
    assert caught.value.status_code == status
    assert caught.value.body["message"]


def test_sdk_sees_overload_as_retryable_server_error(client, anthropic_mock):
    anthropic_mock.enqueue(Reply(529, anthropic_error_body("overloaded_error", "Overloaded")))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"
