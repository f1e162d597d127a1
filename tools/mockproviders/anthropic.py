"""Strict mock of the Anthropic Messages API: ``POST /v1/messages``, nothing else.

The request schema follows ``anthropic/types/message_create_params.py`` of anthropic-python 2.12.0
(non-beta), plus ``temperature``/``top_p``/``top_k``, which that SDK release no longer lists but
the public Messages API reference documents (0..1, 0..1, >= 0) and docs/providers/anthropic.md#request-mapping maps onto.

Authentication takes the key from ``x-api-key`` or ``Authorization: Bearer`` (the SDK's choice);
``anthropic-version`` must be a published version.

Errors mimic the real API: pydantic-style ``<dotted.path>: <message>`` texts where a union member
appears as its tag (``messages.1.content.0.tool_use.id``, ``tools.0.custom.name``,
``thinking.enabled.budget_tokens``), the ``{"type":"error","error":{...},"request_id":...}``
envelope, and a ``request-id`` header on every reply. Checks run in this order (the API's, as far
as observed): route, API key, anthropic-version, JSON body, schema (required fields, unknown
fields, types and ranges, message blocks), then the conversation rules (non-empty content, tool
pairing, tool_choice, thinking).

Block types the real API accepts but a translating gateway never produces (server-tool blocks,
server tools) are refused with a message that names the mock, so a test hitting one knows the
limit is the mock's, not Anthropic's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .base import (MockServer, RecordedRequest, Rejection, Response, estimate_tokens, random_token, truncate_reply,
                   word_pieces)

# 2023-06-01 is the documented version; anthropic-python 2.12.0 sends 2026-10-21 by default.
API_VERSIONS = ("2023-06-01", "2023-01-01", "2026-10-21")
DEFAULT_MODEL = "claude-sonnet-4-6"
THINKING_MIN_BUDGET = 1024
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,128}$"
TOOL_USE_ID_PATTERN = "^[a-zA-Z0-9_-]+$"

# Values of `anthropic-beta` the SDK knows (types/anthropic_beta_param.py); the API rejects others.
KNOWN_BETAS = frozenset("""
    computer-use-2024-10-22 computer-use-2025-01-24 computer-use-2025-11-24 output-128k-2025-02-19
    mcp-client-2025-04-04 mcp-client-2025-11-20 mcp-client-2026-09-15 dev-full-thinking-2025-05-14
    interleaved-thinking-2025-05-14 code-execution-2025-05-22 context-1m-2025-08-07
    context-management-2025-06-27 model-context-window-exceeded-2025-08-26 fast-mode-2026-02-01
    output-300k-2026-03-24 user-profiles-2026-03-24 user-profiles-2026-08-18 user-profiles-2026-09-04
    advisor-tool-2026-03-01 managed-agents-2026-04-01 dreaming-2026-04-21
    thinking-token-count-2026-05-13 server-side-fallback-2026-06-01 server-side-fallback-2026-07-01
    fallback-credit-2026-06-01 fallback-credit-2026-07-01 agent-memory-2026-07-22
    mid-conversation-tool-changes-2026-07-01 compact-2026-01-12 compact-2026-09-04
    mcp-tunnels-2026-06-22 structured-outputs-2025-11-13 task-budgets-2026-03-13
    thinking-display-updates-2026-08-18 mid-conversation-output-config-2026-07-01
    thinking-binding-controls-2026-08-01 mid-conversation-system-clear-at-2026-08-21
    inline-tools-2026-09-15 ce-plugins-2026-09-01 spend-limit-reads-2026-09-26
    telemetry-destinations-2026-08-11 webhooks-2026-10-07 admin-user-sign-out-2026-10-08
    message-threads-2026-08-12 analytics-usage-cost-2026-08-24 experimental-claude-tag-2026-10-21
    message-batches-2024-09-24 prompt-caching-2024-07-31 pdfs-2024-09-25 token-counting-2024-11-01
    token-efficient-tools-2025-02-19 files-api-2025-04-14 extended-cache-ttl-2025-04-11
    skills-2025-10-02 cache-diagnosis-2026-04-07 ce-user-management-2026-07-13
    ce-claude-code-managed-settings-2026-10-06 user-profiles-billing-2026-10-01
