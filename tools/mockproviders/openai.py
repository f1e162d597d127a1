"""Strict mock of OpenAI Chat Completions: ``POST {base_path}/chat/completions``,
``POST {base_path}/embeddings``, ``POST {base_path}/completions`` (legacy) and ``GET {base_path}/models``.

Accepted request fields are those of ``openai/types/chat/completion_create_params.py``
(openai-python 3.54); anything else is refused with "Unrecognized request argument supplied".
Errors use OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}`` and the API's
wording (``Missing required parameter: 'messages'.``, ``Invalid 'temperature': decimal above
maximum value. ...``, ``Invalid type for 'n': expected an integer, ...``). Checks run in this
order (the API's, as far as observed): route, bearer key, JSON body, unknown arguments, model,
messages (shape, then the tool-call flow), then the remaining parameters.

Embeddings take the fields of ``embedding_create_params.py`` (``input`` str | str[] | int[] |
int[][], never empty: the API answers ``'$.input' is invalid. ...``; ``encoding_format`` float |
base64, where base64 is the little-endian float32 bytes; ``dimensions`` >= 1) and answer with
deterministic unit vectors. Legacy completions take ``completion_create_params.py`` (``prompt``
required, ``max_tokens`` defaulting to 16, chat models refused with the API's 404) and answer
``text_completion`` objects, streamed as ``data:`` chunks ending in ``[DONE]``.

Reasoning models (o1, o3-mini, o3, o4-mini, the GPT-5 family; ``gpt-5-chat*`` is not one) refuse
what the API refuses them, after the checks above (``check_model_rules``; the order among these is
the mock's): ``max_tokens`` ("Unsupported parameter: 'max_tokens' is not supported with this model.
Use 'max_completion_tokens' instead."), ``temperature``/``top_p`` other than the default (o1 and
GPT-5: "Unsupported value: 'temperature' does not support 0.5 with this model. Only the default (1)
value is supported.", code ``unsupported_value``; o3-mini, o3, o4-mini: "Unsupported parameter:
'temperature' is not supported with this model.", for any value), ``presence_penalty``,
``frequency_penalty``, ``logit_bias``, ``logprobs``/``top_logprobs``, ``stop`` on o3, o4-mini and
GPT-5, and ``reasoning_effort`` on o1-mini and o1-preview (all "Unsupported parameter: '<name>' is
not supported with this model.", code ``unsupported_parameter``). GPT-5.1 and GPT-5.2 take
``temperature``, ``top_p`` and ``logprobs`` with ``reasoning_effort`` ``none`` (their default).
Confirmed wordings (issue reports quoting the API): max_tokens, temperature both forms, top_p
("Unsupported parameter" form), stop, presence_penalty. The others (frequency_penalty,
logit_bias, logprobs, top_logprobs, reasoning_effort, the value form for top_p, and o3/o4-mini
refusing temperature 1) are the mock's, by analogy.

The validators and body builders are module functions so the Azure mock reuses them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from typing import Any, Iterator

from .base import (MockServer, RecordedRequest, Rejection, Response, estimate_tokens, random_token, truncate_reply,
                   word_pieces)

DEFAULT_MODEL = "gpt-4o-mini"
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini")
SNAPSHOT_DATE = "2024-07-18"  # the API answers an alias with the dated snapshot that served it

REQUEST_FIELDS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})

# The order is the API's own in its "Supported values are: ..." message.
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
MESSAGE_FIELDS = {
    "system": ("role", "content", "name"),
    "developer": ("role", "content", "name"),
    "user": ("role", "content", "name"),
    "assistant": ("role", "content", "name", "tool_calls", "function_call", "refusal", "audio"),
    "tool": ("role", "content", "tool_call_id"),
    "function": ("role", "content", "name"),
}
CONTENT_PART_TYPES = {
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "assistant": ("text", "refusal"),
    "user": ("text", "image_url", "input_audio", "file"),
}
FUNCTION_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"

MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
    "accessing the API from your browser and are prompted for a username. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
UNPARSABLE_BODY_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have "
    "trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)


# ----------------------------------------------------------------------------------------------
# Body builders for tests
# ----------------------------------------------------------------------------------------------


def openai_error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
                      code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def sse(events: list[Any]) -> bytes:
    """Encode chunk dicts (and ``"[DONE]"``, or raw bytes) as an OpenAI SSE stream."""
    return b"".join(_sse_frame(event) for event in events)


def _sse_frame(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    data = event if event == "[DONE]" else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def tool_call(name: str, arguments: dict | str, id: str | None = None) -> dict:
    """An assistant ``tool_calls`` entry; ``arguments`` given as a dict is serialized as the API does."""
    return {"id": id or "call_" + random_token(24), "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}}


def mask_key(key: str) -> str:
    """How the API echoes a wrong key: first 8 and last 4 characters, the rest starred."""
    return key if len(key) <= 12 else key[:8] + "*" * (len(key) - 12) + key[-4:]


def completion_chunks(completion: dict, include_usage: bool = False) -> list[Any]:
    """The ``chat.completion.chunk`` sequence OpenAI streams for ``completion``: per choice a role
    chunk, content and tool-call fragments and a finish chunk; then the usage chunk when asked
    for (``choices: []``; every earlier chunk then says ``"usage": null``); then ``[DONE]``."""
    envelope = {key: completion[key] for key in ("id", "created", "model", "service_tier", "system_fingerprint")}

    def chunk(choices: list[dict], usage: dict | None = None) -> dict:
        body = {"id": envelope["id"], "object": "chat.completion.chunk", "created": envelope["created"],
                "model": envelope["model"], "service_tier": envelope["service_tier"],
                "system_fingerprint": envelope["system_fingerprint"], "choices": choices}
        return {**body, "usage": usage} if include_usage else body

    def delta(index: int, content: dict, finish_reason: str | None = None) -> dict:
        return {"index": index, "delta": content, "logprobs": None, "finish_reason": finish_reason}

    chunks: list[Any] = []
    for choice in completion["choices"]:
        index, message = choice["index"], choice["message"]
        chunks.append(chunk([delta(index, {"role": "assistant", "content": "", "refusal": None})]))
        chunks += [chunk([delta(index, {"content": piece})]) for piece in word_pieces(message.get("content") or "")]
        for position, call in enumerate(message.get("tool_calls") or []):
            function = call["function"]
            chunks.append(chunk([delta(index, {"tool_calls": [{"index": position, "id": call["id"], "type": "function",
                                                               "function": {"name": function["name"],
                                                                            "arguments": ""}}]})]))
            arguments = function["arguments"]
            chunks += [chunk([delta(index, {"tool_calls": [{"index": position,
                                                            "function": {"arguments": arguments[i:i + 8]}}]})])
                       for i in range(0, len(arguments), 8)]
        chunks.append(chunk([delta(index, {}, choice["finish_reason"])]))
    if include_usage:
        chunks.append(chunk([], completion["usage"]))
    chunks.append("[DONE]")
    return chunks


# ----------------------------------------------------------------------------------------------
# Validation primitives, worded like the API
# ----------------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


_EXPECTED = {"string": "a string", "integer": "an integer", "number": "a decimal", "boolean": "a boolean",
             "array": "an array", "object": "an object"}
_PYTHON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
                 "object": dict}


def _described(value: Any) -> str:
    """A JSON value's type as the API names it in "but got ... instead"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    return {float: "a decimal", str: "a string", list: "an array", dict: "an object"}[type(value)]


