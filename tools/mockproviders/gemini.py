"""Strict mock of the Gemini API (Google AI Studio, ``generativelanguage.googleapis.com``), v1beta.

Routes (``{model}`` is a model id such as ``gemini-2.5-flash``; the proto binding is
``/v1beta/{model=models/*}:method``):

* ``POST /v1beta/models/{model}:generateContent``
* ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` -- SSE, one
  ``data: <GenerateContentResponse>\\r\\n\\r\\n`` frame per chunk, no ``[DONE]``. Without ``alt=sse`` the
  API streams one pretty-printed JSON array (``[{...}\\n,\\r\\n{...}\\n]``), which the mock also does;
  errors on that route are then wrapped in an array too (``[{"error": ...}]``), as the API does.
* ``POST /v1beta/models/{model}:embedContent`` and ``:batchEmbedContents`` (embedding models only).

Authentication: ``x-goog-api-key`` (or ``?key=``). None at all -> 403 PERMISSION_DENIED "Method
doesn't allow unregistered callers ..."; an ``Authorization: Bearer`` without a key -> 401
UNAUTHENTICATED (the API wants an OAuth token there); a wrong key -> 400 INVALID_ARGUMENT with an
``ErrorInfo`` whose reason is ``API_KEY_INVALID``.

Validation runs in the API's stages, each reported the way that stage words it:

1. Proto3-JSON parsing, every violation at once, joined by newlines, each also a
   ``google.rpc.BadRequest`` field violation: unknown names (``Invalid JSON payload received.
   Unknown name "x" at 'generation_config': Cannot find field.``), values of the wrong type
   (``Invalid value at 'generation_config.temperature' (TYPE_FLOAT), "hot"``), unknown enum values,
   lists where a single value belongs (``... Proto field is not repeating, cannot start list.``),
   undecodable base64, two members of ``Part.data`` at once. Field names may be camelCase (the
   canonical JSON names) or snake_case (the proto names), as the API accepts both; paths are
   always snake_case with ``[i]`` indexes and ``properties[i].value`` for map entries.
2. Required fields, as ``* GenerateContentRequest.<path>: <message>\\n`` lines (``contents is not
   specified``, ``contents.parts must not be empty.``, ``required oneof field 'data' must have one
   initialized field``, ``Name cannot be empty.``, ``should be non-empty for OBJECT type``).
3. Request rules with their own messages: roles, function names, tool config, generation config
   (thinking per model: budgets in each Gemini 2.5 model's range, 0 only where thinking can be
   turned off, levels only on Gemini 3 and only those the model has, never both, no thinking config
   for models that cannot think), then the function-calling turn structure (a call turn follows a
   user turn, a response turn follows the call turn with exactly as many ``functionResponse`` parts,
   calls and responses never share a turn; Gemini 3 models also want a ``thoughtSignature`` on the first call of each step of
   the current turn and response names matching the calls).

Errors use Google's status envelope ``{"error": {"code", "message", "status", "details"?}}``, JSON
pretty-printed with two-space indents like the API's. Messages are the API's own as captured in
public bug reports; where none was found the check says "the wording is the mock's" (the numeric
GenerationConfig ranges, schema/MIME combinations, ``allowedFunctionNames`` without ``ANY``,
non-text system instructions, the embeddings' required fields, unknown routes; the API's "The
thinking budget (N) is invalid." is reused for a budget below a model's minimum).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from typing import Any, Iterator

from .base import (BASE62, MockServer, RecordedRequest, Rejection, Response, estimate_tokens, random_token,
                   truncate_reply, word_pieces)

DEFAULT_MODEL = "gemini-2.5-flash"
DEFAULT_EMBEDDING_SIZE = 768
WORDS_PER_CHUNK = 3  # the API streams a few words per event
TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1beta."

MISSING_KEY_MESSAGE = ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                       "API Key or other form of API consumer identity to call this API.")
INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
BEARER_MESSAGE = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
                  "valid authentication credential. See https://developers.google.com/identity/sign-in/web/"
                  "devconsole-project.")
FUNCTION_NAME_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}"
FUNCTION_NAME_MESSAGE = ("Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or "
                         "contain underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.")
RESPONSE_MIME_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
CALL_TURN_POSITION = ("Please ensure that function call turn comes immediately after a user turn or after a function "
                      "response turn.")
CALL_TURN_MIXED = ("Please ensure that function call turn contains at least one function_call part which can not be "
                   "mixed with function_response parts.")
RESPONSE_TURN_POSITION = "Please ensure that function response turn comes immediately after a function call turn."
RESPONSE_COUNT = ("Please ensure that the number of function response parts is equal to the number of function call "
                  "parts of the function call turn.")
GENERIC_INVALID = "Request contains an invalid argument."

HTTP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


# ----------------------------------------------------------------------------------------------
# Body builders for tests
# ----------------------------------------------------------------------------------------------


def gemini_error_body(code: int, status: str, message: str, details: list | None = None) -> dict:
    """Google's error envelope, e.g. ``gemini_error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted")``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def function_call_part(name: str, args: dict, id: str | None = None, thought_signature: str | None = None) -> dict:
    """A ``functionCall`` part as the model returns it (``id`` and ``thoughtSignature`` optional)."""
    call: dict[str, Any] = {"name": name, "args": args}
    if id is not None:
        call["id"] = id
    part: dict[str, Any] = {"functionCall": call}
    if thought_signature is not None:
        part["thoughtSignature"] = thought_signature
    return part


def new_response_id() -> str:
    return random_token(23, BASE62 + "-_")