""".split())

# Server tools (types/tool_union_param.py): valid for the API, out of scope for this mock.
SERVER_TOOL_TYPES = (
    "bash_20250124", "browser_toolset_20260801", "code_execution_20250522", "code_execution_20250825",
    "code_execution_20260120", "code_execution_20260521", "computer_toolset_20260801", "memory_20250818",
    "text_editor_20250124", "text_editor_20250429", "text_editor_20250728", "web_fetch_20250910",
    "web_fetch_20260209", "web_fetch_20260309", "web_fetch_20260318", "web_search_20250305",
    "web_search_20260209", "web_search_20260318", "tool_search_tool_bm25_20251119", "tool_search_tool_bm25",
    "tool_search_tool_regex_20251119", "tool_search_tool_regex",
)
# Server-tool content blocks (types/message_content_param.py), likewise out of scope.
SERVER_BLOCK_TYPES = (
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "container_upload",
)


# ----------------------------------------------------------------------------------------------
# Body builders for tests
# ----------------------------------------------------------------------------------------------


def anthropic_error_body(error_type: str, message: str, request_id: str | None = None) -> dict:
    """The Messages API error envelope, e.g. ``anthropic_error_body("overloaded_error", "Overloaded")``."""
    return {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": request_id or new_request_id()}


def new_request_id() -> str:
    return "req_011C" + random_token(20)


def sse(events: Iterable[tuple[str, Any] | bytes]) -> bytes:
    """Encode ``(event_name, payload)`` pairs (or raw bytes) as an Anthropic SSE stream."""
    return b"".join(event if isinstance(event, bytes) else _sse_frame(*event) for event in events)


def _sse_frame(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def tool_use_block(name: str, input: dict, id: str | None = None) -> dict:
    return {"type": "tool_use", "id": id or "toolu_01" + random_token(22), "name": name, "input": input}


# Thinking blocks carry a signature the API checks when they come back; the mock signs its
# own (HMAC of the text) so a gateway that alters or invents a block is caught.
_SIGNING_KEY = b"switchyard-mock-anthropic-thinking"


def sign_thinking(thinking: str) -> str:
    digest = hmac.new(_SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()
    return "Eq" + base64.b64encode(digest).decode()


def thinking_block(thinking: str, signature: str | None = None) -> dict:
    """A thinking block; signed by the mock unless ``signature`` is given (an explicit one is
    refused when sent back, as a forged signature would be)."""
    return {"type": "thinking", "thinking": thinking, "signature": signature or sign_thinking(thinking)}


def redacted_thinking_block(data: str) -> dict:
    return {"type": "redacted_thinking", "data": data}


def message_events(message: dict) -> list[tuple[str, dict]]:
    """The SSE events the API streams for ``message`` (a full Messages API response body):
    message_start, per block start/deltas/stop (with one ping after the first start),
    message_delta carrying the stop reason and cumulative usage, message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": min(1, usage["output_tokens"])}}
    events = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events.append(("content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": _started_block(block)}))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                      for delta in _block_deltas(block))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not message["content"]:
        events.append(("ping", {"type": "ping"}))
    cumulative = {key: usage[key] for key in
                  ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message["stop_reason"],
                                               "stop_sequence": message["stop_sequence"]},
                                     "usage": cumulative}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _started_block(block: dict) -> dict:
    """A block as content_block_start announces it: empty, to be filled by deltas."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": ""}
    if kind == "tool_use":
        return {**block, "input": {}}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return block


def _block_deltas(block: dict) -> list[dict]:
    kind = block["type"]
    if kind == "text":
        return [{"type": "text_delta", "text": piece} for piece in word_pieces(block["text"])]
    if kind == "tool_use":
        arguments = json.dumps(block["input"], separators=(",", ":"))
        # The API's first input_json_delta is typically empty; fragments are raw substrings.
        return [{"type": "input_json_delta", "partial_json": piece}
                for piece in ["", *(arguments[i:i + 8] for i in range(0, len(arguments), 8))]]
    if kind == "thinking":
        return ([{"type": "thinking_delta", "thinking": piece} for piece in word_pieces(block["thinking"])]
                + [{"type": "signature_delta", "signature": block["signature"]}])
    return []


# ----------------------------------------------------------------------------------------------
# Validation primitives (pydantic-style messages, as the API words them)
# ----------------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400, error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type


def _at(path: str, message: str) -> _Invalid:
    return _Invalid(f"{path}: {message}" if path else message)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


_KIND_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "list": list, "object": dict}
_KIND_MESSAGES = {
    "string": "Input should be a valid string",
    "integer": "Input should be a valid integer",
    "number": "Input should be a valid number",
    "boolean": "Input should be a valid boolean",
    "list": "Input should be a valid list",
    "object": "Input should be a valid dictionary",
}

# A field kind is a type name from _KIND_TYPES ("name?" also allows null), a tuple of allowed
# literal values (None in it allows null), or None when a dedicated check validates the value.
Kind = Any


def _one_of(values: Iterable[Any]) -> str:
    quoted = [f"'{value}'" for value in values if value is not None]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _check_value(value: Any, kind: Kind, path: str) -> None:
    if kind is None:
        return
    if isinstance(kind, tuple):
        if not any(value == allowed and type(value) is type(allowed) for allowed in kind):
            raise _at(path, f"Input should be {_one_of(kind)}")
        return
    if kind.endswith("?"):
        if value is None:
            return
        kind = kind[:-1]
    if (isinstance(value, bool) and kind in ("integer", "number")) or not isinstance(value, _KIND_TYPES[kind]):
        raise _at(path, _KIND_MESSAGES[kind])


def _check_fields(obj: Any, path: str, required: dict[str, Kind], optional: dict[str, Kind]) -> None:
    """Type-check a JSON object against its field list; unknown keys are refused like the API does."""
    _check_value(obj, "object", path)
    for name, kind in {**required, **optional}.items():
        if name in obj:
            _check_value(obj[name], kind, _join(path, name))
        elif name in required:
            raise _at(_join(path, name), "Field required")
    for name in obj:
        if name not in required and name not in optional:
            raise _at(_join(path, name), "Extra inputs are not permitted")


def _check_range(value: float, path: str, minimum: float | None = None, maximum: float | None = None) -> None:
    if minimum is not None and value < minimum:
        raise _at(path, f"Input should be greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise _at(path, f"Input should be less than or equal to {maximum}")


def _check_pattern(value: str, pattern: str, path: str) -> None:
    if not re.fullmatch(pattern, value):
        raise _at(path, f"String should match pattern '{pattern}'")


Validator = Callable[[Any, str], None]  # checks a value found at a dotted path


def _check_tagged(obj: Any, path: str, validators: dict[str, Validator], mock_unsupported: Iterable[str] = ()) -> None:
    """Validate one member of a union discriminated by ``type``; errors inside it carry the tag
    in their path (``...content.0.text.text``), as the API reports them."""
    _check_value(obj, "object", path)
    if "type" not in obj:
        raise _at(path, "Unable to extract tag using discriminator 'type'")
    tag = obj["type"]
    if isinstance(tag, str) and tag in mock_unsupported:
        raise _at(path, f"type '{tag}' is valid for the real API but not supported by this mock")
    if not isinstance(tag, str) or tag not in validators:
        expected = ", ".join(f"'{name}'" for name in [*validators, *mock_unsupported])
        raise _at(path, f"Input tag '{tag}' found using 'type' does not match any of the expected tags: {expected}")
    validators[tag](obj, _join(path, tag))


def _check_cache_control(value: Any, path: str) -> None:
    if value is not None:
        _check_tagged(value, path, {"ephemeral": lambda obj, at: _check_fields(
            obj, at, {"type": "string"}, {"ttl": ("5m", "1h")})})


# ----------------------------------------------------------------------------------------------
# Content blocks
# ----------------------------------------------------------------------------------------------


def _check_text_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "text": "string"}, {"cache_control": None, "citations": "list?"})
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


# Leading bytes of each image format, to catch a media_type that lies about the data.
_IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                     b"GIF89a": "image/gif"}


def _sniff_image(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _IMAGE_SIGNATURES.items() if data.startswith(magic)), None)


def _decode_base64(data: str, path: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        # A common translator bug: forwarding a whole data: URL instead of its payload.
        raise _at(path, "Invalid base64 data") from None


def _check_base64_image(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "media_type": IMAGE_MEDIA_TYPES, "data": "string"}, {})
    actual = _sniff_image(_decode_base64(source["data"], _join(path, "data")))
    if actual is None:
        raise _at(path, "Could not process image")
    if actual != source["media_type"]:
        raise _at(_join(path, "data"), f"The image was specified using the {source['media_type']} media type, "
                                       f"but the image appears to be a {actual} image")


def _check_url_source(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "url": "string"}, {})


def _check_file_source(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "file_id": "string"}, {})


def _check_image_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "source": None},
                  {"cache_control": None, "transformations": "object?"})
    _check_tagged(block["source"], _join(path, "source"),
                  {"base64": _check_base64_image, "url": _check_url_source, "file": _check_file_source})
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


def _check_base64_pdf(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "media_type": ("application/pdf",), "data": "string"}, {})
    _decode_base64(source["data"], _join(path, "data"))


def _check_text_source(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "media_type": ("text/plain",), "data": "string"}, {})


def _check_content_source(source: dict, path: str) -> None:
    _check_fields(source, path, {"type": "string", "content": None}, {})
    content = source["content"]
    if not isinstance(content, str):
        _check_value(content, "list", _join(path, "content"))
        for index, block in enumerate(content):
            _check_tagged(block, f"{path}.content.{index}", {"text": _check_text_block, "image": _check_image_block})


def _check_document_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "source": None},
                  {"cache_control": None, "citations": "object?", "context": "string?", "title": "string?"})
    _check_tagged(block["source"], _join(path, "source"),
                  {"base64": _check_base64_pdf, "text": _check_text_source, "content": _check_content_source,
                   "url": _check_url_source, "file": _check_file_source})
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


def _check_search_result_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "content": "list", "source": "string", "title": "string"},
                  {"cache_control": None, "citations": "object"})
    for index, item in enumerate(block["content"]):
        _check_text_block(item, f"{path}.content.{index}")
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


def _check_thinking_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "signature": "string", "thinking": "string"}, {})


def _check_redacted_thinking_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "data": "string"}, {})


def _check_tool_use_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "id": "string", "input": "object", "name": "string"},
                  {"cache_control": None, "caller": "object", "toolset_name": "string?"})
    _check_pattern(block["id"], TOOL_USE_ID_PATTERN, _join(path, "id"))
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


_TOOL_RESULT_CONTENT = {"text": _check_text_block, "image": _check_image_block,
                        "search_result": _check_search_result_block, "document": _check_document_block}


def _check_tool_result_block(block: dict, path: str) -> None:
    _check_fields(block, path, {"type": "string", "tool_use_id": "string"},
                  {"cache_control": None, "content": None, "is_error": "boolean", "toolset_name": "string?"})
    content = block.get("content")
    if content is not None and not isinstance(content, str):
        _check_value(content, "list", _join(path, "content"))
        for index, item in enumerate(content):
            _check_tagged(item, f"{path}.content.{index}", _TOOL_RESULT_CONTENT,
                          mock_unsupported=("tool_reference", "browser_state"))
    _check_cache_control(block.get("cache_control"), _join(path, "cache_control"))


_MESSAGE_BLOCKS = {
    "text": _check_text_block, "image": _check_image_block, "document": _check_document_block,
    "search_result": _check_search_result_block, "thinking": _check_thinking_block,
    "redacted_thinking": _check_redacted_thinking_block, "tool_use": _check_tool_use_block,
    "tool_result": _check_tool_result_block,
}
# Blocks only one side of the conversation can carry.
_BLOCK_ROLES = {"tool_use": "assistant", "thinking": "assistant", "redacted_thinking": "assistant",
                "tool_result": "user"}


# ----------------------------------------------------------------------------------------------
# Request fields
# ----------------------------------------------------------------------------------------------


def _check_messages(messages: list, path: str) -> None:
    if not messages:
        raise _at(path, "at least one message is required")
    for index, message in enumerate(messages):
        message_path = f"{path}.{index}"
        _check_fields(message, message_path, {"role": ("user", "assistant"), "content": None}, {})
        content = message["content"]
        if isinstance(content, str):
            continue
        _check_value(content, "list", f"{message_path}.content")
        for position, block in enumerate(content):
            block_path = f"{message_path}.content.{position}"
            _check_tagged(block, block_path, _MESSAGE_BLOCKS, mock_unsupported=SERVER_BLOCK_TYPES)
            allowed_role = _BLOCK_ROLES.get(block["type"], message["role"])
            if allowed_role != message["role"]:
                raise _at(block_path, f"`{block['type']}` blocks can only be in `{allowed_role}` messages")


def _check_system(system: Any, path: str) -> None:
    if isinstance(system, str):
        return
    _check_value(system, "list", path)
    for index, block in enumerate(system):
        block_path = f"{path}.{index}"
        _check_fields(block, block_path, {"type": ("text",), "text": "string"},
                      {"cache_control": None, "citations": "list?"})
        _check_cache_control(block.get("cache_control"), _join(block_path, "cache_control"))
        if not block["text"]:
            raise _at(path, "text content blocks must be non-empty")


def _check_custom_tool(tool: dict, path: str) -> None:
    _check_fields(tool, path, {"name": "string", "input_schema": "object"},
                  {"type": ("custom", None), "description": "string", "cache_control": None, "strict": "boolean",
                   "allowed_callers": "list", "defer_loading": "boolean", "eager_input_streaming": "boolean?",
                   "input_examples": "list"})
    _check_pattern(tool["name"], TOOL_NAME_PATTERN, _join(path, "name"))
    _check_input_schema(tool["input_schema"], _join(path, "input_schema"))
    _check_cache_control(tool.get("cache_control"), _join(path, "cache_control"))


def _check_input_schema(schema: dict, path: str) -> None:
    # Any JSON Schema keyword may appear (InputSchemaTyped allows extras); only these are typed.
    if "type" not in schema:
        raise _at(_join(path, "type"), "Field required")
    _check_value(schema["type"], ("object",), _join(path, "type"))
    _check_value(schema.get("properties"), "object?", _join(path, "properties"))
    _check_value(schema.get("required"), "list?", _join(path, "required"))


def _check_tools(tools: Any, path: str) -> None:
    _check_value(tools, "list", path)
    for index, tool in enumerate(tools):
        tool_path = f"{path}.{index}"
        _check_value(tool, "object", tool_path)
        # `type` may be omitted (or null) for custom tools: the union then falls back to "custom".
        _check_tagged({**tool, "type": tool.get("type") or "custom"}, tool_path, {"custom": _check_custom_tool},
                      mock_unsupported=SERVER_TOOL_TYPES)
    names = [tool["name"] for tool in tools]
    if len(set(names)) != len(names):
        raise _at(path, "Tool names must be unique.")


def _fields(required: dict[str, Kind], optional: dict[str, Kind]) -> Validator:
    """A validator for a plain object with these fields."""
    return lambda obj, path: _check_fields(obj, path, required, optional)


_TYPE_ONLY = {"type": "string"}
_PARALLEL = {"disable_parallel_tool_use": "boolean"}
_DISPLAY = {"display": ("summarized", "omitted", None)}


def _check_tool_choice(choice: Any, path: str) -> None:
    _check_tagged(choice, path, {"auto": _fields(_TYPE_ONLY, _PARALLEL), "any": _fields(_TYPE_ONLY, _PARALLEL),
                                 "tool": _fields({**_TYPE_ONLY, "name": "string"}, _PARALLEL),
                                 "none": _fields(_TYPE_ONLY, {})})


def _check_enabled_thinking(thinking: dict, path: str) -> None:
    _check_fields(thinking, path, {**_TYPE_ONLY, "budget_tokens": "integer"}, _DISPLAY)
    _check_range(thinking["budget_tokens"], _join(path, "budget_tokens"), minimum=THINKING_MIN_BUDGET)


def _check_thinking(thinking: Any, path: str) -> None:
    _check_tagged(thinking, path, {"enabled": _check_enabled_thinking, "disabled": _fields(_TYPE_ONLY, {}),
                                   "adaptive": _fields(_TYPE_ONLY, _DISPLAY),
                                   "between_tools": _fields(_TYPE_ONLY, {})})


def _check_stop_sequences(sequences: Any, path: str) -> None:
    _check_value(sequences, "list", path)
    for index, sequence in enumerate(sequences):
        _check_value(sequence, "string", f"{path}.{index}")
        if not sequence.strip():
            raise _at(path, "each stop sequence must contain non-whitespace")


def _check_output_config(config: Any, path: str) -> None:
    _check_fields(config, path, {}, {"effort": ("low", "medium", "high", "xhigh", "max", None), "format": "object?"})
    if config.get("format") is not None:
        _check_fields(config["format"], _join(path, "format"), {"type": ("json_schema",), "schema": "object"}, {})


def _check_container(container: Any, path: str) -> None:
    if container is not None and not isinstance(container, str):
        _check_fields(container, path, {}, {"id": "string?", "skills": "list?"})


def _check_diagnostics(diagnostics: Any, path: str) -> None:
    if diagnostics is not None:
        _check_fields(diagnostics, path, {}, {"previous_message_id": "string?"})


def _kind(kind: Kind) -> Validator:
    return lambda value, path: _check_value(value, kind, path)


def _number(kind: str, minimum: float | None = None, maximum: float | None = None) -> Validator:
    def check(value: Any, path: str) -> None:
        _check_value(value, kind, path)
        _check_range(value, path, minimum, maximum)
    return check


REQUIRED_FIELDS: dict[str, Kind] = {"model": "string", "max_tokens": "integer", "messages": "list"}

# Every field's full check, in the order they run (message blocks last, as the deepest). max_tokens
# may be 0: the SDK documents it as "populate the prompt cache without generating a response".
FIELD_CHECKS: dict[str, Validator] = {
    "max_tokens": _number("integer", minimum=0),
    "system": _check_system,
    "metadata": _fields({}, {"user_id": "string?"}),
    "stop_sequences": _check_stop_sequences,
    "stream": _kind("boolean"),
    "temperature": _number("number", 0, 1),
    "top_p": _number("number", 0, 1),
    "top_k": _number("integer", minimum=0),
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "thinking": _check_thinking,
    "service_tier": _kind(("auto", "standard_only")),
    "output_config": _check_output_config,
    "cache_control": _check_cache_control,
    "container": _check_container,
    "diagnostics": _check_diagnostics,
    "inference_geo": _kind("string?"),
    "speed": _kind(("standard", "fast", None)),
    "user_profile_id": _kind("string"),
    "workspace_id": _kind("string"),
    "messages": _check_messages,
}
REQUEST_FIELDS = frozenset(REQUIRED_FIELDS) | frozenset(FIELD_CHECKS)


# ----------------------------------------------------------------------------------------------
# Conversation rules (checked after the schema)
# ----------------------------------------------------------------------------------------------


def _blocks(message: dict) -> list[dict]:
    content = message["content"]
    return [text_block(content)] if isinstance(content, str) else content


def _texts(message: dict) -> Iterator[str]:
    """Every text a message carries, tool results' text included."""
    for block in _blocks(message):
        if block["type"] == "text":
            yield block["text"]
        elif block["type"] == "tool_result" and isinstance(block.get("content"), list):
            yield from (item["text"] for item in block["content"] if item["type"] == "text")


