"""Self-test of tools/mockproviders/gemini.py: the Gemini API mock refuses what the API refuses,
in the API's words and envelope, answers in its wire formats, and misbehaves as scripted.

Run: cd /work/main && .venv/bin/python -m pytest tests/mockproviders_selftest -q
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time

import httpx
import pytest

from mockproviders import Default, Delay, Hang, Reply, Reset, ResetMidBody, StreamEvents
from mockproviders.gemini import (GeminiMock, function_call_part, gemini_error_body, json_array_frames, response_chunks,
                                  sse_frame, stream_events)

try:  # the official SDK cross-checks the wire format; the mock itself needs only the stdlib
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types
except ImportError:
    genai = None

needs_genai_sdk = pytest.mark.skipif(genai is None, reason="google-genai (3.4.0) not installed")

KEY = "test-gemini-key"
KEY_HEADERS = {"x-goog-api-key": KEY}
MODEL = "gemini-2.5-flash"
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SIGNATURE = base64.b64encode(b"opaque-signature").decode()


@pytest.fixture(scope="module")
def gemini_server():
    with GeminiMock() as mock:
        yield mock


@pytest.fixture
def gmock(gemini_server):
    gemini_server.reset()
    yield gemini_server
    gemini_server.reset()


def post(http, mock, body, method="generateContent", model=MODEL, headers=KEY_HEADERS, query=""):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(f"{mock.base_url}/v1beta/models/{model}:{method}{query}", content=content,
                     headers={"content-type": "application/json", **headers})


def user(*parts) -> dict:
    return {"role": "user", "parts": [{"text": part} if isinstance(part, str) else part for part in parts]}


def model_turn(*parts) -> dict:
    return {"role": "model", "parts": [{"text": part} if isinstance(part, str) else part for part in parts]}


def g_body(**overrides) -> dict:
    body = {"contents": [user("Hello there")]}
    body.update(overrides)
    return body


def call(name="get_weather", args=None, signature=None) -> dict:
    return function_call_part(name, args if args is not None else {"city": "Paris"}, thought_signature=signature)


def answer(name="get_weather", response=None) -> dict:
    return {"functionResponse": {"name": name, "response": response if response is not None else {"temp": 21}}}


TOOLS = [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                                     "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}]
TOOL_FLOW = [user("Weather in Paris?"), model_turn(call()), user(answer())]


def unknown(name: str, at: str | None = None) -> str:
    where = f" at '{at}'" if at else ""
    return f"Invalid JSON payload received. Unknown name \"{name}\"{where}: Cannot find field."


def invalid(path: str, kind: str, value: str) -> str:
    return f"Invalid value at '{path}' ({kind}), {value}"


def enum_type(name: str) -> str:
    return f"type.googleapis.com/google.ai.generativelanguage.v1beta.{name}"


# ----------------------------------------------------------------------------------------------
# Stage 1: proto3-JSON parsing -- every violation at once, as BadRequest field violations
# ----------------------------------------------------------------------------------------------

PARSE_REJECTIONS = [
    # (case id, body, [(field or None, description), ...])
    ("unknown-top-level", g_body(temperature=0.2), [(None, unknown("temperature"))]),
    ("openai-shaped-body", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
     [(None, unknown("messages"))]),
    ("unknown-in-generation-config", g_body(generationConfig={"effortLevel": "HIGH"}),
     [("generation_config", unknown("effortLevel", "generation_config"))]),
    ("unknown-in-part", g_body(contents=[user({"text": "hi", "cache_control": {}})]),
     [("contents[0].parts[0]", unknown("cache_control", "contents[0].parts[0]"))]),
    ("json-schema-keyword-in-parameters", g_body(tools=[{"functionDeclarations": [{
        "name": "f", "parameters": {"type": "OBJECT", "additionalProperties": False,
                                    "properties": {"a": {"type": "STRING", "const": "x"}}}}]}]),
     [("tools[0].function_declarations[0].parameters",
       unknown("additionalProperties", "tools[0].function_declarations[0].parameters")),
      ("tools[0].function_declarations[0].parameters.properties[0].value",
       unknown("const", "tools[0].function_declarations[0].parameters.properties[0].value"))]),
    ("openai-tool-shape", g_body(tools=[{"type": "function", "function": {"name": "f"}}]),
     [("tools[0]", unknown("type", "tools[0]")), ("tools[0]", unknown("function", "tools[0]"))]),
    ("several-at-once", g_body(foo=1, generationConfig={"temperature": "hot", "bar": 2}),
     [(None, unknown("foo")),
      ("generation_config.temperature", invalid("generation_config.temperature", "TYPE_FLOAT", '"hot"')),
      ("generation_config", unknown("bar", "generation_config"))]),
    ("max-output-tokens-fraction", g_body(generationConfig={"maxOutputTokens": 1.5}),
     [("generation_config.max_output_tokens", invalid("generation_config.max_output_tokens", "TYPE_INT32", "1.5"))]),
    ("candidate-count-bool", g_body(generationConfig={"candidateCount": True}),
     [("generation_config.candidate_count", invalid("generation_config.candidate_count", "TYPE_INT32", "true"))]),
    ("role-not-string", g_body(contents=[{"role": 1, "parts": [{"text": "hi"}]}]),
     [("contents[0].role", invalid("contents[0].role", "TYPE_STRING", "1"))]),
    ("text-not-string", g_body(contents=[user({"text": 5})]),
     [("contents[0].parts[0].text", invalid("contents[0].parts[0].text", "TYPE_STRING", "5"))]),
    ("response-logprobs-string", g_body(generationConfig={"responseLogprobs": "yes"}),
     [("generation_config.response_logprobs", invalid("generation_config.response_logprobs", "TYPE_BOOL",
                                                      '"yes"'))]),
    ("content-not-object", g_body(contents=["hello"]),
     [("contents[0]", invalid("contents[0]", enum_type("Content"), '"hello"'))]),
    ("generation-config-list", g_body(generationConfig=[{"temperature": 1}]),
     [(None, "Invalid JSON payload received. Unknown name \"generationConfig\": Proto field is not repeating, "
             "cannot start list.")]),
    ("schema-type-list", g_body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": ["string", "null"]}}}}]}]),
     [("tools[0].function_declarations[0].parameters.properties[0].value",
       "Invalid JSON payload received. Unknown name \"type\" at "
       "'tools[0].function_declarations[0].parameters.properties[0].value': Proto field is not repeating, cannot "
       "start list.")]),
    ("schema-type-unknown", g_body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "text"}}}}]}]),
     [("tools[0].function_declarations[0].parameters.properties[0].value.type",
       invalid("tools[0].function_declarations[0].parameters.properties[0].value.type", enum_type("Type"),
               '"text"'))]),
    ("mode-lowercase", g_body(tools=TOOLS, toolConfig={"functionCallingConfig": {"mode": "auto"}}),
     [("tool_config.function_calling_config.mode",
       invalid("tool_config.function_calling_config.mode", enum_type("FunctionCallingConfig.Mode"), '"auto"'))]),
    ("mode-openai-word", g_body(tools=TOOLS, toolConfig={"functionCallingConfig": {"mode": "REQUIRED"}}),
     [("tool_config.function_calling_config.mode",
       invalid("tool_config.function_calling_config.mode", enum_type("FunctionCallingConfig.Mode"), '"REQUIRED"'))]),
    ("safety-category", g_body(safetySettings=[{"category": "HARASSMENT", "threshold": "BLOCK_NONE"}]),
     [("safety_settings[0].category", invalid("safety_settings[0].category", enum_type("HarmCategory"),
                                              '"HARASSMENT"'))]),
    ("thinking-level", g_body(generationConfig={"thinkingConfig": {"thinkingLevel": "EXTREME"}}),
     [("generation_config.thinking_config.thinking_level",
       invalid("generation_config.thinking_config.thinking_level", enum_type("ThinkingConfig.ThinkingLevel"),
               '"EXTREME"'))]),
    ("data-url-left-in", g_body(contents=[user({"inlineData": {"mimeType": "image/png",
                                                               "data": "data:image/png;base64," + PNG_1X1}})]),
     [("contents[0].parts[0].inline_data.data",
       "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed for "
       f"\"data:image/png;base64,{PNG_1X1}\"")]),
    ("args-as-string", g_body(contents=[user("hi"), model_turn({"functionCall": {"name": "f", "args": "{}"}}),
                                        user(answer("f"))]),
     [("contents[1].parts[0].function_call.args",
       invalid("contents[1].parts[0].function_call.args", "type.googleapis.com/google.protobuf.Struct", '"{}"'))]),
    ("function-response-as-string", g_body(contents=[
        user("hi"), model_turn(call()), user({"functionResponse": {"name": "get_weather", "response": "21C"}})]),
     [("contents[2].parts[0].function_response.response",
       invalid("contents[2].parts[0].function_response.response", "type.googleapis.com/google.protobuf.Struct",
               '"21C"'))]),
    ("two-data-members", g_body(contents=[user({"text": "hi", "inlineData": {"mimeType": "image/png",
                                                                             "data": PNG_1X1}})]),
     [("contents[0].parts[0]", "Invalid value at 'contents[0].parts[0]' (oneof), oneof field 'data' is already "
                               "set. Cannot set 'inlineData'")]),
    ("thought-signature-not-base64", g_body(contents=[user("hi"), model_turn({**call(), "thoughtSignature": "@@"}),
                                                      user(answer())]),
     [("contents[1].parts[0].thought_signature",
       "Invalid value at 'contents[1].parts[0].thought_signature' (TYPE_BYTES), Base64 decoding failed for \"@@\"")]),
    ("root-array", [g_body()], [(None, 'Invalid JSON payload received. Unknown name "": Root element must be a '
                                       'message.')]),
    ("not-json", b"{nope", [(None, "Invalid JSON payload received. Unexpected token.")]),
]


@pytest.mark.parametrize("body, violations", [case[1:] for case in PARSE_REJECTIONS],
                         ids=[case[0] for case in PARSE_REJECTIONS])
def test_gemini_parse_errors_list_every_violation(http, gmock, body, violations):
    response = post(http, gmock, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "\n".join(description for _, description in violations)
    assert error["details"] == [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
        {**({"field": field} if field else {}), "description": description} for field, description in violations]}]
    assert gmock.rejections == [(400, response.json())]


# ----------------------------------------------------------------------------------------------
# Stages 2 and 3: required fields and request rules, each with its own message and no details
# ----------------------------------------------------------------------------------------------

MIXED = ("Please ensure that function call turn contains at least one function_call part which can not be mixed "
         "with function_response parts.")
CALL_POSITION = ("Please ensure that function call turn comes immediately after a user turn or after a function "
                 "response turn.")
RESPONSE_POSITION = "Please ensure that function response turn comes immediately after a function call turn."
COUNT = ("Please ensure that the number of function response parts is equal to the number of function call parts of "
         "the function call turn.")
FUNCTION_NAME = ("The GenerateContentRequest proto is invalid:\n  * tools[0].function_declarations[0].name: "
                 "[FIELD_INVALID] Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, "
                 "0-9, or contain underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.")


def declared(name: str) -> list[dict]:
    return [{"functionDeclarations": [{"name": name, "description": "d"}]}]


RULE_REJECTIONS = [
    # (case id, body, model, expected message)
    ("empty-body", b"", MODEL, "* GenerateContentRequest.contents: contents is not specified\n"),
    ("contents-missing", {"generationConfig": {}}, MODEL, "* GenerateContentRequest.contents: contents is not "
                                                          "specified\n"),
    ("contents-empty", g_body(contents=[]), MODEL, "* GenerateContentRequest.contents: contents is not specified\n"),
    ("parts-empty-and-part-empty", g_body(contents=[{"role": "user", "parts": []}, user({})]), MODEL,
     "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n"
     "* GenerateContentRequest.contents[1].parts[0].data: required oneof field 'data' must have one initialized "
     "field\n"),
    ("only-a-thought-flag", g_body(contents=[user({"thought": True})]), MODEL,
     "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one initialized "
     "field\n"),
    ("system-instruction-empty-part", g_body(systemInstruction={"parts": [{}]}), MODEL,
     "* GenerateContentRequest.system_instruction.parts[0].data: required oneof field 'data' must have one "
     "initialized field\n"),
    ("system-instruction-image", g_body(systemInstruction={"parts": [{"inlineData": {"mimeType": "image/png",
                                                                                     "data": PNG_1X1}}]}), MODEL,
     "* GenerateContentRequest.system_instruction.parts[0]: system_instruction supports text parts only.\n"),
    ("function-response-name-empty", g_body(contents=[user("hi"), model_turn(call()), user(answer(""))],
                                            tools=TOOLS), MODEL,
     "* GenerateContentRequest.contents[2].parts[0].function_response.name: Name cannot be empty.\n"),
    ("empty-object-parameters", g_body(tools=[{"functionDeclarations": [{
        "name": "list_files", "parameters": {"type": "object", "properties": {}}}]}]), MODEL,
     "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties: should be non-empty for "
     "OBJECT type\n"),
    ("nested-empty-object", g_body(tools=[{"functionDeclarations": [{"name": "act", "parameters": {
        "type": "OBJECT", "properties": {"action": {"type": "OBJECT"}}}}]}]), MODEL,
     "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties[action].properties: should "
     "be non-empty for OBJECT type\n"),
    *[(f"role-{role}", g_body(contents=[{"role": role, "parts": [{"text": "hi"}]}]), MODEL,
       "Please use a valid role: user, model.") for role in ("assistant", "system", "tool", "function")],
    *[(f"function-name-{label}", g_body(tools=declared(name)), MODEL, FUNCTION_NAME)
      for label, name in [("space", "get weather"), ("leading-digit", "1tool"), ("too-long", "x" * 65),
                          ("empty", ""), ("slash", "a/b")]],
    ("calling-config-without-declarations", g_body(toolConfig={"functionCallingConfig": {"mode": "AUTO"}}), MODEL,
     "Function calling config is set without function_declarations."),
    ("calling-config-with-search-only", g_body(tools=[{"googleSearch": {}}],
                                               toolConfig={"functionCallingConfig": {"mode": "ANY"}}), MODEL,
     "Function calling config is set without function_declarations."),
    ("allowed-names-with-auto", g_body(tools=TOOLS, toolConfig={"functionCallingConfig": {
        "mode": "AUTO", "allowedFunctionNames": ["get_weather"]}}), MODEL,
     "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names "
     "may only be set when mode is ANY.\n"),
    ("temperature-high", g_body(generationConfig={"temperature": 2.5}), MODEL,
     "* GenerateContentRequest.generation_config.temperature: temperature must be in the range [0.0, 2.0].\n"),
    ("top-p-high", g_body(generationConfig={"topP": 1.5}), MODEL,
     "* GenerateContentRequest.generation_config.top_p: top_p must be in the range [0.0, 1.0].\n"),
    ("candidate-count-zero", g_body(generationConfig={"candidateCount": 0}), MODEL,
     "* GenerateContentRequest.generation_config.candidate_count: candidate_count must be positive.\n"),
    ("max-output-tokens-zero", g_body(generationConfig={"maxOutputTokens": 0}), MODEL,
     "* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be positive.\n"),
    ("six-stop-sequences", g_body(generationConfig={"stopSequences": list("abcdef")}), MODEL,
     "* GenerateContentRequest.generation_config.stop_sequences: stop_sequences must have at most 5 elements.\n"),
    ("logprobs-high", g_body(generationConfig={"responseLogprobs": True, "logprobs": 21}), MODEL,
     "* GenerateContentRequest.generation_config.logprobs: logprobs must be in the range [0, 20].\n"),
    ("mime-type", g_body(generationConfig={"responseMimeType": "application/x-ndjson"}), MODEL,
     "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, "
     "`application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n"),
    ("schema-without-json-mime", g_body(generationConfig={"responseSchema": {"type": "STRING"}}), MODEL,
     "* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be application/json or "
     "text/x.enum when response_schema is set.\n"),
    ("json-schema-with-enum-mime", g_body(generationConfig={"responseMimeType": "text/x.enum",
                                                            "responseJsonSchema": {"type": "string"}}), MODEL,
     "* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be application/json "
     "when response_json_schema is set.\n"),
    ("both-schemas", g_body(generationConfig={"responseMimeType": "application/json",
                                              "responseSchema": {"type": "STRING"},
                                              "responseJsonSchema": {"type": "string"}}), MODEL,
     "* GenerateContentRequest.generation_config.response_schema: response_schema and response_json_schema cannot "
     "both be set.\n"),
    ("json-mode-with-tools", g_body(tools=TOOLS, generationConfig={"responseMimeType": "application/json"}), MODEL,
     "Tool use with a response mime type: 'application/json' is unsupported"),
    # the function-calling turn structure
    ("call-and-response-in-one-turn", g_body(contents=[user("hi"), model_turn(call(), answer())], tools=TOOLS), MODEL,
     MIXED),
    ("history-starts-with-a-call", g_body(contents=[model_turn(call()), user(answer())], tools=TOOLS), MODEL,
     CALL_POSITION),
    ("call-after-model-turn", g_body(contents=[user("hi"), model_turn("Let me check."), model_turn(call()),
                                               user(answer())], tools=TOOLS), MODEL, CALL_POSITION),
    ("response-without-call", g_body(contents=[user("hi"), model_turn("ok"), user(answer())], tools=TOOLS), MODEL,
     RESPONSE_POSITION),
    ("response-first", g_body(contents=[user(answer())], tools=TOOLS), MODEL, RESPONSE_POSITION),
    ("fewer-responses", g_body(contents=[user("hi"), model_turn(call(), call(args={"city": "Rome"})),
                                         user(answer())], tools=TOOLS), MODEL, COUNT),
    ("more-responses", g_body(contents=[user("hi"), model_turn(call()), user(answer(), answer())], tools=TOOLS),
     MODEL, COUNT),
    ("call-left-unanswered", g_body(contents=[user("hi"), model_turn(call()), user("never mind")], tools=TOOLS),
     MODEL, COUNT),
    ("gemini-3-missing-signature", g_body(contents=TOOL_FLOW, tools=TOOLS), "gemini-3-flash-preview",
     "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
     "correctly, and missing thought_signature may lead to degraded model performance. Additional data, function "
     "call `default_api:get_weather` , position 2. Please refer to "
     "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."),
    ("gemini-3-response-name-mismatch", g_body(contents=[user("hi"), model_turn(call(signature=SIGNATURE)),
                                                         user(answer("tool_result"))], tools=TOOLS),
     "gemini-3-flash-preview", "Request contains an invalid argument."),
]


@pytest.mark.parametrize("body, model, message", [case[1:] for case in RULE_REJECTIONS],
                         ids=[case[0] for case in RULE_REJECTIONS])
def test_gemini_rejects_invalid_requests(http, gmock, body, model, message):
    response = post(http, gmock, body, model=model)
    assert response.status_code == 400, response.text
    assert response.json() == gemini_error_body(400, "INVALID_ARGUMENT", message)
    assert gmock.rejections == [(400, response.json())]


def thinking(**config) -> dict:
    return g_body(generationConfig={"thinkingConfig": config})


INVALID_BUDGET = "The thinking budget ({}) is invalid."
LEVEL_NOT_SUPPORTED = "Thinking level {} is not supported for this model. Please retry with other thinking level."

THINKING_REJECTIONS = [  # (case id, body, model, message): the per-model thinking rules
    ("2.5-pro-budget-0", thinking(thinkingBudget=0), "gemini-2.5-pro",
     "Budget 0 is invalid. This model only works in thinking mode."),
    ("2.5-pro-budget-below-128", thinking(thinkingBudget=127), "gemini-2.5-pro", INVALID_BUDGET.format(127)),
    ("2.5-pro-budget-above-32768", thinking(thinkingBudget=52428), "gemini-2.5-pro", INVALID_BUDGET.format(52428)),
    ("2.5-flash-budget-above-24576", thinking(thinkingBudget=24577), "gemini-2.5-flash", INVALID_BUDGET.format(24577)),
    ("2.5-flash-negative-budget", thinking(thinkingBudget=-2), "gemini-2.5-flash", INVALID_BUDGET.format(-2)),
    ("2.5-flash-lite-budget-below-512", thinking(thinkingBudget=511), "gemini-2.5-flash-lite",
     INVALID_BUDGET.format(511)),
    ("2.5-flash-lite-budget-above-24576", thinking(thinkingBudget=32768), "gemini-2.5-flash-lite",
     INVALID_BUDGET.format(32768)),
    ("2.5-flash-level", thinking(thinkingLevel="LOW"), "gemini-2.5-flash",
     "Thinking level is not supported for this model."),
    ("2.5-pro-level", thinking(thinkingLevel="HIGH", includeThoughts=True), "gemini-2.5-pro",
     "Thinking level is not supported for this model."),
    ("3-pro-budget-and-level", thinking(thinkingBudget=1024, thinkingLevel="LOW"), "gemini-3-pro-preview",
     "You can only set only one of thinking budget and thinking level."),
    ("2.5-budget-and-level", thinking(thinkingBudget=1024, thinkingLevel="LOW"), "gemini-2.5-flash",
     "You can only set only one of thinking budget and thinking level."),
    ("3-pro-medium", thinking(thinkingLevel="MEDIUM"), "gemini-3-pro-preview", LEVEL_NOT_SUPPORTED.format("MEDIUM")),
    ("3-pro-minimal", thinking(thinkingLevel="MINIMAL"), "gemini-3-pro-preview", LEVEL_NOT_SUPPORTED.format("MINIMAL")),
    ("3.1-pro-minimal", thinking(thinkingLevel="MINIMAL"), "gemini-3.1-pro-preview",
     LEVEL_NOT_SUPPORTED.format("MINIMAL")),
    ("3-flash-xhigh", thinking(thinkingLevel="XHIGH"), "gemini-3-flash-preview", LEVEL_NOT_SUPPORTED.format("XHIGH")),
    ("2.0-thinking", thinking(thinkingBudget=1024), "gemini-2.0-flash", "thinking_config is not supported."),
    ("2.0-thoughts", thinking(includeThoughts=True), "gemini-2.0-flash", "thinking_config is not supported."),
    ("image-model-thinking", thinking(thinkingBudget=512), "gemini-2.5-flash-image",
     "Thinking is not enabled for models/gemini-2.5-flash-image"),
]


@pytest.mark.parametrize("body, model, message", [case[1:] for case in THINKING_REJECTIONS],
                         ids=[case[0] for case in THINKING_REJECTIONS])
def test_gemini_rejects_thinking_the_model_cannot_take(http, gmock, body, model, message):
    response = post(http, gmock, body, model=model)
    assert response.status_code == 400, response.text
    assert response.json() == gemini_error_body(400, "INVALID_ARGUMENT", message)
    assert gmock.rejections == [(400, response.json())]


THINKING_ACCEPTED = [  # (case id, thinkingConfig, model)
    ("2.5-pro-smallest-budget", {"thinkingBudget": 128, "includeThoughts": True}, "gemini-2.5-pro"),
    ("2.5-pro-largest-budget", {"thinkingBudget": 32768}, "gemini-2.5-pro"),
    ("2.5-pro-dynamic", {"thinkingBudget": -1}, "gemini-2.5-pro"),
    ("2.5-flash-off", {"thinkingBudget": 0, "includeThoughts": False}, "gemini-2.5-flash"),
    ("2.5-flash-small-budget", {"thinkingBudget": 1}, "gemini-2.5-flash"),
    ("2.5-flash-largest-budget", {"thinkingBudget": 24576}, "gemini-2.5-flash"),
    ("2.5-flash-lite-off", {"thinkingBudget": 0}, "gemini-2.5-flash-lite"),
    ("2.5-flash-lite-smallest-budget", {"thinkingBudget": 512}, "gemini-2.5-flash-lite"),
    ("3-pro-low", {"thinkingLevel": "LOW", "includeThoughts": True}, "gemini-3-pro-preview"),
    ("3-pro-high", {"thinkingLevel": "HIGH"}, "gemini-3-pro-preview"),
    # Gemini 3 still takes a budget alone, for backwards compatibility.
    ("3-pro-budget-alone", {"thinkingBudget": 2048}, "gemini-3-pro-preview"),
    ("3.1-pro-medium", {"thinkingLevel": "MEDIUM"}, "gemini-3.1-pro-preview"),
    ("3-flash-minimal", {"thinkingLevel": "MINIMAL"}, "gemini-3-flash-preview"),
    ("3.1-flash-lite-minimal", {"thinkingLevel": "MINIMAL"}, "gemini-3.1-flash-lite-preview"),
    ("thoughts-only", {"includeThoughts": True}, "gemini-2.5-pro"),
    ("unspecified-level-is-unset", {"thinkingBudget": 1024, "thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"},
     "gemini-2.5-flash"),
    ("unknown-model-any-one-form", {"thinkingLevel": "MEDIUM"}, "gemini-flash-latest"),
    ("other-3-model-any-level", {"thinkingLevel": "MEDIUM"}, "gemini-3.5-flash"),
]


@pytest.mark.parametrize("config, model", [case[1:] for case in THINKING_ACCEPTED],
                         ids=[case[0] for case in THINKING_ACCEPTED])
def test_gemini_accepts_thinking_the_model_takes(http, gmock, config, model):
    response = post(http, gmock, thinking(**config), model=model)
    assert response.status_code == 200, response.text
    assert gmock.rejections == []


GEMINI_ACCEPTED = [  # (case id, body[, model])
    ("minimal", g_body()),
    ("role-omitted", {"contents": [{"parts": [{"text": "hi"}]}]}),
    ("snake-case-names", {"contents": [user("hi")], "system_instruction": {"parts": [{"text": "Be brief."}]},
                          "generation_config": {"max_output_tokens": 10, "stop_sequences": ["END"],
                                                "thinking_config": {"thinking_budget": 0}},
                          "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}),
    ("tool-round-trip", g_body(contents=[*TOOL_FLOW, model_turn("It is 21C."), user("Thanks")], tools=TOOLS,
                               toolConfig={"functionCallingConfig": {"mode": "ANY",
                                                                     "allowedFunctionNames": ["get_weather"]}})),
    ("parallel-calls", g_body(contents=[user("Paris and Rome?"),
                                        model_turn(call(), {"functionCall": {"name": "get_weather", "id": "c2",
                                                                             "args": {"city": "Rome"}}}),
                                        user(answer(), {"functionResponse": {"name": "get_weather", "id": "c2",
                                                                             "response": {"temp": 25}}})],
                              tools=TOOLS)),
    ("call-is-last", g_body(contents=[user("hi"), model_turn(call())], tools=TOOLS)),
    ("gemini-2-ignores-names", g_body(contents=[user("hi"), model_turn(call()), user(answer("tool_result"))],
                                      tools=TOOLS)),
    ("lowercase-schema-types-and-json-schema", g_body(tools=[{"functionDeclarations": [
        {"name": "a.b:c-d_e", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                                             "required": ["n"]}},
        {"name": "raw", "parametersJsonSchema": {"type": "object", "additionalProperties": False}},
        {"name": "no_params", "description": "takes nothing"}]}],
        toolConfig={"functionCallingConfig": {"mode": "VALIDATED"}})),
    ("multimodal-parts", g_body(contents=[user("What is this?", {"inlineData": {"mimeType": "image/png",
                                                                                "data": PNG_1X1}},
                                               {"fileData": {"mimeType": "application/pdf",
                                                             "fileUri": "https://generativelanguage.googleapis.com/"
                                                                        "v1beta/files/abc"}})])),
    ("structured-output", g_body(generationConfig={"responseMimeType": "application/json",
                                                   "responseJsonSchema": {"type": "object",
                                                                          "properties": {"a": {"type": "string"}}},
                                                   "temperature": 0, "topP": 1, "topK": 40, "seed": 7,
                                                   "candidateCount": 2, "presencePenalty": 0.5,
                                                   "frequencyPenalty": -0.5, "responseLogprobs": True,
                                                   "logprobs": 3})),
    ("enum-output", g_body(generationConfig={"responseMimeType": "text/x.enum",
                                             "responseSchema": {"type": "STRING", "enum": ["A", "B"]}})),
    # Gemini 3 models: signatures, and structured output together with tools
    *[(case_id, body, "gemini-3-flash-preview") for case_id, body in [
        ("gemini-3-signed-calls", g_body(contents=[user("Weather?"), model_turn(call(signature=SIGNATURE)),
                                                   user(answer())], tools=TOOLS,
                                         generationConfig={"responseMimeType": "application/json",
                                                           "thinkingConfig": {"thinkingLevel": "LOW"}})),
        ("gemini-3-dummy-signature", g_body(contents=[user("Weather?"),
                                                      model_turn(call(signature="skip_thought_signature_validator")),
                                                      user(answer())], tools=TOOLS)),
        ("gemini-3-old-turns-unsigned", g_body(contents=[*TOOL_FLOW, model_turn("21C."), user("And now?")],
                                               tools=TOOLS)),
    ]],
    ("nulls-are-unset", g_body(generationConfig={"temperature": None}, tools=None)),
    ("numbers-as-strings", g_body(generationConfig={"maxOutputTokens": "64", "temperature": "0.5"})),
]


@pytest.mark.parametrize("body, model", [(case[1], case[2] if len(case) > 2 else MODEL) for case in GEMINI_ACCEPTED],
                         ids=[case[0] for case in GEMINI_ACCEPTED])
def test_gemini_accepts_valid_requests(http, gmock, body, model):
    response = post(http, gmock, body, model=model)
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["role"] == "model"
    assert gmock.rejections == []


def test_gemini_3_checks_signatures_only_in_the_current_turn(http, gmock):
    body = g_body(contents=[*TOOL_FLOW, model_turn("21C."), user("And now?")], tools=TOOLS)
    assert post(http, gmock, body, model="gemini-3-pro-preview").status_code == 200
    current = g_body(contents=[user("Weather?"), model_turn(call(signature=SIGNATURE)), user(answer()),
                               model_turn(call(args={"city": "Rome"})), user(answer())], tools=TOOLS)
    response = post(http, gmock, current, model="gemini-3-pro-preview")
    assert response.status_code == 400
    assert "position 4." in response.json()["error"]["message"]


# ----------------------------------------------------------------------------------------------
# Auth and routes
# ----------------------------------------------------------------------------------------------


def test_gemini_missing_key_is_permission_denied(http, gmock):
    response = post(http, gmock, g_body(), headers={})
    assert response.status_code == 403
    assert response.json() == gemini_error_body(
        403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). "
                                  "Please use API Key or other form of API consumer identity to call this API.")


def test_gemini_wrong_key_is_invalid_argument_with_api_key_invalid(http, gmock):
    response = post(http, gmock, g_body(), headers={"x-goog-api-key": "AIzaWrong"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["status"], error["message"]) == ("INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    assert error["details"][0] == {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                   "domain": "googleapis.com",
                                   "metadata": {"service": "generativelanguage.googleapis.com"}}
    assert error["details"][1]["@type"] == "type.googleapis.com/google.rpc.LocalizedMessage"


def test_gemini_key_as_bearer_token_is_unauthenticated(http, gmock):
    response = post(http, gmock, g_body(), headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED"
    assert error["message"].startswith("Request had invalid authentication credentials. Expected OAuth 2 access token")
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert error["details"][0]["metadata"]["method"] == \
        "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent"


def test_gemini_key_in_query_is_accepted(http, gmock):
    assert post(http, gmock, g_body(), headers={}, query=f"?key={KEY}").status_code == 200
    assert post(http, gmock, g_body(), headers={}, query="?key=wrong").status_code == 400


@pytest.mark.parametrize("method, path", [
    ("POST", f"/v1/models/{MODEL}:generateContent"), ("POST", f"/v1beta/{MODEL}:generateContent"),
    ("POST", f"/v1beta/models/{MODEL}:countTokens"), ("GET", f"/v1beta/models/{MODEL}:generateContent"),
    ("POST", "/v1beta/openai/chat/completions"), ("POST", f"/v1beta/models/{MODEL}/generateContent")])
def test_gemini_unknown_routes_are_not_found(http, gmock, method, path):
    response = http.request(method, gmock.base_url + path, headers=KEY_HEADERS, json=g_body())
    assert response.status_code == 404
    assert response.json() == gemini_error_body(404, "NOT_FOUND", f"Method not found: {method} {path}")


@pytest.mark.parametrize("model, method", [("text-embedding-004", "generateContent"),
                                           (MODEL, "embedContent"), ("Gemini-Pro", "generateContent")])
def test_gemini_model_must_support_the_method(http, gmock, model, method):
    response = post(http, gmock, g_body(), method=method, model=model)
    assert response.status_code == 404
    assert response.json() == gemini_error_body(
        404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
                          "Call ListModels to see the list of available models and their supported methods.")


# ----------------------------------------------------------------------------------------------
# Default replies
# ----------------------------------------------------------------------------------------------


def test_gemini_default_reply_is_a_generate_content_response(http, gmock):
    response = post(http, gmock, g_body(systemInstruction={"parts": [{"text": "Be nice."}]}))
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.text.startswith('{\n  "candidates": [\n')  # pretty-printed, as the API does
    body = response.json()
    assert body["candidates"] == [{"content": {"parts": [{"text": "Echo: Hello there"}], "role": "model"},
                                   "finishReason": "STOP", "index": 0}]
    assert body["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7,
                                     "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}]}
    assert body["modelVersion"] == MODEL
    assert re.fullmatch(r"[0-9A-Za-z_-]{23}", body["responseId"])


def test_gemini_max_output_tokens_and_stop_sequences(http, gmock):
    body = post(http, gmock, g_body(contents=[user("alpha beta gamma")],
                                    generationConfig={"maxOutputTokens": 2})).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Echo: alpha"}]
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    stopped = post(http, gmock, g_body(contents=[user("alpha beta gamma")],
                                       generationConfig={"stopSequences": ["gamma"]})).json()["candidates"][0]
    assert (stopped["content"]["parts"][0]["text"], stopped["finishReason"]) == ("Echo: alpha beta ", "STOP")


def test_gemini_candidate_count_and_thoughts(http, gmock):
    body = post(http, gmock, g_body(generationConfig={"candidateCount": 2, "thinkingConfig": {
        "includeThoughts": True}})).json()
    assert [candidate["index"] for candidate in body["candidates"]] == [0, 1]
    parts = body["candidates"][1]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[1] == {"text": "Echo: Hello there"}
    usage = body["usageMetadata"]
    assert usage["thoughtsTokenCount"] > 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + \
        usage["thoughtsTokenCount"]


def test_gemini_echoes_function_responses(http, gmock):
    body = post(http, gmock, g_body(contents=TOOL_FLOW, tools=TOOLS)).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == 'Echo: {"temp":21}'


def test_gemini_sse_stream_framing(http, gmock):
    response = post(http, gmock, g_body(contents=[user("one two three four five six seven")]),
                    method="streamGenerateContent", query="?alt=sse")
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\r\n\r\n")
    assert frames[-1] == "" and all(frame.startswith("data: {\"candidates\": [") for frame in frames[:-1])
    chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
    assert len(chunks) == 3
    assert "".join(chunk["candidates"][0]["content"]["parts"][0]["text"] for chunk in chunks) == \
        "Echo: one two three four five six seven"
    assert [("finishReason" in chunk["candidates"][0]) for chunk in chunks] == [False, False, True]
    assert [chunk["usageMetadata"]["candidatesTokenCount"] for chunk in chunks] == [3, 6, 8]
    assert len({chunk["responseId"] for chunk in chunks}) == 1 and chunks[0]["modelVersion"] == MODEL


def test_gemini_stream_without_alt_sse_is_a_json_array(http, gmock):
    response = post(http, gmock, g_body(contents=[user("one two three four")]), method="streamGenerateContent")
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.text.startswith("[{\n") and response.text.endswith("}\n]")
    chunks = json.loads(response.text)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "Echo: one two three four"
    error = post(http, gmock, g_body(contents=[]), method="streamGenerateContent")
    assert error.status_code == 400 and isinstance(error.json(), list)
    assert error.json()[0]["error"]["message"] == "* GenerateContentRequest.contents: contents is not specified\n"


def test_gemini_helpers_build_api_shapes():
    response = GeminiMock.response(["Checking.", function_call_part("get_weather", {"city": "Paris"}, id="c1",
                                                                    thought_signature=SIGNATURE)],
                                   model_version="gemini-3-flash-preview", prompt_tokens=12)
    parts = response["candidates"][0]["content"]["parts"]
    assert parts[1] == {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"},
                        "thoughtSignature": SIGNATURE}
    assert response["usageMetadata"]["promptTokenCount"] == 12
    chunks = response_chunks(response)
    assert chunks[-1]["candidates"][0]["content"]["parts"] == [parts[1]]  # calls arrive whole
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert sse_frame({"a": [1, 2]}) == b'data: {"a": [1,2]}\r\n\r\n'
    assert stream_events([{"a": 1}]) == [b'data: {"a": 1}\r\n\r\n']
    assert b"".join(json_array_frames([{"a": 1}, {"b": 2}])) == b'[{\n  "a": 1\n}\n,\r\n{\n  "b": 2\n}\n]'
    empty = GeminiMock.response([], finish_reason="MAX_TOKENS")
    assert empty["candidates"][0]["content"] == {"role": "model"}
    assert gemini_error_body(503, "UNAVAILABLE", "The model is overloaded.") == \
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------

EMBED_MODEL = "gemini-embedding-001"


def test_gemini_embed_content(http, gmock):
    body = {"content": {"parts": [{"text": "hello world"}]}, "taskType": "RETRIEVAL_DOCUMENT", "title": "Doc",
            "outputDimensionality": 8}
    first = post(http, gmock, body, method="embedContent", model=EMBED_MODEL).json()
    assert list(first) == ["embedding"] and len(first["embedding"]["values"]) == 8
    assert post(http, gmock, body, method="embedContent", model=EMBED_MODEL).json() == first  # deterministic
    default = post(http, gmock, {"content": {"parts": [{"text": "x"}]}}, method="embedContent",
                   model="text-embedding-004").json()
    assert len(default["embedding"]["values"]) == 768


def test_gemini_batch_embed_contents(http, gmock):
    requests = [{"model": f"models/{EMBED_MODEL}", "content": {"parts": [{"text": text}]}, "outputDimensionality": 4}
                for text in ("a", "b", "a")]
    body = post(http, gmock, {"requests": requests}, method="batchEmbedContents", model=EMBED_MODEL).json()
    vectors = [item["values"] for item in body["embeddings"]]
    assert len(vectors) == 3 and vectors[0] == vectors[2] != vectors[1]


EMBED_REJECTIONS = [
    ("embed-without-content", "embedContent", {"taskType": "RETRIEVAL_QUERY"},
     "* EmbedContentRequest.content: content is not specified\n"),
    ("embed-empty-parts", "embedContent", {"content": {"parts": []}},
     "* EmbedContentRequest.content.parts: contents.parts must not be empty.\n"),
    ("embed-task-type", "embedContent", {"content": {"parts": [{"text": "x"}]}, "taskType": "SEARCH"},
     invalid("task_type", enum_type("TaskType"), '"SEARCH"')),
    ("embed-openai-shape", "embedContent", {"input": "x", "model": EMBED_MODEL}, unknown("input")),
    ("embed-dimensions-zero", "embedContent", {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 0},
     "* EmbedContentRequest.output_dimensionality: output_dimensionality must be positive.\n"),
    ("batch-without-requests", "batchEmbedContents", {}, "* BatchEmbedContentsRequest.requests: requests is not "
                                                         "specified\n"),
    ("batch-other-model", "batchEmbedContents", {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "x"}]}}]},
     "* BatchEmbedContentsRequest.requests[0].model: the model in each request must match the batch model. "
     f"Expected models/{EMBED_MODEL}, got 'models/text-embedding-004'.\n"),
    ("batch-model-missing", "batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]}}]},
     "* BatchEmbedContentsRequest.requests[0].model: the model in each request must match the batch model. "
     f"Expected models/{EMBED_MODEL}, got ''.\n"),
]


@pytest.mark.parametrize("method, body, message", [case[1:] for case in EMBED_REJECTIONS],
                         ids=[case[0] for case in EMBED_REJECTIONS])
def test_gemini_embeddings_reject_invalid_requests(http, gmock, method, body, message):
    response = post(http, gmock, body, method=method, model=EMBED_MODEL)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["status"], error["message"]) == ("INVALID_ARGUMENT", message)


# ----------------------------------------------------------------------------------------------
# Scripted actions
# ----------------------------------------------------------------------------------------------


def test_gemini_scripted_reply_and_validation_order(http, gmock):
    error = gemini_error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    gmock.enqueue(Reply(429, error, headers={"retry-after": "3"}), Reply(200, {"scripted": True}))
    response = post(http, gmock, g_body())
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (429, error, "3")
    assert post(http, gmock, g_body(temperature=1)).status_code == 400  # validation consumed the second action
    assert post(http, gmock, g_body()).json()["candidates"]


def test_gemini_validate_false_and_default(http, gmock):
    gmock.enqueue(Reply(200, {"scripted": True}, validate=False), Default())
    assert post(http, gmock, b"garbage", headers={}).json() == {"scripted": True}
    assert post(http, gmock, g_body()).status_code == 200


def test_gemini_hang_reset_and_delay(gmock):
    gmock.enqueue(Hang(1.0))
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        post(client, gmock, g_body())
    gmock.enqueue(Reset(), ResetMidBody(), Delay(0.2))
    with httpx.Client(timeout=5) as client:
        for _ in range(2):
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                post(client, gmock, g_body())
        started = time.monotonic()
        assert post(client, gmock, g_body()).status_code == 200
        assert time.monotonic() - started >= 0.2


def test_gemini_stream_events_with_then_reset(gmock):
    chunks = response_chunks(GeminiMock.response(["one two three four five six seven"]))
    gmock.enqueue(StreamEvents(chunks[:2], then_reset=True))
    received = b""
    with httpx.Client(timeout=5) as client, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        with client.stream("POST", f"{gmock.base_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                           json=g_body(), headers=KEY_HEADERS) as response:
            for piece in response.iter_bytes():
                received += piece
    assert received == b"".join(stream_events(chunks[:2]))


def test_gemini_mid_stream_error_event(http, gmock):
    error = gemini_error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    gmock.enqueue(StreamEvents([response_chunks(GeminiMock.response(["Hi"]))[0], error]))
    response = post(http, gmock, g_body(), method="streamGenerateContent", query="?alt=sse")
    frames = [json.loads(frame[6:]) for frame in response.text.split("\r\n\r\n") if frame]
    assert frames[-1] == error


# ----------------------------------------------------------------------------------------------
# The official SDK against the mock
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def sdk(gmock):
    # google-genai 3.x defaults to the v1 API; the mock serves v1beta, as the gateway uses.
    client = genai.Client(api_key=KEY, http_options={"base_url": gmock.base_url, "api_version": "v1beta"})
    yield client
    client.close()


@needs_genai_sdk
def test_genai_sdk_generate_and_stream(sdk, gmock):
    config = genai_types.GenerateContentConfig(
        system_instruction="Be brief.", temperature=0.5, max_output_tokens=64, stop_sequences=["ZZ"],
        tools=[genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(
            name="get_weather", description="Weather", parameters=genai_types.Schema(
                type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}))])])
    reply = sdk.models.generate_content(model=MODEL, contents="Hi SDK", config=config)
    assert reply.text == "Echo: Hi SDK"
    assert reply.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert reply.usage_metadata.candidates_token_count == 3 and reply.model_version == MODEL
    sent = gmock.requests[-1]
    assert sent.headers["x-goog-api-key"] == KEY and "systemInstruction" in sent.json
    chunks = list(sdk.models.generate_content_stream(model=MODEL, contents="one two three four five"))
    assert "".join(chunk.text for chunk in chunks) == "Echo: one two three four five"
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert gmock.requests[-1].query == {"alt": ["sse"]}


@needs_genai_sdk
def test_genai_sdk_reads_scripted_function_calls(sdk, gmock):
    scripted = GeminiMock.response([function_call_part("get_weather", {"city": "Paris"}, id="c1",
                                                       thought_signature=SIGNATURE)])
    gmock.enqueue(Reply(200, scripted), StreamEvents(stream_events(response_chunks(scripted))))
    call_made = sdk.models.generate_content(model=MODEL, contents="Weather?").function_calls[0]
    assert (call_made.id, call_made.name, call_made.args) == ("c1", "get_weather", {"city": "Paris"})
    streamed = list(sdk.models.generate_content_stream(model=MODEL, contents="Weather?"))
    assert streamed[-1].function_calls[0].name == "get_weather"
    assert streamed[-1].candidates[0].content.parts[0].thought_signature == b"opaque-signature"


@needs_genai_sdk
def test_genai_sdk_round_trips_a_signed_tool_flow_on_gemini_3(sdk, gmock):
    history = [genai_types.Content(role="user", parts=[genai_types.Part(text="Weather?")]),
               genai_types.Content(role="model", parts=[genai_types.Part(
                   function_call=genai_types.FunctionCall(name="get_weather", args={"city": "Paris"}),
                   thought_signature=b"opaque-signature")]),
               genai_types.Content(role="user", parts=[genai_types.Part.from_function_response(
                   name="get_weather", response={"temp": 21})])]
    tools = [genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(name="get_weather")])]
    reply = sdk.models.generate_content(model="gemini-3-flash-preview", contents=history,
                                        config=genai_types.GenerateContentConfig(tools=tools))
    assert reply.text == 'Echo: {"temp":21}'


@needs_genai_sdk
def test_genai_sdk_embeddings_and_errors(sdk, gmock):
    result = sdk.models.embed_content(model=EMBED_MODEL, contents=["a", "b"],
                                      config=genai_types.EmbedContentConfig(output_dimensionality=4))
    assert [len(embedding.values) for embedding in result.embeddings] == [4, 4]
    assert gmock.requests[-1].path == f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents"
    gmock.enqueue(Reply(503, gemini_error_body(503, "UNAVAILABLE", "The model is overloaded.")))
    with pytest.raises(genai_errors.ServerError) as raised:
        sdk.models.generate_content(model=MODEL, contents="x",
                                    config={"http_options": {"retry_options": {"attempts": 1}}})
    assert raised.value.code == 503 and raised.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.ClientError) as refused:
        sdk.models.generate_content(model=MODEL, contents="x", config={"temperature": 3})
    assert refused.value.code == 400 and "temperature" in refused.value.message


def test_gemini_logs_nothing_and_connections_stay_open(gmock, capfd):
    with socket.create_connection(("127.0.0.1", gmock.port), timeout=5) as sock:
        payload = json.dumps(g_body()).encode()
        request = (f"POST /v1beta/models/{MODEL}:generateContent HTTP/1.1\r\nHost: mock\r\nx-goog-api-key: {KEY}\r\n"
                   f"content-length: {len(payload)}\r\n\r\n").encode() + payload
        sock.sendall(request + request)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2:
            received += sock.recv(65536)
    assert capfd.readouterr() == ("", "")