def _check_type(value: Any, kind: str, param: str, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if (isinstance(value, bool) and kind in ("integer", "number")) or not isinstance(value, _PYTHON_TYPES[kind]):
        raise _Invalid(f"Invalid type for '{param}': expected {_EXPECTED[kind]}, but got {_described(value)} instead.",
                       param, "invalid_type")


def _check_bounds(value: float, param: str, minimum: float | None = None, maximum: float | None = None,
                  integer: bool = False) -> None:
    kind = "integer" if integer else "decimal"
    shown = json.dumps(value)
    if minimum is not None and value < minimum:
        raise _Invalid(f"Invalid '{param}': {kind} below minimum value. Expected a value >= {minimum}, but got "
                       f"{shown} instead.", param, f"{kind}_below_min_value")
    if maximum is not None and value > maximum:
        raise _Invalid(f"Invalid '{param}': {kind} above maximum value. Expected a value <= {maximum}, but got "
                       f"{shown} instead.", param, f"{kind}_above_max_value")


def _check_choice(value: Any, allowed: tuple[str, ...], param: str) -> None:
    if value not in allowed:
        listed = ", ".join(f"'{item}'" for item in allowed[:-1]) + f", and '{allowed[-1]}'" \
            if len(allowed) > 1 else f"'{allowed[0]}'"
        raise _Invalid(f"Invalid value: '{value}'. Supported values are: {listed}.", param, "invalid_value")


def _missing(param: str) -> _Invalid:
    return _Invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


# ----------------------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------------------


def _check_messages(messages: Any) -> None:
    _check_type(messages, "array", "messages")
    if not messages:
        raise _Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                       "array instead.", "messages", "empty_array")
    for index, message in enumerate(messages):
        _check_message(message, index)
    _check_tool_flow(messages)