def usage_metadata(prompt_tokens: int, candidates_tokens: int | None, thoughts_tokens: int = 0) -> dict:
    """``usageMetadata`` as the API reports it (``candidatesTokenCount`` absent while nothing was generated)."""
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if candidates_tokens is not None:
        usage["candidatesTokenCount"] = candidates_tokens
    usage["totalTokenCount"] = prompt_tokens + (candidates_tokens or 0) + thoughts_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if thoughts_tokens:
        usage["thoughtsTokenCount"] = thoughts_tokens
    return usage


def _part_tokens(part: dict) -> int:
    if "text" in part:
        return estimate_tokens(part["text"])
    if "functionCall" in part:
        return estimate_tokens(json.dumps(part["functionCall"].get("args") or {}))
    return 1


def sse_frame(response: Any) -> bytes:
    """One SSE event as the API frames it: ``data: `` + JSON with ``": "`` separators, CRLF CRLF."""
    if isinstance(response, bytes):
        return response
    return b"data: " + json.dumps(response, separators=(",", ": ")).encode() + b"\r\n\r\n"


def stream_events(responses: list[dict]) -> list[bytes]:
    """SSE frames for ``StreamEvents``, one per ``GenerateContentResponse`` dict."""
    return [sse_frame(response) for response in responses]


def response_chunks(response: dict, words_per_chunk: int = WORDS_PER_CHUNK) -> list[dict]:
    """Cut a complete ``GenerateContentResponse`` into the chunks the API would stream: text in
    pieces of a few words, every other part whole in its own chunk, ``finishReason`` on the last
    chunk, cumulative ``usageMetadata`` (without ``candidatesTokenCount`` until something was
    generated) plus ``modelVersion`` and ``responseId`` on every chunk."""
    envelope = {key: response[key] for key in ("modelVersion", "responseId") if key in response}
    usage = response.get("usageMetadata") or usage_metadata(0, 0)
    prompt_tokens, thoughts = usage.get("promptTokenCount", 0), usage.get("thoughtsTokenCount", 0)
    candidates = response.get("candidates") or []
    if not candidates:  # a blocked prompt: one chunk carrying promptFeedback
        return [dict(response)]
    pieces: list[list[dict]] = []
    for part in candidates[0].get("content", {}).get("parts", []):
        if "text" in part and not part.get("thought"):
            words = word_pieces(part["text"])
            for start in range(0, len(words), words_per_chunk):
                extra = {key: value for key, value in part.items() if key != "text"}
                pieces.append([{"text": "".join(words[start:start + words_per_chunk]), **extra}])
        else:
            pieces.append([part])
    if not pieces:
        pieces.append([{"text": ""}])
    chunks, produced = [], 0
    for number, parts in enumerate(pieces):
        last = number == len(pieces) - 1
        produced += sum(_part_tokens(part) for part in parts if not part.get("thought")) * len(candidates)
        streamed = []
        for position, original in enumerate(candidates):  # every candidate streams candidate 0's parts
            candidate: dict[str, Any] = {"content": {"parts": [dict(part) for part in parts], "role": "model"}}
            if last and original.get("finishReason"):
                candidate["finishReason"] = original["finishReason"]
            candidate["index"] = original.get("index", position)
            streamed.append(candidate)
        chunk_usage = usage if last else usage_metadata(prompt_tokens, produced or None, thoughts)
        chunks.append({"candidates": streamed, "usageMetadata": chunk_usage, **envelope})
    return chunks


def json_array_frames(responses: list[dict]) -> list[bytes]:
    """The body of ``streamGenerateContent`` without ``alt=sse``: one JSON array, element by element."""
    frames = []
    for index, response in enumerate(responses):
        frames.append((b"[" if index == 0 else b",\r\n") + json.dumps(response, indent=2).encode() + b"\n")
    frames.append(b"]" if responses else b"[]")
    return frames


# ----------------------------------------------------------------------------------------------
# The request schema (proto3 JSON of google.ai.generativelanguage.v1beta)
# ----------------------------------------------------------------------------------------------

