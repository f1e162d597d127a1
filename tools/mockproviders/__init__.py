"""Strict mock LLM provider servers for Switchyard's integration tests.

Standard library only: the mocks must start anywhere Python 3.11 runs, without a virtualenv.

* ``base``      -- HTTP machinery, request recording and scripted actions shared by every mock.
* ``anthropic`` -- ``AnthropicMock``: ``POST /v1/messages`` validated like the real Messages API.
* ``openai``    -- ``OpenAIMock``: ``POST /v1/chat/completions``, ``/v1/embeddings``, ``/v1/completions``
  and ``GET /v1/models``.
* ``azure``     -- ``AzureOpenAIMock``: Azure OpenAI's deployment-scoped and v1 routes (OpenAI's wire
  format with Azure's auth, errors and content-filter annotations).
* ``gemini``    -- ``GeminiMock``: the Gemini API v1beta (``generateContent``, ``streamGenerateContent``,
  ``embedContent``, ``batchEmbedContents``), validated like the real proto3-JSON endpoint.
* ``demo``      -- the offline demo provider behind ``make run`` (an ``AnthropicMock``).
"""

from .base import (
    Default,
    Delay,
    Hang,
    MockServer,
    RecordedRequest,
    Rejection,
    Reply,
    Reset,
    ResetMidBody,
    StallAfterHeaders,
    StreamEvents,
)

__all__ = [
    "Default",
    "Delay",
    "Hang",
    "MockServer",
    "RecordedRequest",
    "Rejection",
    "Reply",
    "Reset",
    "ResetMidBody",
    "StallAfterHeaders",
    "StreamEvents",
]
