"""Gemini, Azure OpenAI, an OpenAI-compatible preset, embeddings and legacy completions
through the real Envoy + switchyard.wasm, against strict mocks of each provider."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from conftest import AZURE_KEY, GEMINI_KEY, OPENAI_KEY
from harness import openai_error
from mockproviders import Reply, StreamEvents
from mockproviders.azure import AzureOpenAIMock, azure_chunks, azure_completion, azure_content_filter_error
from mockproviders.gemini import (GeminiMock, function_call_part, gemini_error_body, response_chunks,
                                  stream_events)

PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def only_request(mock):
    assert len(mock.requests) == 1, mock.requests
    assert mock.rejections == [], mock.rejections
    return mock.requests[0]


def sse_data(response) -> list:
    raw = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(x) if x != "[DONE]" else x for x in raw]


def stream(gateway, body: dict, path: str = "/v1/chat/completions") -> list:
    with gateway.client.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_data(r)


def one_identity(chunks: list) -> None:
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1, chunks
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


# --- Gemini -------------------------------------------------------------------------------------


def test_gemini_chat_is_translated_both_ways(gateway, gemini_mock):
    r = gateway.chat({"model": "gemini", "temperature": 0.3, "max_completion_tokens": 200, "stop": ["\n\n"],
                      "messages": [{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "first"},
                                   {"role": "assistant", "content": "noted"},
                                   {"role": "developer", "content": "Answer in English."},
                                   {"role": "user", "content": "second question"}]})
    assert r.status_code == 200, r.text
    sent = only_request(gemini_mock)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in sent.headers and "key" not in sent.query
    assert sent.json["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in English."}]}
    assert [c["role"] for c in sent.json["contents"]] == ["user", "model", "user"]
    assert sent.json["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 200, "stopSequences": ["\n\n"]}
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "gemini-2.5-flash"
    [choice] = body["choices"]
    assert choice["message"]["content"] == "Echo: second question"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_gemini_max_tokens_is_length_and_thoughts_are_reasoning(gateway, gemini_mock):
    r = gateway.chat({"model": "gemini", "max_tokens": 2, "reasoning_effort": "low",
                      "messages": [{"role": "user", "content": "one two three four five six"}]})
    assert r.status_code == 200, r.text
    sent = only_request(gemini_mock).json
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["reasoning_content"]
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_gemini_image_and_json_schema(gateway, gemini_mock):
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    r = gateway.chat({"model": "gemini",
                      "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
                      "messages": [{"role": "user", "content": [
                          {"type": "text", "text": "what colour?"},
                          {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}]})
    assert r.status_code == 200, r.text
    sent = only_request(gemini_mock).json
    assert sent["contents"][0]["parts"] == [{"text": "what colour?"},
                                            {"inlineData": {"mimeType": "image/png", "data": PIXEL}}]
    assert sent["generationConfig"]["responseMimeType"] == "application/json"
    assert sent["generationConfig"]["responseJsonSchema"] == schema


def test_gemini_tool_loop(gateway, gemini_mock):
    gemini_mock.enqueue(Reply(200, GeminiMock.response([function_call_part("get_weather", {"city": "Paris"})])))
    first = gateway.chat({"model": "gemini", "tools": [WEATHER_TOOL], "tool_choice": "required",
                          "messages": [{"role": "user", "content": "weather in Paris?"}]})
    assert first.status_code == 200, first.text
    sent = gemini_mock.requests[0].json
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather for a city.",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    message = first.json()["choices"][0]["message"]
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}

    second = gateway.chat({"model": "gemini", "tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "weather in Paris?"}, message,
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'}]})
    assert second.status_code == 200, second.text
    assert gemini_mock.rejections == []
    contents = gemini_mock.requests[1].json["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]}
    assert "21" in second.json()["choices"][0]["message"]["content"]


def test_gemini_3_thought_signatures_survive_the_round_trip(gateway, gemini_mock):
    gemini_mock.enqueue(Reply(200, GeminiMock.response(
        [function_call_part("get_weather", {"city": "Oslo"}, thought_signature="c2lnbmF0dXJlLW9uZQ==")],
        model_version="gemini-3-pro-preview")))
    first = gateway.chat({"model": "gemini-3", "tools": [WEATHER_TOOL],
                          "messages": [{"role": "user", "content": "weather in Oslo?"}]})
    assert first.status_code == 200, first.text
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    second = gateway.chat({"model": "gemini-3", "tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "weather in Oslo?"}, message,
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]})
    assert second.status_code == 200, second.text
    assert gemini_mock.rejections == []
    model_turn = gemini_mock.requests[1].json["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJlLW9uZQ=="
    assert gemini_mock.requests[1].json["contents"][2]["parts"][0]["functionResponse"]["response"] == {"output": "sunny"}


def test_gemini_stream(gateway, gemini_mock):
    events = stream(gateway, {"model": "gemini", "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "stream these words to me please"}]})
    sent = only_request(gemini_mock)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and sent.query["alt"] == ["sse"]
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    one_identity(chunks + [usage_chunk])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Echo: stream these words to me please"
    assert len(chunks) > 3, "several content chunks, forwarded as they came"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 0


def test_gemini_stream_tool_call(gateway, gemini_mock):
    reply = GeminiMock.response(["Let me check.", function_call_part("get_weather", {"city": "Rome"}, id="fc-7")])
    gemini_mock.enqueue(StreamEvents(stream_events(response_chunks(reply))))
    events = stream(gateway, {"model": "gemini", "tools": [WEATHER_TOOL],
                              "messages": [{"role": "user", "content": "weather in Rome?"}]})
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in events[:-1]
             if c["choices"][0]["delta"].get("tool_calls")]
    assert calls == [{"index": 0, "id": "fc-7", "type": "function",
                      "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_gemini_mid_stream_error_and_truncation(gateway, gemini_mock):
    chunks = response_chunks(GeminiMock.response(["a fairly long answer that is cut off"]))
    error = gemini_error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    gemini_mock.enqueue(StreamEvents(stream_events(chunks[:1] + [error])))
    events = stream(gateway, {"model": "gemini", "messages": [{"role": "user", "content": "x"}]})
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "overloaded"

    gemini_mock.enqueue(StreamEvents(stream_events(chunks[:1])))
    events = stream(gateway, {"model": "gemini", "messages": [{"role": "user", "content": "x"}]})
    assert "[DONE]" not in events and events[-1]["error"]["code"] == "incomplete_stream"


@pytest.mark.parametrize("status,rpc,expected_status,expected_type", [
    (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
    (403, "PERMISSION_DENIED", 403, "permission_error"),
    (500, "INTERNAL", 500, "server_error"),
    (503, "UNAVAILABLE", 503, "service_unavailable"),
])
def test_gemini_errors_are_mapped(gateway, gemini_mock, status, rpc, expected_status, expected_type):
    gemini_mock.enqueue(Reply(status, gemini_error_body(status, rpc, f"{rpc} says no")))
    r = gateway.chat({"model": "gemini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == expected_status
    error = openai_error(r)
    assert error["type"] == expected_type and error["message"] == f"{rpc} says no"


def test_gemini_bad_key_is_401_without_the_key(gateway, gemini_mock):
    r = gateway.chat({"model": "gemini-badkey", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401, r.text
    assert openai_error(r)["type"] == "authentication_error"
    assert "not-the-right-key" not in r.text and GEMINI_KEY not in r.text


def test_gemini_refuses_what_it_cannot_do(gateway, gemini_mock):
    r = gateway.chat({"model": "gemini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert r.status_code == 400 and openai_error(r)["code"] == "unsupported_parameter"
    r = gateway.client.post("/v1/completions", json={"model": "gemini", "prompt": "x"})
    assert r.status_code == 400 and openai_error(r)["code"] == "unsupported_operation"
    assert gemini_mock.requests == []


def test_gemini_embeddings(gateway, gemini_mock):
    r = gateway.client.post("/v1/embeddings", json={"model": "gemini-embed", "input": "hello world"})
    assert r.status_code == 200, r.text
    sent = only_request(gemini_mock)
    assert sent.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert sent.json == {"content": {"parts": [{"text": "hello world"}]}}
    body = r.json()
    assert body["object"] == "list" and body["model"] == "gemini-embed"
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 768
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0

    gemini_mock.reset()
    r = gateway.client.post("/v1/embeddings", json={"model": "gemini-embed", "input": ["a", "b", "c"],
                                                    "dimensions": 8, "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    sent = only_request(gemini_mock)
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [q["model"] for q in sent.json["requests"]] == ["models/gemini-embedding-001"] * 3
    assert all(q["outputDimensionality"] == 8 for q in sent.json["requests"])
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    floats = struct.unpack("<8f", base64.b64decode(data[0]["embedding"]))
    assert abs(sum(f * f for f in floats) - 1.0) < 1e-3, "the mock's unit vector, bit for bit as float32"


# --- Azure OpenAI -------------------------------------------------------------------------------


@pytest.mark.parametrize("model,path", [
    ("azure", "/openai/deployments/gpt4o-deploy/chat/completions"),
    ("azure-v1", "/openai/v1/chat/completions"),
])
def test_azure_chat_both_url_forms(gateway, azure_mock, model, path):
    r = gateway.chat({"model": model, "messages": [{"role": "user", "content": "hello azure"}]})
    assert r.status_code == 200, r.text
    sent = only_request(azure_mock)
    assert sent.path == path
    assert sent.headers["api-key"] == AZURE_KEY and "authorization" not in sent.headers
    if model == "azure":
        assert sent.query["api-version"] == ["2024-10-21"]
    else:
        assert sent.json["model"] == "gpt4o-deploy"
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Echo: hello azure"
    # Azure's content-filter annotations reach the client untouched.
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert "content_filter_results" in body["choices"][0]


def test_azure_stream_keeps_filter_annotations_with_one_identity(gateway, azure_mock):
    events = stream(gateway, {"model": "azure", "messages": [{"role": "user", "content": "stream from azure"}]})
    assert only_request(azure_mock).json["stream_options"] == {"include_usage": True}
    *chunks, done = events
    assert done == "[DONE]"
    one_identity(chunks)
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[1:]) == "Echo: stream from azure"
    assert all("usage" not in c or c["usage"] is None for c in chunks), "usage hidden unless asked"


def test_azure_content_filter_error_keeps_its_code(gateway, azure_mock):
    azure_mock.enqueue(Reply(400, azure_content_filter_error("violence", "high")))
    r = gateway.chat({"model": "azure", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    error = r.json()["error"]
    # OpenAI's four fields, plus Azure's account of which filter fired, as Azure sent it.
    assert set(error) == {"message", "type", "param", "code", "innererror"}
    assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert error["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}


def test_azure_embeddings(gateway, azure_mock):
    r = gateway.client.post("/v1/embeddings", json={"model": "azure-embed", "input": ["x", "y"]})
    assert r.status_code == 200, r.text
    sent = only_request(azure_mock)
    assert sent.path == "/openai/deployments/embed-deploy/embeddings" and sent.query["api-version"] == ["2024-10-21"]
    assert [d["index"] for d in r.json()["data"]] == [0, 1]


# --- OpenAI-compatible: presets, embeddings, legacy completions --------------------------------------


def test_groq_preset_strips_what_groq_rejects(gateway, groq_mock):
    r = gateway.chat({"model": "groq", "max_completion_tokens": 20,
                      "messages": [{"role": "user", "name": "alice", "content": "hello groq"}]})
    assert r.status_code == 200, r.text
    sent = only_request(groq_mock)
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.json["model"] == "llama-3.3-70b-versatile"
    assert sent.json["messages"] == [{"role": "user", "content": "hello groq"}]
    r = gateway.chat({"model": "groq", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and openai_error(r) == {
        "message": openai_error(r)["message"], "type": "invalid_request_error", "param": "n",
        "code": "unsupported_parameter"}


def test_openai_embeddings_pass_through(gateway, openai_mock):
    r = gateway.client.post("/v1/embeddings", json={"model": "gpt-embed", "input": "hello", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    sent = only_request(openai_mock)
    assert sent.path == "/v1/embeddings" and sent.json["model"] == "text-embedding-3-small"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert len(base64.b64decode(r.json()["data"][0]["embedding"])) == 1536 * 4


def test_openai_legacy_completions(gateway, openai_mock):
    r = gateway.client.post("/v1/completions", json={"model": "gpt-instruct", "prompt": "Say this", "max_tokens": 7})
    assert r.status_code == 200, r.text
    sent = only_request(openai_mock)
    assert sent.path == "/v1/completions" and sent.json["model"] == "gpt-3.5-turbo-instruct"
    assert r.json()["object"] == "text_completion"

    openai_mock.reset()
    events = stream(gateway, {"model": "gpt-instruct", "prompt": "Say this"}, path="/v1/completions")
    assert only_request(openai_mock).json["stream_options"] == {"include_usage": True}
    assert events[-1] == "[DONE]"
    assert all(e["choices"] for e in events[:-1]), "the usage chunk the gateway asked for is hidden"
    assert all(e["object"] == "text_completion" for e in events[:-1])


@pytest.mark.parametrize("path,body,param", [
    ("/v1/embeddings", {"model": "gpt-embed", "input": []}, "input"),
    ("/v1/embeddings", {"model": "gpt-embed"}, "input"),
    ("/v1/completions", {"model": "gpt-instruct"}, "prompt"),
    ("/v1/completions", {"model": "gpt-instruct", "prompt": 5}, "prompt"),
    ("/v1/embeddings", {"model": "gpt-embed", "input": "x", "messages": []}, "messages"),
])
def test_bad_embeddings_and_completions_requests(gateway, openai_mock, path, body, param):
    r = gateway.client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert openai_error(r)["param"] == param
    assert openai_mock.requests == []


# --- Parameters a provider lacks: the deployment's policy ------------------------------------


@pytest.mark.parametrize("model,params,status,dropped", [
    # default: semantic parameters refused, sampling knobs dropped and reported
    ("claude", {"n": 2}, 400, None),
    ("claude", {"seed": 7, "frequency_penalty": 0.5}, 200, {"seed", "frequency_penalty"}),
    # drop: everything dropped and reported
    ("claude-drop", {"n": 2, "logprobs": True, "seed": 7}, 200, {"n", "logprobs", "seed"}),
    # reject: everything refused
    ("claude-strict", {"seed": 7}, 400, None),
])
def test_unsupported_parameter_policy(gateway, anthropic_mock, model, params, status, dropped):
    r = gateway.chat({"model": model, "messages": [{"role": "user", "content": "x"}], **params})
    assert r.status_code == status, r.text
    if status == 400:
        error = openai_error(r)
        assert error["code"] == "unsupported_parameter" and error["param"] in params
        assert anthropic_mock.requests == [], "refused before reaching the provider"
    else:
        assert set(r.headers["x-switchyard-dropped-params"].split(",")) == dropped
        sent = only_request(anthropic_mock).json
        assert not set(params) & set(sent)


def test_dropped_parameters_are_reported_on_streams_too(gateway, gemini_mock):
    with gateway.client.stream("POST", "/v1/chat/completions", json={
            "model": "gemini", "stream": True, "user": "user-1234", "parallel_tool_calls": False,
            "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status_code == 200
        assert set(r.headers["x-switchyard-dropped-params"].split(",")) == {"user", "parallel_tool_calls"}
        assert sse_data(r)[-1] == "[DONE]"
