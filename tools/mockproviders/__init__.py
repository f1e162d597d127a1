"""Strict mock LLM provider servers for Switchyard's integration tests.

Standard library only: the mocks must start anywhere Python 3.11 runs, without a virtualenv.

* ``base``      -- HTTP machinery, request recording and scripted actions shared by every mock.
* ``anthropic`` -- ``AnthropicMock``: ``POST /v1/messages`` validated like the real Messages API.
* ``openai``    -- ``OpenAIMock``: ``POST /v1/chat/completions`` and ``GET /v1/models``.
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
    "StreamEvents",
]
