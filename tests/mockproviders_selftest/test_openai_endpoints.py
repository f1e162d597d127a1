"""Self-test of the OpenAI mock's embeddings and legacy completions endpoints: OpenAI's
validation and messages, its response shapes (checked against the SDK's types) and streams.

Run: cd /work/main && .venv/bin/python -m pytest tests/mockproviders_selftest -q
"""

from __future__ import annotations

import base64
import json
import math
import struct

import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse

from mockproviders import StreamEvents
from mockproviders.openai import openai_error_body, text_completion, text_completion_chunks

KEY = "test-openai-key"
HEADERS = {"authorization": f"Bearer {KEY}"}
INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
UNPARSABLE = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
              "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If "
              "you have trouble figuring out how to fix this, please contact us through our help center at "
              "help.openai.com.)")


def post(http, mock, path, body, headers=HEADERS):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(mock.base_url + path, content=content, headers={"content-type": "application/json", **headers})


def e_body(**overrides) -> dict:
    return {"model": "text-embedding-3-small", "input": "The food was delicious", **overrides}


def c_body(**overrides) -> dict:
    return {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", **overrides}


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------

EMBEDDING_REJECTIONS = [
    # (case id, body, status, error body)
    ("not-json", b"{nope", 400, openai_error_body(UNPARSABLE)),
    ("unknown-field", e_body(task_type="query"), 400,
     openai_error_body("Unrecognized request argument supplied: task_type")),
    ("missing-model", {"input": "x"}, 400, openai_error_body("you must provide a model parameter")),
    ("missing-input", {"model": "text-embedding-3-small"}, 400,
     openai_error_body("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")),
    *[(f"input-{label}", e_body(input=value), 400, openai_error_body(INVALID_INPUT))
      for label, value in [("empty-string", ""), ("empty-list", []), ("empty-item", ["ok", ""]),
                           ("mixed", ["a", 1]), ("number", 5), ("object", {"text": "x"}), ("empty-tokens", [[]]),
                           ("negative-token", [1, -2]), ("nested-strings", [["a"]]), ("too-many", ["a"] * 2049)]],
    ("encoding-format", e_body(encoding_format="binary"), 400,
     openai_error_body("Invalid value: 'binary'. Supported values are: 'float', and 'base64'.",
                       param="encoding_format", code="invalid_value")),
    ("dimensions-zero", e_body(dimensions=0), 400,
     openai_error_body("Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got 0 instead.",
                       param="dimensions", code="integer_below_min_value")),
    ("dimensions-string", e_body(dimensions="256"), 400,
     openai_error_body("Invalid type for 'dimensions': expected an integer, but got a string instead.",
                       param="dimensions", code="invalid_type")),
    ("dimensions-on-ada", e_body(model="text-embedding-ada-002", dimensions=256), 400,
     openai_error_body("This model does not support specifying dimensions.", param="dimensions")),
]


@pytest.mark.parametrize("body, status, expected", [case[1:] for case in EMBEDDING_REJECTIONS],
                         ids=[case[0] for case in EMBEDDING_REJECTIONS])
def test_embeddings_reject_invalid_requests(http, omock, body, status, expected):
    response = post(http, omock, "/v1/embeddings", body)
    assert response.status_code == status, response.text
    assert response.json() == expected
    assert omock.rejections == [(status, expected)]


@pytest.mark.parametrize("value, count, tokens", [("one two three", 1, 3), (["a", "b c"], 2, 3), ([1, 2, 3], 1, 3),
                                                  ([[1, 2], [3]], 2, 3)])
def test_embeddings_accept_every_input_shape(http, omock, value, count, tokens):
    body = post(http, omock, "/v1/embeddings", e_body(input=value, user="u1")).json()
    CreateEmbeddingResponse.model_validate(body)
    assert [item["index"] for item in body["data"]] == list(range(count))
    assert all(item["object"] == "embedding" and len(item["embedding"]) == 1536 for item in body["data"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert (body["object"], body["model"]) == ("list", "text-embedding-3-small")


def test_embeddings_are_deterministic_unit_vectors_and_base64_matches(http, omock):
    floats = post(http, omock, "/v1/embeddings", e_body(dimensions=16)).json()["data"][0]["embedding"]
    assert len(floats) == 16 and math.isclose(sum(v * v for v in floats), 1.0, rel_tol=1e-5)
    assert post(http, omock, "/v1/embeddings", e_body(dimensions=16)).json()["data"][0]["embedding"] == floats
    encoded = post(http, omock, "/v1/embeddings", e_body(dimensions=16, encoding_format="base64")).json()
    decoded = struct.unpack("<16f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert list(decoded) == floats
    large = post(http, omock, "/v1/embeddings", e_body(model="text-embedding-3-large")).json()
    assert len(large["data"][0]["embedding"]) == 3072


def test_embeddings_through_the_sdk(omock):
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key=KEY, max_retries=0)
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=8)
    assert [len(item.embedding) for item in result.data] == [8, 8]
    # The SDK asks for base64 by default and decodes it back into floats.
    assert omock.requests[-1].json["encoding_format"] == "base64"
    plain = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=8, encoding_format="float")
    assert plain.data[0].embedding == result.data[0].embedding


# ----------------------------------------------------------------------------------------------
# Legacy completions
# ----------------------------------------------------------------------------------------------

COMPLETION_REJECTIONS = [
    ("unknown-field", c_body(messages=[]), 400, openai_error_body("Unrecognized request argument supplied: messages")),
    ("missing-model", {"prompt": "x"}, 400, openai_error_body("you must provide a model parameter")),
    ("missing-prompt", {"model": "gpt-3.5-turbo-instruct"}, 400,
     openai_error_body("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")),
    ("prompt-object", c_body(prompt={"text": "x"}), 400,
     openai_error_body("Invalid type for 'prompt': expected a string or an array of strings or tokens, but got an "
                       "object instead.", param="prompt", code="invalid_type")),
    ("chat-model", c_body(model="gpt-4o-mini"), 404,
     openai_error_body("This is a chat model and not supported in the v1/completions endpoint. Did you mean to use "
                       "v1/chat/completions?", param="model")),
    ("max-tokens-negative", c_body(max_tokens=-1), 400,
     openai_error_body("Invalid 'max_tokens': integer below minimum value. Expected a value >= 0, but got -1 instead.",
                       param="max_tokens", code="integer_below_min_value")),
    ("logprobs-high", c_body(logprobs=6), 400,
     openai_error_body("Invalid 'logprobs': integer above maximum value. Expected a value <= 5, but got 6 instead.",
                       param="logprobs", code="integer_above_max_value")),
    ("best-of-below-n", c_body(n=3, best_of=2), 400,
     openai_error_body("best_of must be greater than or equal to n.", param="best_of")),
    ("echo-string", c_body(echo="yes"), 400,
     openai_error_body("Invalid type for 'echo': expected a boolean, but got a string instead.", param="echo",
                       code="invalid_type")),
    ("stream-options-without-stream", c_body(stream_options={"include_usage": True}), 400,
     openai_error_body("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                       param="stream_options")),
    ("stop-too-many", c_body(stop=list("abcde")), 400,
     openai_error_body("Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array "
                       "with length 5 instead.", param="stop", code="array_above_max_length")),
]


@pytest.mark.parametrize("body, status, expected", [case[1:] for case in COMPLETION_REJECTIONS],
                         ids=[case[0] for case in COMPLETION_REJECTIONS])
def test_completions_reject_invalid_requests(http, omock, body, status, expected):
    response = post(http, omock, "/v1/completions", body)
    assert response.status_code == status, response.text
    assert response.json() == expected


def test_completion_default_reply(http, omock):
    body = post(http, omock, "/v1/completions", c_body()).json()
    Completion.model_validate(body)
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["choices"] == [{"text": "Echo: Say this is a test", "index": 0, "logprobs": None,
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}


def test_completion_max_tokens_defaults_to_16_and_prompts_fan_out(http, omock):
    long_prompt = " ".join(f"w{i}" for i in range(30))
    body = post(http, omock, "/v1/completions", c_body(prompt=long_prompt)).json()
    assert len(body["choices"][0]["text"].split()) == 16 and body["choices"][0]["finish_reason"] == "length"
    many = post(http, omock, "/v1/completions", c_body(prompt=["a", "b"], n=2, stop="b")).json()
    assert [(c["index"], c["text"]) for c in many["choices"]] == [(0, "Echo: a"), (1, "Echo: a"), (2, "Echo: "),
                                                                  (3, "Echo: ")]
    tokens = post(http, omock, "/v1/completions", c_body(prompt=[1, 2, 3], max_tokens=0)).json()
    assert tokens["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}


def test_completion_stream(http, omock):
    response = post(http, omock, "/v1/completions", c_body(stream=True, stream_options={"include_usage": True}))
    frames = [frame[6:] for frame in response.text.split("\n\n") if frame]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    # Intermediate chunks say "finish_reason": null, which the SDK's (non-stream) type does not allow.
    for chunk in chunks[-2:]:
        Completion.model_validate(chunk)
    assert all(chunk["object"] == "text_completion" and chunk["choices"][0]["finish_reason"] is None
               for chunk in chunks[:-2])
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "Echo: Say this is a test"
    assert chunks[-2]["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 11
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


def test_completion_sdk_round_trip_and_scripted_stream(omock):
    client = openai.OpenAI(base_url=omock.base_url + "/v1", api_key=KEY, max_retries=0)
    assert client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi").choices[0].text == "Echo: Hi"
    scripted = text_completion([("Scripted reply", "length")], "gpt-3.5-turbo-instruct", 3)
    omock.enqueue(StreamEvents(text_completion_chunks(scripted)))
    stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == "Scripted reply"
    assert chunks[-1].choices[0].finish_reason == "length"