def _check_text_not_blank(messages: list) -> None:
    last = len(messages) - 1
    for index, message in enumerate(messages):
        if message["content"] in ("", []):
            if index == last and message["role"] == "assistant":
                continue  # an empty final assistant turn is how a caller asks for a fresh answer
            raise _Invalid(f"messages.{index}: all messages must have non-empty content except for "
                           "the optional final assistant message")
        texts = list(_texts(message))
        if "" in texts:
            raise _Invalid("messages: text content blocks must be non-empty")
        if any(not text.strip() for text in texts):
            raise _Invalid("messages: text content blocks must contain non-whitespace text")
    final_blocks = _blocks(messages[last])
    if (messages[last]["role"] == "assistant" and final_blocks and final_blocks[-1]["type"] == "text"
            and final_blocks[-1]["text"] != final_blocks[-1]["text"].rstrip()):
        raise _Invalid("messages: final assistant content cannot end with trailing whitespace")


def _tool_use_ids(message: dict) -> list[str]:
    return [block["id"] for block in _blocks(message) if block["type"] == "tool_use"]


def _check_unique_tool_use_ids(messages: list) -> None:
    seen: set[str] = set()
    for index, message in enumerate(messages):
        for position, block in enumerate(_blocks(message)):
            if block["type"] == "tool_use":
                if block["id"] in seen:
                    raise _Invalid(f"messages.{index}.content.{position}: `tool_use` ids must be unique")
                seen.add(block["id"])


