"""Strict mock of Azure OpenAI: OpenAI's wire format behind Azure's URLs, auth and additions.

Routes (``{op}`` is ``chat/completions``, ``embeddings`` or ``completions``):

* deployment-scoped: ``POST /openai/deployments/{deployment}/{op}?api-version=YYYY-MM-DD[-preview]``.
  Without ``api-version`` Azure answers 404 ``{"error":{"code":"404","message":"Resource not
  found"}}``; a well-formed version Azure does not serve gets the same 404, a malformed one a 400.
  The deployment picks the model; a body ``model`` is ignored and may be absent.
* v1: ``POST /openai/v1/{op}`` (``api-version`` absent, ``v1`` or ``preview``); the body ``model``
  names the deployment.

Auth is the ``api-key`` header (the v1 routes also take the key as ``Authorization: Bearer``, as
the OpenAI SDK sends it there); a missing or wrong key gets Azure's 401 ``{"error":{"code":"401",
"message":"Access denied due to invalid subscription key or wrong API endpoint. ..."}}``. An unknown
deployment is 404 ``DeploymentNotFound``; an operation the deployment's model cannot do (chat on an
embedding model, ...) is 400 ``OperationNotSupported``. Bodies are then validated by the OpenAI
mock's validators (same messages, same order), and chat bodies by the rules of the deployment's
model (reasoning models refuse ``max_tokens``, sampling, ...: ``openai.check_model_rules``; Azure
documents the same list, learn.microsoft.com azure/foundry/openai/how-to/reasoning#not-supported).

Replies are OpenAI's with Azure's additions: ``model`` is the deployment's model, chat completions
carry ``prompt_filter_results`` and per-choice ``content_filter_results`` (everything "safe"), keys
are sorted as Azure serializes them, and ``service_tier`` is absent. Streams start with Azure's
prompt-filter chunk (``"choices": []``, empty ``id``/``model``/``object``, ``created`` 0), then the
OpenAI chunk sequence with ``content_filter_results`` on every choice (``{}`` on the role, tool-call
and finish chunks, the category results on content chunks), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .base import MockServer, RecordedRequest, Rejection, Response, estimate_tokens, truncate_reply
from .openai import (BODY_CHECKS, OpenAIMock, _Invalid, _prompt_texts, check_model_rules, completion_chunks,
                     default_text_completion, embeddings_response, last_user_text, openai_error_body,
                     text_completion_chunks)

DEFAULT_DEPLOYMENTS = {"gpt4o-deploy": "gpt-4o-2024-11-20"}
# Data-plane inference versions from the Azure OpenAI API version lifecycle page; Azure answers
# 404 "Resource not found" to a dated version it does not serve.
API_VERSIONS = frozenset({
    "2022-12-01", "2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21",
    "2023-03-15-preview", "2023-06-01-preview", "2023-07-01-preview", "2023-08-01-preview", "2023-09-01-preview",
    "2023-10-01-preview", "2023-12-01-preview", "2024-02-15-preview", "2024-03-01-preview", "2024-04-01-preview",
    "2024-05-01-preview", "2024-07-01-preview", "2024-08-01-preview", "2024-09-01-preview", "2024-10-01-preview",
    "2024-12-01-preview", "2025-01-01-preview", "2025-02-01-preview", "2025-03-01-preview", "2025-04-01-preview",
})
V1_API_VERSIONS = ("v1", "preview")
_VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")

ACCESS_DENIED_MESSAGE = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                         "valid key for an active subscription and use a correct regional API endpoint for your "
                         "resource.")
DEPLOYMENT_NOT_FOUND_MESSAGE = ("The API deployment for this resource does not exist. If you created the deployment "
                                "within the last 5 minutes, please wait a moment and try again.")
CONTENT_FILTER_MESSAGE = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
                          "policy. Please modify your prompt and retry. To learn more about our content filtering "
                          "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
# The operation names Azure uses in OperationNotSupported, per route.
OPERATIONS = {"chat": "chatCompletion", "embeddings": "embeddings", "completions": "completion"}
_ROUTES = {"chat/completions": "chat", "embeddings": "embeddings", "completions": "completions"}

SEVERITY_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


# ----------------------------------------------------------------------------------------------
# Body builders for tests
# ----------------------------------------------------------------------------------------------


def azure_error_body(code: str, message: str, status: int | None = None) -> dict:
    """Azure's error envelope, e.g. ``azure_error_body("429", "Requests to the ... have exceeded ...")``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if status is not None:
        error["status"] = status
    return {"error": error}


def safe_content_filter_results() -> dict:
    """Per-choice ``content_filter_results`` with nothing flagged."""
    return {category: {"filtered": False, "severity": "safe"} for category in SEVERITY_CATEGORIES}