# Field kinds: a scalar ("string", "bool", "int32", "int64", "float", "double", "bytes"), "struct"
# (google.protobuf.Struct: a JSON object), "value" (any JSON), "enum:<Enum>", a message name,
# "map:<kind>"; a leading "[]" marks a repeated field.
MESSAGES: dict[str, dict[str, str]] = {
    "GenerateContentRequest": {
        "model": "string", "contents": "[]Content", "system_instruction": "Content", "tools": "[]Tool",
        "tool_config": "ToolConfig", "safety_settings": "[]SafetySetting", "generation_config": "GenerationConfig",
        "cached_content": "string", "labels": "map:string", "service_tier": "enum:ServiceTier", "store": "bool",
    },
    "Content": {"parts": "[]Part", "role": "string"},
    "Part": {
        "text": "string", "inline_data": "Blob", "function_call": "FunctionCall",
        "function_response": "FunctionResponse", "file_data": "FileData", "executable_code": "ExecutableCode",
        "code_execution_result": "CodeExecutionResult", "tool_call": "struct", "tool_response": "struct",
        "thought": "bool", "thought_signature": "bytes", "video_metadata": "VideoMetadata",
        "media_resolution": "PartMediaResolution", "part_metadata": "struct",
    },
    "Blob": {"mime_type": "string", "data": "bytes"},
    "FileData": {"mime_type": "string", "file_uri": "string"},
    "FunctionCall": {"id": "string", "name": "string", "args": "struct"},
    "FunctionResponse": {"id": "string", "name": "string", "response": "struct", "will_continue": "bool",
                         "scheduling": "enum:Scheduling", "parts": "[]FunctionResponsePart"},
    "FunctionResponsePart": {"inline_data": "Blob", "file_data": "FileData"},
    "ExecutableCode": {"language": "enum:Language", "code": "string"},
    "CodeExecutionResult": {"outcome": "enum:Outcome", "output": "string"},
    "VideoMetadata": {"start_offset": "string", "end_offset": "string", "fps": "double"},
    "PartMediaResolution": {"level": "enum:MediaResolutionLevel", "num_tokens": "int32"},
    "Tool": {
        "function_declarations": "[]FunctionDeclaration", "google_search_retrieval": "struct",
        "code_execution": "struct", "google_search": "struct", "url_context": "struct", "file_search": "struct",
        "google_maps": "struct", "computer_use": "struct",
    },
    "FunctionDeclaration": {
        "name": "string", "description": "string", "parameters": "Schema", "parameters_json_schema": "value",
        "response": "Schema", "response_json_schema": "value", "behavior": "enum:Behavior",
    },
    "Schema": {
        "type": "enum:Type", "format": "string", "title": "string", "description": "string", "nullable": "bool",
        "enum": "[]string", "items": "Schema", "max_items": "int64", "min_items": "int64",
        "properties": "map:Schema", "required": "[]string", "min_properties": "int64", "max_properties": "int64",
        "minimum": "double", "maximum": "double", "min_length": "int64", "max_length": "int64", "pattern": "string",
        "example": "value", "any_of": "[]Schema", "property_ordering": "[]string", "default": "value",
    },
    "ToolConfig": {"function_calling_config": "FunctionCallingConfig", "retrieval_config": "struct",
                   "include_server_side_tool_invocations": "bool"},
    "FunctionCallingConfig": {"mode": "enum:Mode", "allowed_function_names": "[]string"},
    "SafetySetting": {"category": "enum:HarmCategory", "threshold": "enum:HarmBlockThreshold"},
    "GenerationConfig": {
        "candidate_count": "int32", "stop_sequences": "[]string", "max_output_tokens": "int32",
        "temperature": "float", "top_p": "float", "top_k": "int32", "seed": "int32",
        "response_mime_type": "string", "response_schema": "Schema", "response_json_schema": "value",
        "presence_penalty": "float", "frequency_penalty": "float", "response_logprobs": "bool", "logprobs": "int32",
        "enable_enhanced_civic_answers": "bool", "response_modalities": "[]enum:Modality",
        "speech_config": "struct", "thinking_config": "ThinkingConfig", "image_config": "struct",
        "media_resolution": "enum:MediaResolution",
    },
    "ThinkingConfig": {"include_thoughts": "bool", "thinking_budget": "int32", "thinking_level": "enum:ThinkingLevel"},
    "EmbedContentRequest": {"model": "string", "content": "Content", "task_type": "enum:TaskType",
                            "title": "string", "output_dimensionality": "int32"},
    "BatchEmbedContentsRequest": {"model": "string", "requests": "[]EmbedContentRequest"},
}
# The members of each message's oneof (only Part has one a client sends).
ONEOFS = {"Part": ("data", ("text", "inline_data", "function_call", "function_response", "file_data",
                            "executable_code", "code_execution_result"))}
# JSON names that are not the lowerCamelCase of the proto name.
JSON_ALIASES = {"GenerationConfig": {"_responseJsonSchema": "response_json_schema"}}

# Enum name -> (fully qualified type in error messages, values). Values are the proto's, as in
# google-genai 3.4.0's types.py; "Type" is matched case-insensitively (the API accepts
# "object" as well as "OBJECT" in schemas).
ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Type": ("Type", ("TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")),
    "Mode": ("FunctionCallingConfig.Mode", ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")),
    "HarmCategory": ("HarmCategory", (
        "HARM_CATEGORY_UNSPECIFIED", "HARM_CATEGORY_DEROGATORY", "HARM_CATEGORY_TOXICITY", "HARM_CATEGORY_VIOLENCE",
        "HARM_CATEGORY_SEXUAL", "HARM_CATEGORY_MEDICAL", "HARM_CATEGORY_DANGEROUS", "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_CIVIC_INTEGRITY", "HARM_CATEGORY_JAILBREAK", "HARM_CATEGORY_IMAGE_HATE",
        "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT", "HARM_CATEGORY_IMAGE_HARASSMENT",
        "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT")),
    "HarmBlockThreshold": ("SafetySetting.HarmBlockThreshold", (
        "HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
        "BLOCK_NONE", "OFF")),
    "Modality": ("GenerationConfig.Modality", ("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO")),
    "MediaResolution": ("GenerationConfig.MediaResolution", (
        "MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH")),
    "MediaResolutionLevel": ("Part.MediaResolution.Level", (
        "MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH",
        "MEDIA_RESOLUTION_ULTRA_HIGH")),
    "ThinkingLevel": ("ThinkingConfig.ThinkingLevel", (
        "THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH")),
    "ServiceTier": ("ServiceTier", ("UNSPECIFIED", "FLEX", "STANDARD", "PRIORITY")),
    "Scheduling": ("FunctionResponse.Scheduling", ("SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT")),
    "Behavior": ("FunctionDeclaration.Behavior", ("UNSPECIFIED", "BLOCKING", "NON_BLOCKING")),
    "Language": ("ExecutableCode.Language", ("LANGUAGE_UNSPECIFIED", "PYTHON")),
    "Outcome": ("CodeExecutionResult.Outcome", (
        "OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED")),
    "TaskType": ("TaskType", (
        "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
        "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")),
}
CASE_INSENSITIVE_ENUMS = frozenset({"Type"})