def _check_tool_pairing(messages: list) -> None:
    """Every tool_use must be answered by tool_result blocks leading the very next user message,
    and every tool_result must answer a tool_use of the message right before it."""
    for index, message in enumerate(messages):
        if message["role"] == "user":
            _check_results_follow_uses(messages, index)
        else:
            _check_uses_answered(messages, index)


def _check_results_follow_uses(messages: list, index: int) -> None:
    previous = messages[index - 1] if index else None
    offered = set(_tool_use_ids(previous)) if previous and previous["role"] == "assistant" else set()
    for position, block in enumerate(_blocks(messages[index])):
        if block["type"] == "tool_result" and block["tool_use_id"] not in offered:
            raise _Invalid(f"messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` "
                           f"blocks: {block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                           "`tool_use` block in the previous message.")


def _check_uses_answered(messages: list, index: int) -> None:
    wanted = _tool_use_ids(messages[index])
    if not wanted:
        return
    following = messages[index + 1] if index + 1 < len(messages) else None
    answered: set[str] = set()
    if following is not None and following["role"] == "user":
        for block in _blocks(following):
            if block["type"] != "tool_result":
                break  # results after other content do not count: they must lead the message
            answered.add(block["tool_use_id"])
    missing = [tool_id for tool_id in wanted if tool_id not in answered]
    if missing:
        reported = index + 1 if following is not None else index
        raise _Invalid(f"messages.{reported}: `tool_use` ids were found without `tool_result` blocks immediately "
                       f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                       "`tool_result` block in the next message.")


def _check_tools_defined(body: dict) -> None:
    uses_tools = any(block["type"] in ("tool_use", "tool_result")
                     for message in body["messages"] for block in _blocks(message))
    if uses_tools and not body.get("tools"):
        raise _Invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")


def _check_tool_choice_target(body: dict) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not body.get("tools"):
        raise _Invalid("tool_choice may only be specified while providing tools")
    names = {tool["name"] for tool in body["tools"]}
    if choice["type"] == "tool" and choice["name"] not in names:
        raise _Invalid(f"tool_choice.tool.name: Tool '{choice['name']}' not found in `tools`")


def _check_thinking_compatibility(body: dict) -> None:
    thinking = body.get("thinking") or {}
    if thinking.get("type") not in ("enabled", "adaptive"):
        return
    if thinking["type"] == "enabled" and body["max_tokens"] <= thinking["budget_tokens"]:
        raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
                       "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                       "#max-tokens-and-context-window-size")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise _Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if body.get("temperature", 1) != 1:
        raise _Invalid("`temperature` may only be set to 1 when thinking is enabled.")
    # Extended-thinking docs, feature compatibility: no top_k; top_p between 0.95 and 1.
    if "top_k" in body:
        raise _Invalid("`top_k` may not be set when thinking is enabled.")  # (mock)
    if body.get("top_p", 1) < 0.95:
        raise _Invalid("`top_p` must be between 0.95 and 1 when thinking is enabled.")  # (mock)


# ----------------------------------------------------------------------------------------------
# Per-model rules (checked after the schema). Written from Anthropic's documentation and the
# errors its API returns, independently of the gateway's own table (src/providers/models.rs),
# so the two can disagree and a test then fails. Wording marked (mock) could not be confirmed
# against a real API response; the rest is the API's own text.
# ----------------------------------------------------------------------------------------------

_CLAUDE_ID = re.compile(
    r"claude-(?:(?P<family>[a-z]+)-(?P<major>\d{1,2})(?:[-.](?P<minor>\d{1,2}))?(?![0-9])"
    r"|(?P<major2>\d{1,2})(?:-(?P<minor2>\d{1,2}))?-(?P<family2>[a-z]+))")


@dataclass(frozen=True)
class ModelProfile:
    sampling: str = "any"        # "any"; "one": temperature or top_p; "none": only temperature 1
    thinking: tuple = ("enabled", "adaptive")  # accepted thinking types besides "disabled"
    always_on: bool = False      # thinks unasked; refuses thinking.type "disabled"
    forced_tools: bool = True    # accepts tool_choice any/tool
    prefill: bool = True         # accepts a final assistant message


def model_profile(model: str) -> ModelProfile:
    """What a model accepts, by family and version (claude-opus-4-6, claude-3-7-sonnet-…)."""
    if model.startswith(("claude-fable", "claude-mythos")) and not _CLAUDE_ID.match(model):
        return ModelProfile(sampling="none", thinking=("adaptive",), always_on=True, prefill=False)
    match = _CLAUDE_ID.match(model)
    if not match:
        return ModelProfile()
    family = match["family"] or match["family2"]
    version = (int(match["major"] or match["major2"]), int(match["minor"] or match["minor2"] or 0))
    if family in ("fable", "mythos"):
        return ModelProfile(sampling="none", thinking=("adaptive",), always_on=True, forced_tools=version < (5, 1),
                            prefill=False)
    if family in ("opus", "sonnet") and version >= (5, 5):
        return ModelProfile(sampling="none", thinking=("adaptive",), always_on=True, forced_tools=False,
                            prefill=False)
    if version >= (4, 7):
        return ModelProfile(sampling="none", thinking=("adaptive",), prefill=False)
    if version >= (4, 6):
        return ModelProfile(sampling="one", prefill=False)
    if version >= (4, 1):
        return ModelProfile(sampling="one", thinking=("enabled",))
    if version >= (3, 7):
        return ModelProfile(thinking=("enabled",))
    return ModelProfile(thinking=())


_THINKING_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def _check_model_rules(body: dict) -> None:
    profile = model_profile(body["model"])
    kind = (body.get("thinking") or {}).get("type")
    if kind == "disabled" and profile.always_on:
        raise _Invalid("thinking.type: `disabled` is not supported for this model; omit `thinking` instead.")  # (mock)
    if kind in ("enabled", "adaptive") and kind not in profile.thinking:
        raise _Invalid(f"thinking.type: `{kind}` thinking is not supported for this model."  # (mock)
                       + (" Use `adaptive` thinking with `output_config.effort` instead." if profile.thinking else ""))
    if profile.sampling == "none":
        for name in ("temperature", "top_p", "top_k"):
            if name in body and not (name == "temperature" and body[name] == 1):
                raise _Invalid(f"`{name}` is deprecated for this model.")
    if profile.sampling == "one" and "temperature" in body and "top_p" in body:
        raise _Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    if forced and not profile.forced_tools:
        raise _Invalid("tool_choice: this model does not support forced tool use; use `auto`.")  # (mock)
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "assistant" and any(_block_text(block) for block in _blocks(last)) and not profile.prefill:
        raise _Invalid("This model does not support assistant message prefill. The conversation must end with a user "
                       "message.")


def _check_thinking_blocks(body: dict) -> None:
    """Replayed thinking: signatures, position, and whether the request thinks."""
    kind = (body.get("thinking") or {}).get("type")
    thinking = kind in ("enabled", "adaptive")
    thinks = thinking or (model_profile(body["model"]).always_on and kind != "disabled")
    messages = body["messages"]
    last_index = len(messages) - 1
    for index, message in enumerate(messages):
        blocks = _blocks(message)
        for position, block in enumerate(blocks):
            if block["type"] != "thinking":
                continue
            if not hmac.compare_digest(block["signature"], sign_thinking(block["thinking"])):
                raise _Invalid(f"messages.{index}.content.{position}: Invalid `signature` in `thinking` block")
        if message["role"] == "assistant" and blocks and blocks[-1]["type"] in ("thinking", "redacted_thinking"):
            raise _Invalid(f"messages.{index}: The final block in an assistant message cannot be `thinking`.")
        if index == last_index and message["role"] == "assistant" and not thinks:
            for position, block in enumerate(blocks):
                if block["type"] in ("thinking", "redacted_thinking"):
                    raise _Invalid(f"messages.{index}.content.{position}: When thinking is disabled, an `assistant` "
                                   "message in the final position cannot contain `thinking`. To use thinking blocks, "
                                   "enable `thinking` in your request.")
    if not thinking:
        return
    # The assistant turn in final position, or the one the final tool results answer, must
    # open with its thinking.
    final = messages[last_index]
    if final["role"] == "assistant":
        target = last_index
    elif (any(block["type"] == "tool_result" for block in _blocks(final)) and last_index >= 1
          and messages[last_index - 1]["role"] == "assistant"):
        target = last_index - 1
    else:
        return
    blocks = _blocks(messages[target])
    if blocks and blocks[0]["type"] not in ("thinking", "redacted_thinking"):
        raise _Invalid(f"messages.{target}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                       f"`{blocks[0]['type']}`. When `thinking` is enabled, a final `assistant` message must start "
                       "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
                       "We recommend you include thinking blocks from previous turns. To avoid this requirement, "
                       f"disable `thinking`. {_THINKING_DOCS}")


def _check_body(request: RecordedRequest) -> dict:
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError) as error:  # ValueError includes UnicodeDecodeError
        raise _Invalid(f"The request body is not valid JSON: {error}") from None
    _check_value(body, "object", "")
    for name, kind in REQUIRED_FIELDS.items():
        if name not in body:
            raise _at(name, "Field required")
        _check_value(body[name], kind, name)
    for name in body:
        if name not in REQUEST_FIELDS:
            raise _at(name, "Extra inputs are not permitted")
    for name, check in FIELD_CHECKS.items():
        if name in body:
            check(body[name], name)
    _check_text_not_blank(body["messages"])
    _check_tools_defined(body)
    _check_unique_tool_use_ids(body["messages"])
    _check_tool_pairing(body["messages"])
    _check_tool_choice_target(body)
    _check_model_rules(body)
    _check_thinking_compatibility(body)
    _check_thinking_blocks(body)
    return body


