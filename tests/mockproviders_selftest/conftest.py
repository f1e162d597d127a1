"""Fixtures every mock self-test module shares: an HTTP client, and an OpenAI mock
started once per module and emptied around each test."""

from __future__ import annotations

import httpx
import pytest

from mockproviders.openai import OpenAIMock


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def openai_server():
    with OpenAIMock() as mock:
        yield mock


@pytest.fixture
def omock(openai_server):
    openai_server.reset()
    yield openai_server
    openai_server.reset()