_SCALAR_NAMES = {"string": "TYPE_STRING", "bool": "TYPE_BOOL", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                 "float": "TYPE_FLOAT", "double": "TYPE_DOUBLE", "bytes": "TYPE_BYTES"}
_INT_RANGES = {"int32": 2**31, "int64": 2**63}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _shown(value: Any) -> str:
    """A rejected value as the API quotes it in ``Invalid value at ... , <value>``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Parser:
    """Proto3-JSON reader that collects every violation, as the API reports them all at once."""

    def __init__(self) -> None:
        self.violations: list[tuple[str | None, str]] = []

    def fail(self, path: str | None, description: str) -> None:
        self.violations.append((path or None, description))

    def message(self, name: str, value: Any, path: str, key: str | None = None) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"Invalid value at '{path}' ({TYPE_PREFIX}{name}), {_shown(value)}")
            return None
        fields = MESSAGES[name]
        lookup = {**{_camel(field): field for field in fields}, **{field: field for field in fields},
                  **JSON_ALIASES.get(name, {})}
        result: dict[str, Any] = {}
        oneof_name, oneof_members = ONEOFS.get(name, ("", ()))
        oneof_set: str | None = None
        for json_key, item in value.items():
            field = lookup.get(json_key)
            if field is None:
                where = f" at '{path}'" if path else ""
                self.fail(path, f"Invalid JSON payload received. Unknown name \"{json_key}\"{where}: Cannot find field.")
                continue
            if item is None:  # proto3 JSON: null means "not set"
                continue
            if field in oneof_members:
                if oneof_set is not None:
                    self.fail(path, f"Invalid value at '{path}' (oneof), oneof field '{oneof_name}' is already set. "
                                    f"Cannot set '{json_key}'")
                    continue
                oneof_set = field
            field_path = f"{path}.{field}" if path else field
            parsed = self.field(fields[field], item, field_path, json_key, path)
            if parsed is not _SKIP:
                result[field] = parsed
        return result

    def field(self, kind: str, value: Any, path: str, json_key: str, parent: str) -> Any:
        if kind.startswith("[]"):
            items = value if isinstance(value, list) else [value]  # the API takes a lone value as a 1-list
            parsed = [self.single(kind[2:], item, f"{path}[{index}]", json_key, parent, nested=True)
                      for index, item in enumerate(items)]
            return [item for item in parsed if item is not _SKIP]
        if isinstance(value, list) and kind != "value":
            where = f" at '{parent}'" if parent else ""
            self.fail(parent, f"Invalid JSON payload received. Unknown name \"{json_key}\"{where}: Proto field is not "
                              "repeating, cannot start list.")
            return _SKIP
        return self.single(kind, value, path, json_key, parent)

    def single(self, kind: str, value: Any, path: str, json_key: str, parent: str, nested: bool = False) -> Any:
        if kind.startswith("map:"):
            if not isinstance(value, dict):
                self.fail(path, f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Struct), {_shown(value)}")
                return _SKIP
            entries = {}
            for index, (key, item) in enumerate(value.items()):
                parsed = self.field(kind[4:], item, f"{path}[{index}].value", key, f"{path}[{index}]")
                if parsed is not _SKIP:
                    entries[key] = parsed
            return entries
        if kind in MESSAGES:
            parsed = self.message(kind, value, path)
            return _SKIP if parsed is None else parsed
        if kind.startswith("enum:"):
            return self.enum(kind[5:], value, path)
        if kind == "struct":
            if not isinstance(value, dict):
                self.fail(path, f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Struct), {_shown(value)}")
                return _SKIP
            return value
        if kind == "value":
            return value
        return self.scalar(kind, value, path)

    def enum(self, name: str, value: Any, path: str) -> Any:
        full_name, values = ENUMS[name]
        if isinstance(value, str):
            candidate = value.upper() if name in CASE_INSENSITIVE_ENUMS else value
            if candidate in values:
                return candidate
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values):
            return values[value]
        self.fail(path, f"Invalid value at '{path}' ({TYPE_PREFIX}{full_name}), {_shown(value)}")
        return _SKIP

    def scalar(self, kind: str, value: Any, path: str) -> Any:
        invalid = f"Invalid value at '{path}' ({_SCALAR_NAMES[kind]}), {_shown(value)}"
        if kind == "string":
            if isinstance(value, str):
                return value
        elif kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind in _INT_RANGES:
            number = _as_integer(value)
            if number is not None and -_INT_RANGES[kind] <= number < _INT_RANGES[kind]:
                return number
        elif kind in ("float", "double"):
            number = _as_float(value)
            if number is not None:
                return number
        elif kind == "bytes":
            if isinstance(value, str):
                if _decode_base64(value) is not None:
                    return value
                invalid = f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for {_shown(value)}"
        self.fail(path, invalid)
        return _SKIP


_SKIP = object()


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _decode_base64(text: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional, as Google's JSON parser takes bytes."""
    if not re.fullmatch(r"[A-Za-z0-9+/_-]*={0,2}", text):
        return None
    stripped = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(stripped) % 4 == 1:
        return None
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# Validation errors
# ----------------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400, details: list | None = None):
        super().__init__(message)
        self.message, self.status, self.details = message, status, details


def _parse_body(raw: bytes, message: str) -> dict:
    """Stage 1: the body as proto3 JSON of ``message``; every violation in one 400."""
    if not raw.strip():
        value: Any = {}
    else:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Invalid("Invalid JSON payload received. Unexpected token.",
                           details=[_bad_request([(None, "Invalid JSON payload received. Unexpected token.")])]) from None
    if not isinstance(value, dict):
        text = 'Invalid JSON payload received. Unknown name "": Root element must be a message.'
        raise _Invalid(text, details=[_bad_request([(None, text)])])
    parser = _Parser()
    parsed = parser.message(message, value, "")
    if parser.violations:
        raise _Invalid("\n".join(description for _, description in parser.violations),
                       details=[_bad_request(parser.violations)])
    return parsed or {}


def _bad_request(violations: list[tuple[str | None, str]]) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{**({"field": field} if field else {}), "description": description}
                                for field, description in violations]}