# ----------------------------------------------------------------------------------------------
# Default reply
# ----------------------------------------------------------------------------------------------


def _result_texts(block: dict) -> list[str]:
    content = block.get("content") or ""
    return [content] if isinstance(content, str) else [item["text"] for item in content if item["type"] == "text"]


def last_user_text(messages: list) -> str:
    """The text of the last user turn (for a turn of tool results, the results' text)."""
    for message in reversed(messages):
        if message["role"] == "user":
            blocks = _blocks(message)
            texts = [block["text"] for block in blocks if block["type"] == "text"] or \
                [text for block in blocks if block["type"] == "tool_result" for text in _result_texts(block)]
            return " ".join(texts)
    return ""


def _prompt_texts(body: dict) -> Iterator[str]:
    """Everything the model would read: system, message text, tool traffic and tool definitions."""
    system = body.get("system") or []
    yield from [system] if isinstance(system, str) else (block["text"] for block in system)
    for message in body["messages"]:
        for block in _blocks(message):
            kind = block["type"]
            if kind in ("text", "thinking"):
                yield block[kind]
            elif kind == "tool_use":
                yield json.dumps(block["input"])
            elif kind == "tool_result":
                yield from _result_texts(block)
    for tool in body.get("tools") or []:
        yield f"{tool['name']} {tool.get('description', '')} {json.dumps(tool['input_schema'])}"