_REQUIRED_MESSAGE_FIELDS = {"tool": ("content", "tool_call_id"), "function": ("content", "name")}


def _check_message(message: Any, index: int) -> None:
    at = f"messages[{index}]"
    _check_type(message, "object", at)
    if "role" not in message:
        raise _missing(f"{at}.role")
    role = message["role"]
    _check_choice(role, ROLES, f"{at}.role")
    unexpected = [name for name in message if name not in MESSAGE_FIELDS[role]]
    if unexpected:
        names = ", ".join(repr(name) for name in unexpected)
        raise _Invalid(f"Additional properties are not allowed ({names} "
                       f"{'was' if len(unexpected) == 1 else 'were'} unexpected) - 'messages.{index}'")
    if role == "assistant":
        _check_assistant(message, index)
    else:
        for name in _REQUIRED_MESSAGE_FIELDS.get(role, ("content",)):
            if name not in message:
                raise _missing(f"{at}.{name}")
        if role == "tool":
            _check_type(message["tool_call_id"], "string", f"{at}.tool_call_id")
    if message.get("content") is not None or role != "assistant":
        _check_content(message["content"], role, index)


def _check_assistant(message: dict, index: int) -> None:
    calls = message.get("tool_calls")
    if message.get("content") is None and not calls and message.get("function_call") is None:
        raise _Invalid("Invalid value for 'content': expected a string, got null.", f"messages.[{index}].content")
    if calls is None:
        return
    at = f"messages[{index}].tool_calls"
    _check_type(calls, "array", at)
    for position, call in enumerate(calls):
        call_at = f"{at}[{position}]"
        _check_type(call, "object", call_at)
        for name in ("id", "type", "function"):
            if name not in call:
                raise _missing(f"{call_at}.{name}")
        _check_choice(call["type"], ("function",), f"{call_at}.type")
        _check_type(call["function"], "object", f"{call_at}.function")
        for name in ("name", "arguments"):
            if name not in call["function"]:
                raise _missing(f"{call_at}.function.{name}")
            # arguments must stay a JSON *string*: translators that pass an object are caught here
            _check_type(call["function"][name], "string", f"{call_at}.function.{name}")


def _check_content(content: Any, role: str, index: int) -> None:
    at = f"messages[{index}].content"
    if content is None:
        raise _Invalid("Invalid value for 'content': expected a string, got null.", f"messages.[{index}].content")
    if isinstance(content, str):
        return
    _check_type(content, "array", at)
    for position, part in enumerate(content):
        part_at = f"{at}[{position}]"
        _check_type(part, "object", part_at)
        if "type" not in part:
            raise _missing(f"{part_at}.type")
        _check_choice(part["type"], CONTENT_PART_TYPES[role], f"{part_at}.type")
        _check_part(part, part_at)


def _check_part(part: dict, at: str) -> None:
    kind = field = part["type"]  # each part carries its payload under its own type name
    if field not in part:
        raise _missing(f"{at}.{field}")
    if kind in ("text", "refusal"):
        _check_type(part[field], "string", f"{at}.{field}")
        return
    _check_type(part[field], "object", f"{at}.{field}")
    if kind == "image_url":
        if "url" not in part["image_url"]:
            raise _missing(f"{at}.image_url.url")
        _check_type(part["image_url"]["url"], "string", f"{at}.image_url.url")
        if "detail" in part["image_url"]:
            _check_choice(part["image_url"]["detail"], ("auto", "low", "high"), f"{at}.image_url.detail")