class _Lines:
    """Stage 2: ``* <Request>.<path>: <message>`` lines, all reported together."""

    def __init__(self, request: str):
        self.request, self.lines = request, []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"* {self.request}.{path}: {message}\n")

    def raise_any(self) -> None:
        if self.lines:
            raise _Invalid("".join(self.lines))


# ----------------------------------------------------------------------------------------------
# GenerateContentRequest rules
# ----------------------------------------------------------------------------------------------


def _check_content_required(content: dict, path: str, lines: _Lines) -> None:
    if not content.get("parts"):
        lines.add(f"{path}.parts", "contents.parts must not be empty.")
        return
    for index, part in enumerate(content["parts"]):
        part_path = f"{path}.parts[{index}]"
        if not any(member in part for member in ONEOFS["Part"][1]):
            lines.add(f"{part_path}.data", "required oneof field 'data' must have one initialized field")
        for kind in ("function_call", "function_response"):
            if kind in part and not part[kind].get("name"):
                lines.add(f"{part_path}.{kind}.name", "Name cannot be empty.")


def _check_schema_required(schema: dict, path: str, lines: _Lines) -> None:
    """``should be non-empty for OBJECT type`` (paths name map keys: ``properties[city]``)."""
    if schema.get("type") == "OBJECT" and not schema.get("properties") and "any_of" not in schema:
        lines.add(f"{path}.properties", "should be non-empty for OBJECT type")
    for key, child in (schema.get("properties") or {}).items():
        _check_schema_required(child, f"{path}.properties[{key}]", lines)
    if "items" in schema:
        _check_schema_required(schema["items"], f"{path}.items", lines)
    for index, child in enumerate(schema.get("any_of") or ()):
        _check_schema_required(child, f"{path}.any_of[{index}]", lines)


def _check_required(body: dict) -> None:
    lines = _Lines("GenerateContentRequest")
    if not body.get("contents"):
        lines.add("contents", "contents is not specified")
    for index, content in enumerate(body.get("contents") or ()):
        _check_content_required(content, f"contents[{index}]", lines)
    if "system_instruction" in body:
        _check_content_required(body["system_instruction"], "system_instruction", lines)
        for index, part in enumerate(body["system_instruction"].get("parts") or ()):
            if any(member in part for member in ONEOFS["Part"][1] if member != "text"):
                # The proto documents system instructions as "text only"; the wording is the mock's.
                lines.add(f"system_instruction.parts[{index}]", "system_instruction supports text parts only.")
    for t_index, tool in enumerate(body.get("tools") or ()):
        for d_index, declaration in enumerate(tool.get("function_declarations") or ()):
            if "parameters" in declaration:
                _check_schema_required(declaration["parameters"],
                                       f"tools[{t_index}].function_declarations[{d_index}].parameters", lines)
    lines.raise_any()


def _check_roles(body: dict) -> None:
    for content in body["contents"]:
        if content.get("role", "") not in ("", "user", "model"):
            raise _Invalid("Please use a valid role: user, model.")


def _declarations(body: dict) -> list[dict]:
    return [declaration for tool in body.get("tools") or () for declaration in tool.get("function_declarations") or ()]


def _check_tools(body: dict) -> None:
    for t_index, tool in enumerate(body.get("tools") or ()):
        for d_index, declaration in enumerate(tool.get("function_declarations") or ()):
            if not re.fullmatch(FUNCTION_NAME_PATTERN, declaration.get("name", "")):
                raise _Invalid("The GenerateContentRequest proto is invalid:\n  * "
                               f"tools[{t_index}].function_declarations[{d_index}].name: [FIELD_INVALID] "
                               f"{FUNCTION_NAME_MESSAGE}")
            if "parameters" in declaration and "parameters_json_schema" in declaration:
                # Wording is the mock's: the API documents the two as alternatives.
                raise _Invalid(f"* GenerateContentRequest.tools[{t_index}].function_declarations[{d_index}]: "
                               "parameters and parameters_json_schema cannot both be set.\n")
    config = (body.get("tool_config") or {}).get("function_calling_config")
    if config is not None and not _declarations(body) and \
            not (body.get("tool_config") or {}).get("include_server_side_tool_invocations"):
        raise _Invalid("Function calling config is set without function_declarations.")
    if config and config.get("allowed_function_names") and config.get("mode") != "ANY":
        # Documented rule ("should only be set when the Mode is ANY"); the wording is the mock's.
        raise _Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                       "allowed_function_names may only be set when mode is ANY.\n")


def _check_generation_config(body: dict, model: str) -> None:
    """Ranges and combinations from the GenerationConfig reference. The API's wording for the
    numeric ranges is not documented; these lines follow its ``* Request.path: message`` form."""
    config = body.get("generation_config") or {}
    lines = _Lines("GenerateContentRequest")
    at = "generation_config."
    temperature = config.get("temperature")
    if temperature is not None and not (0 <= temperature <= 2):
        lines.add(at + "temperature", "temperature must be in the range [0.0, 2.0].")
    top_p = config.get("top_p")
    if top_p is not None and not (0 <= top_p <= 1):
        lines.add(at + "top_p", "top_p must be in the range [0.0, 1.0].")
    for name in ("candidate_count", "max_output_tokens"):
        if config.get(name) is not None and config[name] < 1:
            lines.add(at + name, f"{name} must be positive.")
    if len(config.get("stop_sequences") or ()) > 5:
        lines.add(at + "stop_sequences", "stop_sequences must have at most 5 elements.")
    logprobs = config.get("logprobs")
    if logprobs is not None and not (0 <= logprobs <= 20):
        lines.add(at + "logprobs", "logprobs must be in the range [0, 20].")
    mime = config.get("response_mime_type", "")
    if mime and mime not in RESPONSE_MIME_TYPES:
        lines.add(at + "response_mime_type", "allowed mimetypes are `text/plain`, `application/json`, "
                                              "`application/xml`, `application/yaml` and `text/x.enum`.")
    if "response_schema" in config and "response_json_schema" in config:
        lines.add(at + "response_schema", "response_schema and response_json_schema cannot both be set.")
    elif "response_schema" in config and mime not in ("application/json", "text/x.enum"):
        lines.add(at + "response_mime_type", "response_mime_type must be application/json or text/x.enum when "
                                              "response_schema is set.")
    elif "response_json_schema" in config and mime != "application/json":
        lines.add(at + "response_mime_type", "response_mime_type must be application/json when "
                                              "response_json_schema is set.")
    lines.raise_any()
    if mime == "application/json" and _declarations(body) and not model.startswith("gemini-3"):
        raise _Invalid("Tool use with a response mime type: 'application/json' is unsupported")
    _check_thinking(config.get("thinking_config"), model)