def _block_text(block: dict) -> str:
    if block["type"] == "tool_use":
        return json.dumps(block["input"])
    return block.get("text") or block.get("thinking") or ""


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class AnthropicMock(MockServer):
    """Strict ``POST /v1/messages`` mock; see the module docstring for what it enforces."""

    def __init__(self, api_key: str = "test-anthropic-key", port: int = 0, reply_text: str | None = None):
        self.api_key = api_key
        self.reply_text = reply_text
        super().__init__(port)

    # --- helpers for tests ----------------------------------------------------------------------

    @staticmethod
    def message(*content: str | dict, model: str = DEFAULT_MODEL, stop_reason: str = "end_turn",
                stop_sequence: str | None = None, input_tokens: int = 10, output_tokens: int | None = None,
                cache_creation_input_tokens: int = 0, cache_read_input_tokens: int = 0,
                message_id: str | None = None) -> dict:
        """A complete Messages API response body. ``content`` items are blocks (see
        ``text_block``/``tool_use_block``/``thinking_block``) or plain strings for text blocks."""
        blocks = [text_block(item) if isinstance(item, str) else item for item in content]
        if output_tokens is None:
            output_tokens = max(1, sum(estimate_tokens(_block_text(block)) for block in blocks)) if blocks else 0
        return {
            "id": message_id or "msg_01" + random_token(22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": cache_creation_input_tokens,
                "cache_read_input_tokens": cache_read_input_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": cache_creation_input_tokens,
                                   "ephemeral_1h_input_tokens": 0},
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }

    # --- MockServer hooks -----------------------------------------------------------------------

    def new_request_id(self) -> str:
        return new_request_id()

    def common_headers(self, request_id: str | None) -> dict[str, str]:
        return {"request-id": request_id}

    def encode_event(self, event: tuple[str, Any]) -> bytes:
        return _sse_frame(*event)

    def validate(self, request: RecordedRequest, request_id: str | None) -> None:
        try:
            if request.method != "POST" or request.path != "/v1/messages":
                raise _Invalid("Not Found", 404, "not_found_error")
            self._check_headers(request.headers)
            _check_body(request)
        except _Invalid as error:
            raise Rejection(error.status, anthropic_error_body(error.error_type, error.message, request_id)) from None

    def _check_headers(self, headers: dict[str, str]) -> None:
        # x-api-key is the documented header; anthropic-python 2.12.0 sends the same key as
        # `Authorization: Bearer`, so the API evidently accepts both.
        key = headers.get("x-api-key") or _bearer_token(headers.get("authorization", ""))
        if not key:
            raise _Invalid("x-api-key header is required", 401, "authentication_error")
        if key != self.api_key:
            raise _Invalid("invalid x-api-key", 401, "authentication_error")
        version = headers.get("anthropic-version")
        if version is None:
            raise _Invalid("anthropic-version: header is required")
        if version not in API_VERSIONS:
            raise _Invalid(f'anthropic-version: "{version}" is not a valid version')
        betas = [beta.strip() for beta in headers.get("anthropic-beta", "").split(",") if beta.strip()]
        unknown = [beta for beta in betas if beta not in KNOWN_BETAS]
        if unknown:
            raise _Invalid(f"Unexpected value(s) `{', '.join(unknown)}` for the `anthropic-beta` header. Please "
                           "consult our documentation at docs.anthropic.com or try again without the header.")

    def compose_reply(self, body: dict) -> str:
        """The assistant's answer before stop sequences and max_tokens apply."""
        if self.reply_text is not None:
            return self.reply_text
        return f"Echo: {last_user_text(body['messages'])}".rstrip()

    def default_response(self, request: RecordedRequest, request_id: str | None) -> Response:
        body = request.json
        cut = truncate_reply(self.compose_reply(body), body.get("stop_sequences", ()), body["max_tokens"])
        kind = (body.get("thinking") or {}).get("type")
        thinks = kind in ("enabled", "adaptive") or (model_profile(body["model"]).always_on and kind != "disabled")
        # A thinking model's answer opens with its (signed) thinking.
        thought = [thinking_block(f"Considering: {last_user_text(body['messages'])}".rstrip())] if thinks else []
        message = self.message(*thought, *([cut.text] if cut.text else []), model=body["model"],
                               stop_reason=cut.reason or "end_turn", stop_sequence=cut.stop_sequence,
                               input_tokens=max(1, sum(map(estimate_tokens, _prompt_texts(body)))))
        headers = self.common_headers(request_id)
        if body.get("stream"):
            return Response.stream([self.encode_event(event) for event in message_events(message)], headers)
        return Response.json(200, message, headers)
