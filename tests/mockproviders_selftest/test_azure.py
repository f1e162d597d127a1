"""Self-test of tools/mockproviders/azure.py: Azure OpenAI's URLs, auth, errors and content-filter
annotations around OpenAI's wire format, checked with the official ``openai.AzureOpenAI`` client.

Run: cd /work/main && .venv/bin/python -m pytest tests/mockproviders_selftest -q
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mockproviders import Default, Delay, Hang, Reply, Reset, ResetMidBody, StreamEvents
from mockproviders.azure import (AzureOpenAIMock, azure_chunks, azure_completion, azure_content_filter_error,
                                 azure_error_body, prompt_filter_results, safe_content_filter_results, sse)
from mockproviders.openai import openai_error_body, tool_call

KEY = "test-azure-key"
KEY_HEADERS = {"api-key": KEY}
VERSION = "2024-10-21"
DEPLOYMENTS = {"gpt4o-deploy": "gpt-4o-2024-11-20", "embed-deploy": "text-embedding-3-small",
               "instruct-deploy": "gpt-35-turbo-instruct"}
CHAT = f"/openai/deployments/gpt4o-deploy/chat/completions?api-version={VERSION}"
ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
                 "for an active subscription and use a correct regional API endpoint for your resource.")
SAFE = {"filtered": False, "severity": "safe"}


@pytest.fixture(scope="module")
def azure_server():
    with AzureOpenAIMock(deployments=DEPLOYMENTS) as mock:
        yield mock


@pytest.fixture
def zmock(azure_server):
    azure_server.reset()
    yield azure_server
    azure_server.reset()


@pytest.fixture
def client(zmock):
    with openai.AzureOpenAI(azure_endpoint=zmock.base_url, api_key=KEY, api_version=VERSION, max_retries=0) as sdk:
        yield sdk


def post(http, mock, path, body, headers=KEY_HEADERS):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(mock.base_url + path, content=content, headers={"content-type": "application/json", **headers})


def z_body(**overrides) -> dict:
    body = {"messages": [{"role": "user", "content": "Hello there"}]}
    body.update(overrides)
    return body


# ----------------------------------------------------------------------------------------------
# URL, api-version, auth and deployment checks, in Azure's order
# ----------------------------------------------------------------------------------------------

ROUTE_REJECTIONS = [
    # (case id, path, headers, status, error body)
    ("api-version-missing", "/openai/deployments/gpt4o-deploy/chat/completions", KEY_HEADERS, 404,
     azure_error_body("404", "Resource not found")),
    ("api-version-missing-beats-auth", "/openai/deployments/gpt4o-deploy/chat/completions", {}, 404,
     azure_error_body("404", "Resource not found")),
    ("api-version-not-served", "/openai/deployments/gpt4o-deploy/chat/completions?api-version=2024-11-30", KEY_HEADERS,
     404, azure_error_body("404", "Resource not found")),
    ("api-version-malformed", "/openai/deployments/gpt4o-deploy/chat/completions?api-version=latest", KEY_HEADERS, 400,
     azure_error_body("BadRequest", "API version not supported")),
    ("api-version-v1-on-deployment", "/openai/deployments/gpt4o-deploy/chat/completions?api-version=v1", KEY_HEADERS,
     400, azure_error_body("BadRequest", "API version not supported")),
    ("v1-with-dated-version", f"/openai/v1/chat/completions?api-version={VERSION}", KEY_HEADERS, 400,
     azure_error_body("BadRequest", "API version not supported")),
    ("key-missing", CHAT, {}, 401, azure_error_body("401", ACCESS_DENIED)),
    ("key-wrong", CHAT, {"api-key": "nope"}, 401, azure_error_body("401", ACCESS_DENIED)),
    ("key-as-bearer-on-deployment-route", CHAT, {"authorization": f"Bearer {KEY}"}, 401,
     azure_error_body("401", ACCESS_DENIED)),
    ("deployment-unknown", f"/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}", KEY_HEADERS, 404,
     azure_error_body("DeploymentNotFound", "The API deployment for this resource does not exist. If you created the "
                                            "deployment within the last 5 minutes, please wait a moment and try "
                                            "again.")),
    ("chat-on-embedding-deployment", f"/openai/deployments/embed-deploy/chat/completions?api-version={VERSION}",
     KEY_HEADERS, 400,
     azure_error_body("OperationNotSupported", "The chatCompletion operation does not work with the specified model, "
                                               "text-embedding-3-small. Please choose different model and try again. "
                                               "You can learn more about which models can be used with each operation "
                                               "here: https://go.microsoft.com/fwlink/?linkid=2197993.")),
    ("embeddings-on-chat-deployment", f"/openai/deployments/gpt4o-deploy/embeddings?api-version={VERSION}",
     KEY_HEADERS, 400,
     azure_error_body("OperationNotSupported", "The embeddings operation does not work with the specified model, "
                                               "gpt-4o. Please choose different model and try again. You can learn "
                                               "more about which models can be used with each operation here: "
                                               "https://go.microsoft.com/fwlink/?linkid=2197993.")),
    ("openai-style-path", "/v1/chat/completions", KEY_HEADERS, 404, azure_error_body("404", "Resource not found")),
    ("deployment-without-operation", f"/openai/deployments/gpt4o-deploy?api-version={VERSION}", KEY_HEADERS, 404,
     azure_error_body("404", "Resource not found")),
]


@pytest.mark.parametrize("path, headers, status, expected", [case[1:] for case in ROUTE_REJECTIONS],
                         ids=[case[0] for case in ROUTE_REJECTIONS])
def test_azure_rejects_bad_urls_keys_and_deployments(http, zmock, path, headers, status, expected):
    response = post(http, zmock, path, z_body(), headers=headers)
    assert response.status_code == status, response.text
    assert response.json() == expected
    assert zmock.rejections == [(status, expected)]


def test_azure_v1_route_takes_the_deployment_from_the_body(http, zmock):
    assert post(http, zmock, "/openai/v1/chat/completions", z_body(model="gpt4o-deploy")).status_code == 200
    assert post(http, zmock, "/openai/v1/chat/completions?api-version=preview", z_body(model="gpt4o-deploy"),
                headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    missing = post(http, zmock, "/openai/v1/chat/completions", z_body())
    assert (missing.status_code, missing.json()) == (400, openai_error_body("you must provide a model parameter"))
    unknown = post(http, zmock, "/openai/v1/chat/completions", z_body(model="gpt-4o"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "DeploymentNotFound")


BODY_REJECTIONS = [
    # (case id, body, OpenAI-envelope error) -- the OpenAI mock's validators, reused
    ("not-json", b"{nope", None),
    ("unknown-field", z_body(thinking={"type": "enabled"}),
     openai_error_body("Unrecognized request argument supplied: thinking")),
    ("messages-missing", {"model": "x"}, openai_error_body("Missing required parameter: 'messages'.", param="messages",
                                                           code="missing_required_parameter")),
    ("temperature-high", z_body(temperature=3),
     openai_error_body("Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.",
                       param="temperature", code="decimal_above_max_value")),
    ("tool-without-call", z_body(messages=[{"role": "user", "content": "hi"},
                                           {"role": "tool", "tool_call_id": "c", "content": "x"}]),
     openai_error_body("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                       "with 'tool_calls'.", param="messages.[1].role")),
]


@pytest.mark.parametrize("body, expected", [case[1:] for case in BODY_REJECTIONS],
                         ids=[case[0] for case in BODY_REJECTIONS])
def test_azure_validates_bodies_like_openai(http, zmock, body, expected):
    response = post(http, zmock, CHAT, body)
    assert response.status_code == 400, response.text
    if expected is None:
        assert response.json()["error"]["message"].startswith("We could not parse the JSON body of your request.")
    else:
        assert response.json() == expected


def test_azure_ignores_the_body_model_on_deployment_routes(http, zmock):
    for body in (z_body(), z_body(model="anything-at-all")):
        response = post(http, zmock, CHAT, body)
        assert response.status_code == 200 and response.json()["model"] == "gpt-4o-2024-11-20"
    assert post(http, zmock, CHAT, z_body(model=5)).status_code == 400  # still a string when present


# ----------------------------------------------------------------------------------------------
# Default replies
# ----------------------------------------------------------------------------------------------


def test_azure_chat_completion_has_filter_annotations(http, zmock):
    response = post(http, zmock, CHAT, z_body())
    assert response.headers["content-type"] == "application/json"
    uuid.UUID(response.headers["apim-request-id"])
    body = response.json()
    ChatCompletion.model_validate(body)
    assert list(body) == sorted(body)  # Azure serializes keys sorted
    assert "service_tier" not in body
    assert body["model"] == "gpt-4o-2024-11-20" and body["object"] == "chat.completion"
    assert body["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": {
        "hate": SAFE, "jailbreak": {"filtered": False, "detected": False}, "self_harm": SAFE, "sexual": SAFE,
        "violence": SAFE}}]
    choice = body["choices"][0]
    assert choice["content_filter_results"] == {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Echo: Hello there", "stop")
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_azure_truncation_and_n(http, zmock):
    body = post(http, zmock, CHAT, z_body(messages=[{"role": "user", "content": "a b c"}], max_tokens=2, n=2)).json()
    assert [choice["message"]["content"] for choice in body["choices"]] == ["Echo: a", "Echo: a"]
    assert {choice["finish_reason"] for choice in body["choices"]} == {"length"}


def test_azure_stream_starts_with_the_prompt_filter_chunk(http, zmock):
    response = post(http, zmock, CHAT, z_body(stream=True, stream_options={"include_usage": True}))
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame[6:] for frame in response.text.split("\n\n") if frame]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert chunks[0] == {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                         "prompt_filter_results": prompt_filter_results()}
    for chunk in chunks[1:]:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["model"] == "gpt-4o-2024-11-20" and "service_tier" not in chunk
    role, *contents, finish, usage = chunks[1:]
    assert role["choices"][0]["content_filter_results"] == {}
    assert all(c["choices"][0]["content_filter_results"] == safe_content_filter_results() for c in contents)
    assert "".join(c["choices"][0]["delta"]["content"] for c in contents) == "Echo: Hello there"
    assert (finish["choices"][0]["finish_reason"], finish["choices"][0]["content_filter_results"]) == ("stop", {})
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3


def test_azure_embeddings_and_completions(http, zmock):
    embeddings = post(http, zmock, f"/openai/deployments/embed-deploy/embeddings?api-version={VERSION}",
                      {"input": ["a", "b"], "dimensions": 8}).json()
    CreateEmbeddingResponse.model_validate(embeddings)
    assert embeddings["model"] == "text-embedding-3-small" and len(embeddings["data"][1]["embedding"]) == 8
    invalid = post(http, zmock, f"/openai/deployments/embed-deploy/embeddings?api-version={VERSION}", {"input": ""})
    assert invalid.status_code == 400 and invalid.json()["error"]["message"].startswith("'$.input' is invalid.")
    completion = post(http, zmock, f"/openai/deployments/instruct-deploy/completions?api-version={VERSION}",
                      {"prompt": "Say hi", "max_tokens": 5}).json()
    Completion.model_validate(completion)
    assert (completion["model"], completion["choices"][0]["text"]) == ("gpt-35-turbo-instruct", "Echo: Say hi")


# ----------------------------------------------------------------------------------------------
# The official AzureOpenAI client against the mock
# ----------------------------------------------------------------------------------------------


def test_azure_sdk_chat_stream_embeddings_and_completions(client, zmock):
    completion = client.chat.completions.create(model="gpt4o-deploy", messages=[{"role": "user", "content": "Hi SDK"}])
    assert (completion.choices[0].message.content, completion.model) == ("Echo: Hi SDK", "gpt-4o-2024-11-20")
    sent = zmock.requests[-1]
    assert sent.path == "/openai/deployments/gpt4o-deploy/chat/completions"
    assert sent.query == {"api-version": [VERSION]} and sent.headers["api-key"] == KEY
    stream = client.chat.completions.create(model="gpt4o-deploy", messages=[{"role": "user", "content": "Hi stream"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices == [] and chunks[0].id == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: Hi stream"
    assert chunks[-1].usage.completion_tokens == 3
    embeddings = client.embeddings.create(model="embed-deploy", input="vector me", encoding_format="float")
    assert len(embeddings.data[0].embedding) == 1536
    legacy = client.completions.create(model="instruct-deploy", prompt="Say hi")
    assert legacy.choices[0].text == "Echo: Say hi"


def test_azure_sdk_v1_route_with_the_plain_openai_client(zmock):
    with openai.OpenAI(base_url=zmock.base_url + "/openai/v1/", api_key=KEY, max_retries=0) as v1:
        reply = v1.chat.completions.create(model="gpt4o-deploy", messages=[{"role": "user", "content": "Hi v1"}])
    assert reply.choices[0].message.content == "Echo: Hi v1"
    assert zmock.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_azure_sdk_raises_typed_errors(client, zmock):
    zmock.enqueue(Reply(400, azure_content_filter_error()))
    with pytest.raises(openai.BadRequestError) as filtered:
        client.chat.completions.create(model="gpt4o-deploy", messages=[{"role": "user", "content": "bad"}])
    assert filtered.value.code == "content_filter"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing-deploy", messages=[{"role": "user", "content": "x"}])
    with openai.AzureOpenAI(azure_endpoint=zmock.base_url, api_key="wrong", api_version=VERSION, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="gpt4o-deploy", messages=[{"role": "user", "content": "x"}])


def test_azure_sdk_reassembles_a_scripted_tool_call_stream(client, zmock):
    scripted = AzureOpenAIMock.completion(None, tool_calls=[tool_call("get_weather", {"city": "Paris"}, id="call_9")],
                                          finish_reason="tool_calls")
    ChatCompletion.model_validate(scripted)
    zmock.enqueue(StreamEvents(azure_chunks(scripted)))
    with client.chat.completions.stream(model="gpt4o-deploy", messages=[{"role": "user", "content": "W?"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].id == "call_9"
    assert final.choices[0].finish_reason == "tool_calls"


# ----------------------------------------------------------------------------------------------
# Helpers and scripted actions
# ----------------------------------------------------------------------------------------------


def test_azure_content_filter_error_has_the_documented_shape():
    error = azure_content_filter_error("violence", "medium")["error"]
    assert (error["code"], error["param"], error["status"], error["type"]) == ("content_filter", "prompt", 400, None)
    assert error["message"].startswith("The response was filtered due to the prompt triggering Azure OpenAI's content "
                                       "management policy.")
    inner = error["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    assert inner["content_filter_result"]["hate"] == SAFE
    jailbreak = azure_content_filter_error("jailbreak")["error"]["innererror"]["content_filter_result"]["jailbreak"]
    assert jailbreak == {"filtered": True, "detected": True}
    assert azure_error_body("429", "Rate limit is exceeded.") == {"error": {"code": "429",
                                                                            "message": "Rate limit is exceeded."}}
    assert azure_error_body("content_filter", "x", 400)["error"]["status"] == 400


def test_azure_sse_helper_sorts_keys():
    assert sse([{"b": 1, "a": 2}, "[DONE]"]) == b'data: {"a":2,"b":1}\n\ndata: [DONE]\n\n'
    body = azure_completion(AzureOpenAIMock.completion("hi"))
    assert "prompt_filter_results" in body and "service_tier" not in body


def test_azure_scripted_actions(http, zmock):
    zmock.enqueue(Reply(429, azure_error_body("429", "Rate limit is exceeded. Try again in 2 seconds."),
                        headers={"retry-after": "2", "retry-after-ms": "2000"}),
                  Reply(200, {"scripted": True}, validate=False), Default(), Delay(0.2))
    limited = post(http, zmock, CHAT, z_body())
    assert (limited.status_code, limited.headers["retry-after-ms"]) == (429, "2000")
    assert post(http, zmock, "/nowhere", b"junk", headers={}).json() == {"scripted": True}
    assert post(http, zmock, CHAT, z_body()).status_code == 200
    started = time.monotonic()
    assert post(http, zmock, CHAT, z_body()).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_azure_hang_and_resets(zmock):
    zmock.enqueue(Hang(1.0))
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        post(client, zmock, CHAT, z_body())
    zmock.enqueue(Reset(), ResetMidBody(), StreamEvents(azure_chunks(AzureOpenAIMock.completion("a b c"))[:3],
                                                        then_reset=True))
    with httpx.Client(timeout=5) as client:
        for _ in range(2):
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                post(client, zmock, CHAT, z_body())
        received = b""
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            with client.stream("POST", zmock.base_url + CHAT, json=z_body(stream=True),
                               headers=KEY_HEADERS) as response:
                for piece in response.iter_bytes():
                    received += piece
    assert received.count(b"data: ") == 3 and received.startswith(b'data: {"choices":[],')