# Thinking per model (ai.google.dev/gemini-api/docs/thinking), longest prefix first, as in the
# gateway's table (src/providers/models.rs): budgets as (smallest, largest, 0 turns thinking off)
# for Gemini 2.5; the levels each Gemini 3 model takes; the models that cannot think, with the
# API's message for a thinking_config sent to them.
THINKING_BUDGETS = (("gemini-2.5-flash-lite", (512, 24576, True)), ("gemini-2.5-flash", (1, 24576, True)),
                    ("gemini-2.5-pro", (128, 32768, False)))
THINKING_LEVELS = (("gemini-3-pro", ("LOW", "HIGH")), ("gemini-3.1-pro", ("LOW", "MEDIUM", "HIGH")),
                   ("gemini-3-flash", ("MINIMAL", "LOW", "MEDIUM", "HIGH")),
                   ("gemini-3.1-flash-lite", ("MINIMAL", "LOW", "MEDIUM", "HIGH")))
NO_THINKING = (("gemini-2.5-flash-image", "Thinking is not enabled for models/{model}"),
               *((prefix, "thinking_config is not supported.") for prefix in ("gemini-2.0", "gemini-1.5", "gemini-1.0",
                                                                               "gemini-pro-vision")))
BOTH_THINKING_FORMS = "You can only set only one of thinking budget and thinking level."


def _by_prefix(table: tuple, model: str) -> Any:
    return next((value for prefix, value in table if model.startswith(prefix)), None)


def _check_thinking(config: dict | None, model: str) -> None:
    """``thinkingBudget`` and ``thinkingLevel`` as each model takes them, each refusal in the API's
    words: "You can only set only one of thinking budget and thinking level." (sterlp/eclipse-peon-ai#115),
    "Thinking level is not supported for this model." on Gemini 2.5 (RooCodeInc/Roo-Code#10700),
    "Thinking level MINIMAL is not supported for this model. Please retry with other thinking level."
    (earendil-works/pi#9455), "Budget 0 is invalid. This model only works in thinking mode." on 2.5 Pro
    (snailyp/gemini-balance#206), "The thinking budget (52428) is invalid." (RooCodeInc/Roo-Code#4399, 2.5 Pro
    above its maximum; the mock says the same below a minimum, where no report was found), "thinking_config is
    not supported." on Gemini 2.0 (immersive-translate/immersive-translate#2976) and "Thinking is not enabled for
    models/..." on an image model (lobehub/lobehub#7985). Which refusal wins when several apply is the mock's
    choice. Models no table names (other Gemini 3.x models, aliases, tuned models) take any one form: the
    gateway's table is more cautious with them than the mock can know Gemini to be."""
    if not config:
        return
    refusal = _by_prefix(NO_THINKING, model)
    if refusal is not None:
        raise _Invalid(refusal.format(model=model))
    budget, level = config.get("thinking_budget"), config.get("thinking_level")
    if level == "THINKING_LEVEL_UNSPECIFIED":
        level = None
    if budget is not None and level is not None:
        raise _Invalid(BOTH_THINKING_FORMS)
    budgets, levels = _by_prefix(THINKING_BUDGETS, model), _by_prefix(THINKING_LEVELS, model)
    if level is not None:
        if budgets is not None:
            raise _Invalid("Thinking level is not supported for this model.")
        if levels is not None and level not in levels:
            raise _Invalid(f"Thinking level {level} is not supported for this model. Please retry with other "
                           "thinking level.")
    if budget is not None and budgets is not None and budget != -1:
        smallest, largest, can_disable = budgets
        if budget == 0 and not can_disable:
            raise _Invalid("Budget 0 is invalid. This model only works in thinking mode.")
        if budget != 0 and not smallest <= budget <= largest:
            raise _Invalid(f"The thinking budget ({budget}) is invalid.")


def _kinds(content: dict) -> tuple[int, int]:
    parts = content["parts"]
    return sum("function_call" in part for part in parts), sum("function_response" in part for part in parts)


def _check_turns(body: dict, model: str) -> None:
    """The function-calling conversation rules, each with the API's own message."""
    contents = body["contents"]
    for index, content in enumerate(contents):
        calls, responses = _kinds(content)
        if calls and responses:
            raise _Invalid(CALL_TURN_MIXED)
        previous = contents[index - 1] if index else None
        if calls and (previous is None or previous.get("role") == "model"):
            raise _Invalid(CALL_TURN_POSITION)
        if responses:
            if previous is None or not _kinds(previous)[0]:
                raise _Invalid(RESPONSE_TURN_POSITION)
        if calls and index + 1 < len(contents):
            following = contents[index + 1]
            if following.get("role") != "model" and _kinds(following)[1] != calls:
                raise _Invalid(RESPONSE_COUNT)
            if model.startswith("gemini-3") and _kinds(following)[1]:
                made = Counter(part["function_call"]["name"] for part in content["parts"] if "function_call" in part)
                answered = Counter(part["function_response"]["name"] for part in following["parts"]
                                   if "function_response" in part)
                if made != answered:  # Gemini 3 checks the names too, with the generic message
                    raise _Invalid(GENERIC_INVALID)
    if model.startswith("gemini-3"):
        _check_thought_signatures(contents)