def _check_tool_flow(messages: list) -> None:
    """Tool messages must answer the assistant tool_calls right before them, and every call
    must be answered before the conversation moves on."""
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            caller = next((earlier for earlier in reversed(messages[:index]) if earlier["role"] != "tool"), None)
            if caller is None or caller["role"] != "assistant" or not caller.get("tool_calls"):
                raise _Invalid("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                               "message with 'tool_calls'.", f"messages.[{index}].role")
            if message["tool_call_id"] not in {call["id"] for call in caller["tool_calls"]}:
                raise _Invalid(f"Invalid parameter: 'tool_call_id' of '{message['tool_call_id']}' not found in "
                               "'tool_calls' of previous message.", f"messages.[{index}].tool_call_id")
        elif message["role"] == "assistant" and message.get("tool_calls"):
            answered = set()
            for later in messages[index + 1:]:
                if later["role"] != "tool":
                    break
                answered.add(later["tool_call_id"])
            missing = [call["id"] for call in message["tool_calls"] if call["id"] not in answered]
            if missing:
                raise _Invalid("An assistant message with 'tool_calls' must be followed by tool messages responding "
                               "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                               + ", ".join(missing), f"messages.[{index}].role")


# ----------------------------------------------------------------------------------------------
# Other parameters
# ----------------------------------------------------------------------------------------------

# (kind, minimum, maximum) for the numeric parameters; null always means "use the default".
_NUMBERS = {
    "temperature": ("number", 0, 2),
    "top_p": ("number", 0, 1),
    "n": ("integer", 1, 128),
    "max_tokens": ("integer", 1, None),
    "max_completion_tokens": ("integer", 1, None),
    "presence_penalty": ("number", -2, 2),
    "frequency_penalty": ("number", -2, 2),
    "top_logprobs": ("integer", 0, 20),
    "seed": ("integer", None, None),
}
_FLAGS = ("stream", "logprobs", "store", "parallel_tool_calls")
_LITERALS = {
    "reasoning_effort": ("none", "minimal", "low", "medium", "high", "xhigh"),
    "service_tier": ("auto", "default", "flex", "scale", "priority", "fast"),
    "verbosity": ("low", "medium", "high"),
}


def _check_parameters(body: dict) -> None:
    for name, (kind, minimum, maximum) in _NUMBERS.items():
        if body.get(name) is not None:
            _check_type(body[name], kind, name)
            _check_bounds(body[name], name, minimum, maximum, integer=kind == "integer")
    for name in _FLAGS:
        _check_type(body.get(name), "boolean", name, nullable=True)
    for name, allowed in _LITERALS.items():
        if body.get(name) is not None:
            _check_choice(body[name], allowed, name)
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        if name in body:
            _check_type(body[name], "string", name)
    _check_stop(body.get("stop"))
    _check_stream_options(body)
    _check_tools(body)
    _check_response_format(body.get("response_format"))


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    _check_type(stop, "array", "stop")
    if len(stop) > 4:
        raise _Invalid(f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array "
                       f"with length {len(stop)} instead.", "stop", "array_above_max_length")
    for index, sequence in enumerate(stop):
        _check_type(sequence, "string", f"stop[{index}]")


def _check_stream_options(body: dict) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if body.get("stream") is not True:
        raise _Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    _check_type(options, "object", "stream_options")
    for name in ("include_usage", "include_obfuscation"):
        _check_type(options.get(name), "boolean", f"stream_options.{name}", nullable=True)


def _check_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        _check_type(tools, "array", "tools")
        for index, tool in enumerate(tools):
            _check_tool(tool, f"tools[{index}]")
    for name in ("tool_choice", "parallel_tool_calls"):
        if body.get(name) is not None and not tools:
            raise _Invalid(f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified.", name)
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        _check_choice(choice, ("none", "auto", "required"), "tool_choice")
    elif choice is not None:
        _check_type(choice, "object", "tool_choice")
        if "type" not in choice:
            raise _missing("tool_choice.type")
        _check_choice(choice["type"], ("function", "allowed_tools", "custom"), "tool_choice.type")


def _check_tool(tool: Any, at: str) -> None:
    _check_type(tool, "object", at)
    if "type" not in tool:
        raise _missing(f"{at}.type")
    _check_choice(tool["type"], ("function", "custom"), f"{at}.type")
    definition = tool.get(tool["type"])
    if definition is None:
        raise _missing(f"{at}.{tool['type']}")
    _check_type(definition, "object", f"{at}.{tool['type']}")
    if "name" not in definition:
        raise _missing(f"{at}.{tool['type']}.name")
    name_at = f"{at}.{tool['type']}.name"
    _check_type(definition["name"], "string", name_at)
    if not re.fullmatch(FUNCTION_NAME_PATTERN, definition["name"]):
        raise _Invalid(f"Invalid '{name_at}': string does not match pattern. Expected a string that matches the "
                       f"pattern '{FUNCTION_NAME_PATTERN}'.", name_at, "invalid_value")
    if tool["type"] == "function":
        _check_type(definition.get("parameters"), "object", f"{at}.function.parameters", nullable=True)


def _check_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    _check_type(response_format, "object", "response_format")
    if "type" not in response_format:
        raise _missing("response_format.type")
    _check_choice(response_format["type"], ("json_object", "json_schema", "text"), "response_format.type")
    if response_format["type"] == "json_schema":
        schema = response_format.get("json_schema")
        if schema is None:
            raise _missing("response_format.json_schema")
        _check_type(schema, "object", "response_format.json_schema")
        if "name" not in schema:
            raise _missing("response_format.json_schema.name")


# ----------------------------------------------------------------------------------------------
# Per-model rules of the reasoning models
# ----------------------------------------------------------------------------------------------


def reasoning_family(model: str) -> str | None:
    """Which rules a model follows: ``o1-early`` (o1-mini, o1-preview), ``o1``, ``o3-mini``,
    ``o3`` (o3, o4-mini), ``gpt-5``; None for models without them (GPT-4o, GPT-5 Chat, ...)."""
    if model.startswith(("o1-mini", "o1-preview")):
        return "o1-early"
    if model.startswith("o3-mini"):
        return "o3-mini"
    if model.startswith("o1"):
        return "o1"
    if model.startswith(("o3", "o4")):
        return "o3"
    if model.startswith("gpt-5") and not model.startswith("gpt-5-chat"):
        return "gpt-5"
    return None


def _samples_without_reasoning(model: str, body: dict) -> bool:
    """GPT-5.1 and GPT-5.2 (and dated snapshots) not reasoning: ``reasoning_effort`` none, the default."""
    if not re.fullmatch(r"gpt-5\.[12](-\d{4}-\d{2}-\d{2})?", model):
        return False
    return body.get("reasoning_effort") in (None, "none")


def _unsupported_parameter(name: str, hint: str = "") -> _Invalid:
    return _Invalid(f"Unsupported parameter: '{name}' is not supported with this model.{hint}", name,
                    "unsupported_parameter")


def check_model_rules(body: dict, model: str) -> None:
    """What ``model`` refuses of an otherwise valid chat body (see the module docstring)."""
    family = reasoning_family(model)
    if family is None:
        return
    if body.get("max_tokens") is not None:
        raise _unsupported_parameter("max_tokens", " Use 'max_completion_tokens' instead.")
    sampling = _samples_without_reasoning(model, body)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None or sampling:
            continue
        if family in ("o1", "gpt-5"):
            if value != 1:
                raise _Invalid(f"Unsupported value: '{name}' does not support {json.dumps(value)} with this model. "
                               "Only the default (1) value is supported.", name, "unsupported_value")
        else:
            raise _unsupported_parameter(name)
    for name in ("presence_penalty", "frequency_penalty", "logit_bias"):
        if body.get(name) is not None:
            raise _unsupported_parameter(name)
    if not sampling:
        if body.get("logprobs"):
            raise _unsupported_parameter("logprobs")
        if body.get("top_logprobs") is not None:
            raise _unsupported_parameter("top_logprobs")
    if family in ("o3", "gpt-5") and body.get("stop") is not None:
        raise _unsupported_parameter("stop")
    if family == "o1-early" and body.get("reasoning_effort") is not None:
        raise _unsupported_parameter("reasoning_effort")


def _check_envelope(raw: bytes, fields: frozenset, require_model: bool = True) -> dict:
    """The checks every endpoint starts with: a JSON object, no unknown arguments, a model."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
        raise _Invalid(UNPARSABLE_BODY_MESSAGE) from None
    if not isinstance(body, dict):
        raise _Invalid(UNPARSABLE_BODY_MESSAGE)
    unknown = [name for name in body if name not in fields]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise _Invalid(f"Unrecognized request argument{plural} supplied: {', '.join(unknown)}")
    if "model" in body or require_model:
        if "model" not in body:
            raise _Invalid("you must provide a model parameter")
        _check_type(body["model"], "string", "model")
    return body


def _check_body(raw: bytes, require_model: bool = True) -> dict:
    """A Chat Completions body. ``require_model=False`` is Azure's deployment-scoped form,
    where the deployment in the URL picks the model and a body ``model`` is ignored."""
    body = _check_envelope(raw, REQUEST_FIELDS, require_model)
    if "messages" not in body:
        raise _missing("messages")
    _check_messages(body["messages"])
    _check_parameters(body)
    return body


# ----------------------------------------------------------------------------------------------
# Embeddings and legacy Completions
# ----------------------------------------------------------------------------------------------

# openai/types/embedding_create_params.py and completion_create_params.py (openai-python 3.54).
EMBEDDING_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
COMPLETION_FIELDS = frozenset({
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
})
# Native output sizes of the embedding models (openai/types/embedding_model.py); unknown models get 1536.
EMBEDDING_SIZES = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
DEFAULT_EMBEDDING_SIZE = 1536
# What the API says when a token-array or string input is empty or of the wrong shape.
INVALID_INPUT_MESSAGE = ("'$.input' is invalid. Please check the API reference: "
                         "https://platform.openai.com/docs/api-reference.")
CHAT_MODEL_ON_COMPLETIONS = ("This is a chat model and not supported in the v1/completions endpoint. Did you mean to use "
                             "v1/chat/completions?")


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in value)


def embedding_inputs(value: Any) -> list[str | list[int]] | None:
    """The inputs of an embeddings ``input`` (str | str[] | int[] | int[][]), or None when the
    API would refuse it: empty strings, empty arrays and mixed arrays included."""
    if isinstance(value, str):
        return [value] if value else None
    if _is_token_array(value):
        return [value]
    if not isinstance(value, list) or not value or len(value) > 2048:
        return None
    if all(isinstance(item, str) and item for item in value):
        return list(value)
    if all(_is_token_array(item) for item in value):
        return list(value)
    return None


def _check_embeddings_body(raw: bytes, require_model: bool = True) -> dict:
    body = _check_envelope(raw, EMBEDDING_FIELDS, require_model)
    if "input" not in body:
        raise _missing("input")
    if embedding_inputs(body["input"]) is None:
        raise _Invalid(INVALID_INPUT_MESSAGE)
    if body.get("encoding_format") is not None:
        _check_choice(body["encoding_format"], ("float", "base64"), "encoding_format")
    if body.get("dimensions") is not None:
        _check_type(body["dimensions"], "integer", "dimensions")
        _check_bounds(body["dimensions"], "dimensions", 1, integer=True)
        if body.get("model") == "text-embedding-ada-002":
            raise _Invalid("This model does not support specifying dimensions.", "dimensions")
    if "user" in body:
        _check_type(body["user"], "string", "user")
    return body


_COMPLETION_NUMBERS = {
    "temperature": ("number", 0, 2),
    "top_p": ("number", 0, 1),
    "n": ("integer", 1, 128),
    "best_of": ("integer", 0, 20),
    "max_tokens": ("integer", 0, None),
    "logprobs": ("integer", 0, 5),
    "presence_penalty": ("number", -2, 2),
    "frequency_penalty": ("number", -2, 2),
    "seed": ("integer", None, None),
}


def completion_prompts(value: Any) -> list[str | list[int]] | None:
    """The prompts of a legacy ``prompt`` (str | str[] | int[] | int[][]), or None if malformed."""
    if isinstance(value, str) or _is_token_array(value):
        return [value]
    if isinstance(value, list) and value and (all(isinstance(item, str) for item in value)
                                             or all(_is_token_array(item) for item in value)):
        return list(value)
    return None


def _check_completions_body(raw: bytes, require_model: bool = True) -> dict:
    body = _check_envelope(raw, COMPLETION_FIELDS, require_model)
    if body.get("model") in MODELS:
        raise _Invalid(CHAT_MODEL_ON_COMPLETIONS, "model", status=404)
    if "prompt" not in body:
        raise _missing("prompt")
    if completion_prompts(body["prompt"]) is None:
        raise _Invalid(f"Invalid type for 'prompt': expected a string or an array of strings or tokens, but got "
                       f"{_described(body['prompt'])} instead.", "prompt", "invalid_type")
    for name, (kind, minimum, maximum) in _COMPLETION_NUMBERS.items():
        if body.get(name) is not None:
            _check_type(body[name], kind, name)
            _check_bounds(body[name], name, minimum, maximum, integer=kind == "integer")
    if body.get("best_of") is not None and body["best_of"] < (body.get("n") or 1):
        raise _Invalid("best_of must be greater than or equal to n.", "best_of")
    for name in ("stream", "echo"):
        _check_type(body.get(name), "boolean", name, nullable=True)
    _check_type(body.get("suffix"), "string", "suffix", nullable=True)
    if "user" in body:
        _check_type(body["user"], "string", "user")
    _check_stop(body.get("stop"))
    _check_stream_options(body)
    return body


def _vector(seed: str, size: int) -> list[float]:
    """A deterministic unit vector for ``seed``, every component exactly representable as
    float32 so the ``float`` and ``base64`` encodings carry the same numbers."""
    raw: list[float] = []
    counter = 0
    while len(raw) < size:
        digest = hashlib.sha256(f"{seed}\x00{counter}".encode()).digest()
        raw.extend((value / 2**31) - 1.0 for value in struct.unpack(">8I", digest))
        counter += 1
    raw = raw[:size]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", value / norm))[0] for value in raw]


def embedding_vector(item: str | list[int], size: int) -> list[float]:
    return _vector(item if isinstance(item, str) else json.dumps(item), size)


def encode_base64_floats(values: list[float]) -> str:
    """What ``encoding_format: "base64"`` returns: the little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def embeddings_response(body: dict, model: str) -> dict:
    """The ``list`` of ``embedding`` objects for an (already validated) embeddings request."""
    items = embedding_inputs(body["input"]) or []
    size = body.get("dimensions") or EMBEDDING_SIZES.get(body.get("model") or model, DEFAULT_EMBEDDING_SIZE)
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, size)
        data.append({"object": "embedding", "index": index,
                     "embedding": encode_base64_floats(vector) if body.get("encoding_format") == "base64" else vector})
    tokens = sum(len(item) if isinstance(item, list) else max(1, estimate_tokens(item)) for item in items)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def text_completion(texts: list[tuple[str, str]], model: str, prompt_tokens: int, completion_id: str | None = None,
                    completion_tokens: int | None = None) -> dict:
    """A ``text_completion`` body; ``texts`` holds one ``(text, finish_reason)`` per choice."""
    if completion_tokens is None:
        completion_tokens = sum(estimate_tokens(text) for text, _ in texts)
    return {
        "id": completion_id or "cmpl-" + random_token(29),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": reason}
                    for index, (text, reason) in enumerate(texts)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def text_completion_chunks(completion: dict, include_usage: bool = False) -> list[Any]:
    """The legacy stream: per choice one ``text_completion`` chunk per word, then one with an
    empty text and the finish reason; the usage chunk (``choices: []``) when asked; ``[DONE]``."""
    def chunk(choices: list[dict], usage: dict | None = None) -> dict:
        body = {"id": completion["id"], "object": "text_completion", "created": completion["created"],
                "choices": choices, "model": completion["model"]}
        return {**body, "usage": usage} if include_usage else body

    chunks: list[Any] = []
    for choice in completion["choices"]:
        for piece in word_pieces(choice["text"]):
            chunks.append(chunk([{"text": piece, "index": choice["index"], "logprobs": None, "finish_reason": None}]))
        chunks.append(chunk([{"text": "", "index": choice["index"], "logprobs": None,
                              "finish_reason": choice["finish_reason"]}]))
    if include_usage:
        chunks.append(chunk([], completion["usage"]))
    chunks.append("[DONE]")
    return chunks


def default_text_completion(body: dict, model: str) -> dict:
    """The mock's answer to a validated legacy request: ``Echo: <prompt>`` per prompt and per
    ``n``, cut by ``stop`` and ``max_tokens`` (default 16, as the API documents)."""
    prompts = completion_prompts(body["prompt"]) or []
    stop = body.get("stop")
    max_tokens = body["max_tokens"] if body.get("max_tokens") is not None else 16
    texts = []
    for prompt in prompts:
        shown = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        cut = truncate_reply(f"Echo: {shown}".rstrip(), [stop] if isinstance(stop, str) else stop or (), max_tokens)
        texts += [(cut.text, "length" if cut.reason == "max_tokens" else "stop")] * (body.get("n") or 1)
    prompt_tokens = sum(len(p) if isinstance(p, list) else estimate_tokens(p) for p in prompts)
    return text_completion(texts, model, max(1, prompt_tokens))


# ----------------------------------------------------------------------------------------------
# Default reply
# ----------------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content or () if part.get("type") == "text")


def last_user_text(messages: list) -> str:
    return next((_text_of(message["content"]) for message in reversed(messages) if message["role"] == "user"), "")


def _prompt_texts(body: dict) -> Iterator[str]:
    for message in body["messages"]:
        yield _text_of(message.get("content"))
        for call in message.get("tool_calls") or ():
            yield call["function"]["arguments"]
    for tool in body.get("tools") or ():
        yield json.dumps(tool)


def _snapshot(model: str) -> str:
    return model if re.search(r"\d{4}-\d{2}-\d{2}$", model) else f"{model}-{SNAPSHOT_DATE}"


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Route -> body validator (each takes the raw body and ``require_model``).
BODY_CHECKS = {"chat": _check_body, "embeddings": _check_embeddings_body, "completions": _check_completions_body}


class OpenAIMock(MockServer):
    """Strict Chat Completions mock; see the module docstring for what it enforces."""

    json_indent = 2

    def __init__(self, api_key: str = "test-openai-key", base_path: str = "/v1", port: int = 0):
        self.api_key = api_key
        self.base_path = base_path.rstrip("/")
        super().__init__(port)

    # --- helpers for tests ----------------------------------------------------------------------

    @staticmethod
    def completion(content: str | None = "", *, tool_calls: list[dict] | None = None, finish_reason: str = "stop",
                   model: str = f"{DEFAULT_MODEL}-{SNAPSHOT_DATE}", prompt_tokens: int = 10,
                   completion_tokens: int | None = None, cached_tokens: int = 0, reasoning_tokens: int = 0,
                   n: int = 1, completion_id: str | None = None) -> dict:
        """A complete ``chat.completion`` body with ``n`` identical choices."""
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if completion_tokens is None:
            produced = [content or ""] + [call["function"]["arguments"] for call in tool_calls or ()]
            completion_tokens = n * max(1, sum(map(estimate_tokens, produced)))
        return {
            "id": completion_id or "chatcmpl-" + random_token(29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": index, "message": dict(message), "logprobs": None, "finish_reason": finish_reason}
                        for index in range(n)],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_" + random_token(10, "0123456789abcdef"),
        }

    # --- MockServer hooks -----------------------------------------------------------------------

    def new_request_id(self) -> str:
        return "req_" + random_token(32, "0123456789abcdef")

    def common_headers(self, request_id: str | None) -> dict[str, str]:
        return {"x-request-id": request_id}

    def encode_event(self, event: Any) -> bytes:
        return _sse_frame(event)

    def validate(self, request: RecordedRequest, request_id: str | None) -> None:
        try:
            route = self._route(request)
            if route is None:
                raise _Invalid(f"Invalid URL ({request.method} {request.path})", status=404)
            self._check_key(request.headers)
            if route in BODY_CHECKS:
                body = BODY_CHECKS[route](request.body)
                if route == "chat":
                    check_model_rules(body, body["model"])
        except _Invalid as error:
            raise Rejection(error.status, openai_error_body(error.message, param=error.param, code=error.code)) \
                from None

    def _route(self, request: RecordedRequest) -> str | None:
        if request.method == "POST" and request.path == f"{self.base_path}/chat/completions":
            return "chat"
        if request.method == "POST" and request.path == f"{self.base_path}/embeddings":
            return "embeddings"
        if request.method == "POST" and request.path == f"{self.base_path}/completions":
            return "completions"
        if request.method == "GET" and request.path == f"{self.base_path}/models":
            return "models"
        return None

    def _check_key(self, headers: dict[str, str]) -> None:
        token = _bearer_token(headers.get("authorization", ""))
        if token is None:
            raise _Invalid(MISSING_KEY_MESSAGE, status=401)
        if token != self.api_key:
            raise _Invalid(f"Incorrect API key provided: {mask_key(token)}. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", code="invalid_api_key", status=401)

    def default_response(self, request: RecordedRequest, request_id: str | None) -> Response:
        headers = self.common_headers(request_id)
        route = self._route(request)
        if route == "models":
            models = [{"id": model, "object": "model", "created": 1715367049, "owned_by": "system"} for model in MODELS]
            return Response.json(200, {"object": "list", "data": models}, headers, self.json_indent)
        body = request.json
        if route == "embeddings":
            return Response.json(200, embeddings_response(body, body["model"]), headers, self.json_indent)
        if route == "completions":
            completion = default_text_completion(body, body["model"])
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                chunks = text_completion_chunks(completion, include_usage)
                return Response.stream([self.encode_event(chunk) for chunk in chunks], headers)
            return Response.json(200, completion, headers, self.json_indent)
        stop = body.get("stop")
        cut = truncate_reply(f"Echo: {last_user_text(body['messages'])}".rstrip(),
                             [stop] if isinstance(stop, str) else stop or (),
                             body.get("max_completion_tokens") or body.get("max_tokens"))
        completion = self.completion(cut.text, model=_snapshot(body["model"]),
                                     finish_reason="length" if cut.reason == "max_tokens" else "stop",
                                     prompt_tokens=max(1, sum(map(estimate_tokens, _prompt_texts(body)))),
                                     n=body.get("n") or 1)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = completion_chunks(completion, include_usage)
            return Response.stream([self.encode_event(chunk) for chunk in chunks], headers)
        return Response.json(200, completion, headers, self.json_indent)
