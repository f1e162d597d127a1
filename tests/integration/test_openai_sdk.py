"""The official `openai` Python SDK against the gateway, unchanged except base_url."""

from __future__ import annotations

import json

import openai
import pytest

from mockproviders import Reply, StreamEvents
from mockproviders.anthropic import AnthropicMock, anthropic_error_body, message_events, text_block, tool_use_block
from mockproviders.azure import AzureOpenAIMock, azure_chunks
from mockproviders.gemini import GeminiMock, function_call_part, response_chunks, stream_events
from mockproviders.openai import OpenAIMock, completion_chunks, tool_call

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def streamed_tool_call(model: str) -> tuple[str, StreamEvents]:
    """The mock serving `model`, and the provider-native stream of one get_weather call."""
    args = {"city": "Paris"}
    if model == "claude":
        message = AnthropicMock.message(text_block("Let me look."), tool_use_block("get_weather", args),
                                        stop_reason="tool_use")
        return "anthropic_mock", StreamEvents(message_events(message))
    if model == "gemini":
        reply = GeminiMock.response(["Let me look.", function_call_part("get_weather", args)])
        return "gemini_mock", StreamEvents(stream_events(response_chunks(reply)))
    completion = OpenAIMock.completion("Let me look.", tool_calls=[tool_call("get_weather", args)],
                                       finish_reason="tool_calls")
    if model == "azure":
        return "azure_mock", StreamEvents(azure_chunks(completion, include_usage=True))
    mock = "groq_mock" if model == "groq" else "openai_mock"
    return mock, StreamEvents(completion_chunks(completion, include_usage=True))


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


@pytest.mark.parametrize("model", ["claude", "gemini", "azure", "gpt", "groq"])
def test_streamed_two_turn_tool_loop_with_identical_client_code(client, request, model):
    """The issue's promise: only the model name changes."""
    mock_name, first_turn = streamed_tool_call(model)
    mock = request.getfixturevalue(mock_name)
    mock.enqueue(first_turn)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    text, calls, finish = "", {}, None
    with client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True) as chunks:
        for chunk in chunks:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += delta.id or ""
                    call["name"] += (delta.function.name or "") if delta.function else ""
                    call["arguments"] += (delta.function.arguments or "") if delta.function else ""
                finish = choice.finish_reason or finish
    assert finish == "tool_calls" and text == "Let me look."
    [call] = calls.values()
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"} and call["id"]

    messages += [
        {"role": "assistant", "content": text, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21, "sky": "clear"}'},
    ]
    answer, finish = "", None
    with client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True) as chunks:
        for chunk in chunks:
            for choice in chunk.choices:
                answer += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert finish == "stop" and answer
    assert mock.rejections == [], "the provider accepted the translated tool history"
    assert len(mock.requests) == 2


@pytest.mark.parametrize("model,size", [("gpt-embed", 1536), ("gemini-embed", 768), ("azure-embed", 1536)])
def test_embeddings_through_the_sdk(client, request, model, size):
    mock = request.getfixturevalue({"gpt-embed": "openai_mock", "gemini-embed": "gemini_mock",
                                    "azure-embed": "azure_mock"}[model])
    # The SDK asks for base64 unless told otherwise, and decodes it.
    result = client.embeddings.create(model=model, input=["first text", "second text"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == size for d in result.data)
    assert all(abs(sum(x * x for x in d.embedding) - 1.0) < 1e-3 for d in result.data), "unit vectors, intact"
    assert result.usage.prompt_tokens > 0
    floats = client.embeddings.create(model=model, input="just one", dimensions=16, encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 16
    assert mock.rejections == []