def _check_thought_signatures(contents: list[dict]) -> None:
    """Gemini 3: in the current turn (after the last user message with text) the first
    ``functionCall`` of every model step must carry the ``thoughtSignature`` it was returned with."""
    start = max((index for index, content in enumerate(contents)
                 if content.get("role") != "model" and any("text" in part for part in content["parts"])), default=0)
    for index in range(start, len(contents)):
        content = contents[index]
        first_call = next((part for part in content["parts"] if "function_call" in part), None)
        if first_call is not None and not first_call.get("thought_signature"):
            raise _Invalid("Function call is missing a thought_signature in functionCall parts. This is required for "
                           "tools to work correctly, and missing thought_signature may lead to degraded model "
                           f"performance. Additional data, function call `default_api:"
                           f"{first_call['function_call']['name']}` , position {index + 1}. Please refer to "
                           "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")


def check_generate_body(raw: bytes, model: str) -> dict:
    body = _parse_body(raw, "GenerateContentRequest")
    _check_required(body)
    _check_roles(body)
    _check_tools(body)
    _check_generation_config(body, model)
    _check_turns(body, model)
    return body


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------


def _check_embed_request(request: dict, path: str, lines: _Lines) -> None:
    """Required fields, worded like GenerateContentRequest's (the wording is the mock's)."""
    if "content" not in request:
        lines.add(f"{path}content", "content is not specified")
    else:
        _check_content_required(request["content"], f"{path}content", lines)
    dimensions = request.get("output_dimensionality")
    if dimensions is not None and dimensions < 1:
        lines.add(f"{path}output_dimensionality", "output_dimensionality must be positive.")


def check_embed_body(raw: bytes, model: str) -> dict:
    body = _parse_body(raw, "EmbedContentRequest")
    lines = _Lines("EmbedContentRequest")
    _check_embed_request(body, "", lines)
    lines.raise_any()
    return body


def check_batch_embed_body(raw: bytes, model: str) -> dict:
    body = _parse_body(raw, "BatchEmbedContentsRequest")
    lines = _Lines("BatchEmbedContentsRequest")
    if not body.get("requests"):
        lines.add("requests", "requests is not specified")
    for index, request in enumerate(body.get("requests") or ()):
        _check_embed_request(request, f"requests[{index}].", lines)
    lines.raise_any()
    for index, request in enumerate(body["requests"]):
        if request.get("model") != f"models/{model}":
            # The proto requires each request's model to match the batch's; wording is the mock's.
            raise _Invalid(f"* BatchEmbedContentsRequest.requests[{index}].model: the model in each request must "
                           f"match the batch model. Expected models/{model}, got {request.get('model', '')!r}.\n")
    return body


def embedding_values(text: str, size: int) -> list[float]:
    """A deterministic unit vector for ``text`` (float32-exact, like the OpenAI mock's)."""
    from .openai import embedding_vector
    return embedding_vector(text, size)


def _content_text(content: dict) -> str:
    return " ".join(part["text"] for part in content.get("parts", ()) if "text" in part)


# ----------------------------------------------------------------------------------------------
# Default replies
# ----------------------------------------------------------------------------------------------


def last_user_text(contents: list[dict]) -> str:
    """The text of the last user turn; for a turn of function responses, their JSON."""
    for content in reversed(contents):
        if content.get("role", "user") != "model":
            texts = [part["text"] for part in content["parts"] if "text" in part and not part.get("thought")]
            if texts:
                return " ".join(texts)
            return " ".join(json.dumps(part["function_response"].get("response", {}), separators=(",", ":"))
                            for part in content["parts"] if "function_response" in part)
    return ""


def _prompt_texts(body: dict) -> Iterator[str]:
    if "system_instruction" in body:
        yield _content_text(body["system_instruction"])
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part:
                yield part["text"]
            elif "function_call" in part:
                yield json.dumps(part["function_call"].get("args", {}))
            elif "function_response" in part:
                yield json.dumps(part["function_response"].get("response", {}))
    for declaration in _declarations(body):
        yield json.dumps(declaration)


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------

_ROUTE = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|embedContent"
                    r"|batchEmbedContents)")
_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9.\-]*")
_EMBEDDING_METHODS = ("embedContent", "batchEmbedContents")
_RPC_NAMES = {"generateContent": "GenerateContent", "streamGenerateContent": "StreamGenerateContent",
              "embedContent": "EmbedContent", "batchEmbedContents": "BatchEmbedContents"}