def prompt_filter_results(prompt_count: int = 1) -> list[dict]:
    """Top-level ``prompt_filter_results`` with nothing flagged (jailbreak detection included)."""
    results = {**safe_content_filter_results(), "jailbreak": {"filtered": False, "detected": False}}
    return [{"prompt_index": index, "content_filter_results": json.loads(json.dumps(results))}
            for index in range(prompt_count)]


def azure_content_filter_error(category: str = "hate", severity: str = "high") -> dict:
    """The 400 body Azure returns when the prompt trips the content filter (``category``
    filtered at ``severity``; ``"jailbreak"`` reports ``detected`` instead of a severity)."""
    results: dict[str, Any] = {name: {"filtered": False, "severity": "safe"} for name in SEVERITY_CATEGORIES}
    results["jailbreak"] = {"filtered": False, "detected": False}
    results[category] = {"filtered": True, "detected": True} if category == "jailbreak" else \
        {"filtered": True, "severity": severity}
    return {"error": {"message": CONTENT_FILTER_MESSAGE, "type": None, "param": "prompt", "code": "content_filter",
                      "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                    "content_filter_result": results}}}


def azure_completion(completion: dict) -> dict:
    """An OpenAI ``chat.completion`` dressed as Azure sends it (filter annotations, no service_tier)."""
    body = {key: value for key, value in completion.items() if key != "service_tier"}
    body["choices"] = [{**choice, "content_filter_results": safe_content_filter_results()}
                       for choice in completion["choices"]]
    body["prompt_filter_results"] = prompt_filter_results()
    return body


def azure_chunks(completion: dict, include_usage: bool = False) -> list[Any]:
    """Azure's stream for ``completion`` (a ``chat.completion``, OpenAI's or Azure's): the
    prompt-filter chunk, then OpenAI's chunks with ``content_filter_results`` on every choice, then
    ``[DONE]``."""
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
             "prompt_filter_results": prompt_filter_results()}
    chunks: list[Any] = [first]
    for chunk in completion_chunks({"service_tier": None, **completion}, include_usage):
        if chunk == "[DONE]":
            chunks.append(chunk)
            continue
        chunk = {key: value for key, value in chunk.items() if key != "service_tier"}
        choices = []
        for choice in chunk["choices"]:
            has_text = bool(choice["delta"].get("content"))
            choices.append({**choice, "content_filter_results": safe_content_filter_results() if has_text else {}})
        chunks.append({**chunk, "choices": choices})
    return chunks


def sse(events: list[Any]) -> bytes:
    """Encode chunk dicts (keys sorted, as Azure does) and ``"[DONE]"`` as an Azure SSE stream."""
    return b"".join(_encode(event) for event in events)


def _encode(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    data = event if event == "[DONE]" else json.dumps(event, sort_keys=True, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _operations_of(model: str) -> tuple[str, ...]:
    """Which routes a model serves: embedding models embed, instruct/base models do legacy
    completions, everything else chats."""
    if "embedding" in model:
        return ("embeddings",)
    if "instruct" in model or model.startswith(("davinci", "babbage")):
        return ("completions",)
    return ("chat",)


class AzureOpenAIMock(MockServer):
    """Strict Azure OpenAI mock; see the module docstring for what it enforces."""

    json_indent = None  # Azure sends compact JSON

    def __init__(self, api_key: str = "test-azure-key", deployments: dict[str, str] | None = None, port: int = 0,
                 api_versions: frozenset[str] | None = None):
        self.api_key = api_key
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)
        self.api_versions = API_VERSIONS if api_versions is None else frozenset(api_versions)
        super().__init__(port)

    # --- helpers for tests ----------------------------------------------------------------------

    @staticmethod
    def completion(*args: Any, model: str = "gpt-4o-2024-11-20", **kwargs: Any) -> dict:
        """``OpenAIMock.completion`` with Azure's additions (same arguments)."""
        return azure_completion(OpenAIMock.completion(*args, model=model, **kwargs))

    # --- MockServer hooks -----------------------------------------------------------------------

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def common_headers(self, request_id: str | None) -> dict[str, str]:
        return {"apim-request-id": request_id, "x-request-id": str(uuid.uuid4()), "x-ms-region": "East US",
                "azureml-model-session": "d001-20250101000000"}

    def encode_event(self, event: Any) -> bytes:
        return _encode(event)

    def validate(self, request: RecordedRequest, request_id: str | None) -> None:
        try:
            self._resolve(request)
        except _Rejected as error:
            raise Rejection(error.status, error.body) from None

    def _resolve(self, request: RecordedRequest) -> tuple[str, str, dict]:
        """Check the request in Azure's order; returns ``(route, model, body)``."""
        route, deployment, v1 = self._route(request)
        if route is None:
            raise _azure("404", "Resource not found", 404)
        version = (request.query.get("api-version") or [None])[-1]
        if v1:
            if version is not None and version not in V1_API_VERSIONS:
                raise _azure("BadRequest", "API version not supported", 400)
        elif version is None or (_VERSION_FORMAT.fullmatch(version) and version not in self.api_versions):
            raise _azure("404", "Resource not found", 404)
        elif not _VERSION_FORMAT.fullmatch(version):
            raise _azure("BadRequest", "API version not supported", 400)
        self._check_key(request.headers, v1)
        check = BODY_CHECKS[route]
        if v1:
            body = self._openai_checked(check, request.body, True)
            deployment = body["model"]
        if deployment not in self.deployments:
            raise _azure("DeploymentNotFound", DEPLOYMENT_NOT_FOUND_MESSAGE, 404)
        model = self.deployments[deployment]
        if route not in _operations_of(model):
            raise _azure("OperationNotSupported", f"The {OPERATIONS[route]} operation does not work with the "
                         f"specified model, {_family(model)}. Please choose different model and try again. You can "
                         "learn more about which models can be used with each operation here: "
                         "https://go.microsoft.com/fwlink/?linkid=2197993.", 400)
        if not v1:
            body = self._openai_checked(check, request.body, False)
        if route == "chat":
            # The deployment's model decides, as on OpenAI (reasoning models' rules).
            self._openai_checked(lambda raw, _: check_model_rules(body, model), request.body, False)
        return route, model, body

    @staticmethod
    def _openai_checked(check, raw: bytes, require_model: bool) -> dict:
        try:
            return check(raw, require_model)
        except _Invalid as error:
            raise _Rejected(error.status, openai_error_body(error.message, param=error.param, code=error.code)) \
                from None

    @staticmethod
    def _route(request: RecordedRequest) -> tuple[str | None, str | None, bool]:
        if request.method != "POST":
            return None, None, False
        match = re.fullmatch(r"/openai/deployments/([^/]+)/(chat/completions|embeddings|completions)", request.path)
        if match:
            return _ROUTES[match[2]], match[1], False
        match = re.fullmatch(r"/openai/v1/(chat/completions|embeddings|completions)", request.path)
        if match:
            return _ROUTES[match[1]], None, True
        return None, None, False

    def _check_key(self, headers: dict[str, str], v1: bool) -> None:
        key = headers.get("api-key")
        if key is None and v1:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if key != self.api_key:
            raise _azure("401", ACCESS_DENIED_MESSAGE, 401)

    def default_response(self, request: RecordedRequest, request_id: str | None) -> Response:
        headers = self.common_headers(request_id)
        route, model, body = self._resolve(request)
        if route == "embeddings":
            return self._json(embeddings_response(body, model), headers)
        if route == "completions":
            completion = default_text_completion(body, model)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return Response.stream([_encode(chunk) for chunk in text_completion_chunks(completion, include_usage)],
                                       headers)
            return self._json(completion, headers)
        stop = body.get("stop")
        cut = truncate_reply(f"Echo: {last_user_text(body['messages'])}".rstrip(),
                             [stop] if isinstance(stop, str) else stop or (),
                             body.get("max_completion_tokens") or body.get("max_tokens"))
        completion = OpenAIMock.completion(cut.text, model=model,
                                           finish_reason="length" if cut.reason == "max_tokens" else "stop",
                                           prompt_tokens=max(1, sum(map(estimate_tokens, _prompt_texts(body)))),
                                           n=body.get("n") or 1)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Response.stream([_encode(chunk) for chunk in azure_chunks(completion, include_usage)], headers)
        return self._json(azure_completion(completion), headers)

    @staticmethod
    def _json(payload: dict, headers: dict[str, str]) -> Response:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return Response(200, {**headers, "content-type": "application/json"}, body)


class _Rejected(_Invalid):
    """A rejection whose body is already built (Azure's envelopes differ from OpenAI's)."""

    def __init__(self, status: int, body: dict):
        super().__init__(json.dumps(body), status=status)
        self.body = body


def _azure(code: str, message: str, status: int) -> _Rejected:
    return _Rejected(status, azure_error_body(code, message))


def _family(model: str) -> str:
    """The model name Azure quotes in OperationNotSupported: the dated snapshot suffix dropped."""
    return re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model)


__all__ = ["AzureOpenAIMock", "azure_chunks", "azure_completion", "azure_content_filter_error", "azure_error_body",
           "prompt_filter_results", "safe_content_filter_results", "sse"]