class GeminiMock(MockServer):
    """Strict Gemini API mock; see the module docstring for what it enforces."""

    json_indent = 2  # the API pretty-prints its JSON

    def __init__(self, api_key: str = "test-gemini-key", port: int = 0):
        self.api_key = api_key
        super().__init__(port)

    # --- helpers for tests ----------------------------------------------------------------------

    @staticmethod
    def response(parts: list[str | dict], finish_reason: str | None = "STOP", usage: dict | None = None,
                 model_version: str = DEFAULT_MODEL, response_id: str | None = None, prompt_tokens: int = 10,
                 candidates: int = 1) -> dict:
        """A complete ``GenerateContentResponse``; ``parts`` items are strings (text parts) or
        part dicts (see ``function_call_part``). ``usage`` replaces the computed ``usageMetadata``."""
        built = [{"text": part} if isinstance(part, str) else part for part in parts]
        if usage is None:
            thoughts = sum(_part_tokens(part) for part in built if part.get("thought"))
            produced = sum(_part_tokens(part) for part in built if not part.get("thought")) * candidates
            usage = usage_metadata(prompt_tokens, produced, thoughts)
        candidate_list = []
        for index in range(candidates):
            content: dict[str, Any] = {"parts": [dict(part) for part in built], "role": "model"} if built \
                else {"role": "model"}  # nothing generated: the API leaves parts out
            candidate: dict[str, Any] = {"content": content}
            if finish_reason is not None:
                candidate["finishReason"] = finish_reason
            candidate["index"] = index
            candidate_list.append(candidate)
        return {"candidates": candidate_list, "usageMetadata": usage, "modelVersion": model_version,
                "responseId": response_id or new_response_id()}

    # --- MockServer hooks -----------------------------------------------------------------------

    def common_headers(self, request_id: str | None) -> dict[str, str]:
        return {"vary": "Origin, X-Origin, Referer", "server": "scaffolding on HTTPServer2",
                "x-content-type-options": "nosniff"}

    def encode_event(self, event: Any) -> bytes:
        return sse_frame(event)

    def validate(self, request: RecordedRequest, request_id: str | None) -> None:
        route = self._route(request)
        try:
            if route is None:  # the wording is the mock's
                raise _Invalid(f"Method not found: {request.method} {request.path}", 404)
            model, method = route
            self._check_key(request, method)
            if not _MODEL_ID.fullmatch(model) or (method in _EMBEDDING_METHODS) != ("embedding" in model):
                raise _Invalid(f"models/{model} is not found for API version v1beta, or is not supported for "
                               f"{method}. Call ListModels to see the list of available models and their supported "
                               "methods.", 404)
            if method == "embedContent":
                check_embed_body(request.body, model)
            elif method == "batchEmbedContents":
                check_batch_embed_body(request.body, model)
            else:
                check_generate_body(request.body, model)
        except _Invalid as error:
            body = gemini_error_body(error.status, HTTP_STATUS[error.status], error.message, error.details)
            raise Rejection(error.status, [body] if self._json_array_stream(request, route) else body) from None

    @staticmethod
    def _route(request: RecordedRequest) -> tuple[str, str] | None:
        match = _ROUTE.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return None
        return match["model"], match["method"]

    @staticmethod
    def _json_array_stream(request: RecordedRequest, route: tuple[str, str] | None) -> bool:
        return route is not None and route[1] == "streamGenerateContent" and request.query.get("alt") != ["sse"]

    def _check_key(self, request: RecordedRequest, method: str) -> None:
        key = request.headers.get("x-goog-api-key") or (request.query.get("key") or [None])[0]
        if not key:
            if request.headers.get("authorization", "").lower().startswith("bearer "):
                raise _Invalid(BEARER_MESSAGE, 401, [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "metadata": {"service": "generativelanguage.googleapis.com",
                                 "method": f"google.ai.generativelanguage.v1beta.GenerativeService.{_RPC_NAMES[method]}"}}])
            raise _Invalid(MISSING_KEY_MESSAGE, 403)
        if key != self.api_key:
            raise _Invalid(INVALID_KEY_MESSAGE, 400, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": INVALID_KEY_MESSAGE}])

    def default_response(self, request: RecordedRequest, request_id: str | None) -> Response:
        headers = self.common_headers(request_id)
        model, method = self._route(request)
        if method == "embedContent":
            body = check_embed_body(request.body, model)
            return self._json(self._embedding(body, model), headers)
        if method == "batchEmbedContents":
            body = check_batch_embed_body(request.body, model)
            return self._json({"embeddings": [self._embedding(item, model)["embedding"] for item in body["requests"]]},
                              headers)
        body = check_generate_body(request.body, model)
        reply = self.compose_response(body, model)
        if method == "generateContent":
            return self._json(reply, headers)
        chunks = response_chunks(reply)
        if request.query.get("alt") == ["sse"]:
            return Response.stream(stream_events(chunks), headers)
        response = Response.stream(json_array_frames(chunks), headers)
        response.headers["content-type"] = "application/json; charset=UTF-8"
        return response

    def _json(self, payload: dict, headers: dict[str, str]) -> Response:
        response = Response.json(200, payload, headers, self.json_indent)
        response.headers["content-type"] = "application/json; charset=UTF-8"
        return response

    @staticmethod
    def _embedding(body: dict, model: str) -> dict:
        size = body.get("output_dimensionality") or DEFAULT_EMBEDDING_SIZE
        return {"embedding": {"values": embedding_values(_content_text(body["content"]), size)}}

    def compose_response(self, body: dict, model: str) -> dict:
        """The default ``GenerateContentResponse``: ``Echo: <last user text>`` cut by
        ``stopSequences`` (finishReason STOP) or ``maxOutputTokens`` (MAX_TOKENS), one candidate per
        ``candidateCount``, a thought summary first when ``includeThoughts`` is set."""
        config = body.get("generation_config") or {}
        cut = truncate_reply(f"Echo: {last_user_text(body['contents'])}".rstrip(), config.get("stop_sequences") or (),
                             config.get("max_output_tokens"))
        parts: list[str | dict] = [cut.text] if cut.text else []
        if (config.get("thinking_config") or {}).get("include_thoughts"):
            parts.insert(0, {"text": "**Answering**\n\nI will echo the user's message.", "thought": True})
        prompt_tokens = max(1, sum(map(estimate_tokens, _prompt_texts(body))))
        return self.response(parts, "MAX_TOKENS" if cut.reason == "max_tokens" else "STOP", model_version=model,
                             prompt_tokens=prompt_tokens, candidates=config.get("candidate_count") or 1)


__all__ = ["GeminiMock", "function_call_part", "gemini_error_body", "json_array_frames", "response_chunks", "sse_frame",
           "stream_events", "usage_metadata"]
