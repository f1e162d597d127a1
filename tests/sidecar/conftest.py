"""Fixtures for the sidecar suite: the real `switchyard-sidecar` binary on an ephemeral
127.0.0.1 port, once on a SQLite file and once on a real PostgreSQL (Debian's, started on
loopback in a temporary directory by `tools/postgres.py`), and LiteLLM 1.106.2's own
pydantic models (in `.venv-litellm`) to validate every admin response against.

Every test that takes `sidecar` or `database_url` runs twice, `[sqlite]` and `[postgres]`.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from postgres import Postgres
from sidecar_harness import BIN, Sidecar, Validator


@pytest.fixture(scope="session", autouse=True)
def built_sidecar():
    assert BIN.exists(), f"{BIN} is missing: run `make sidecar` (make test does)"


@pytest.fixture(scope="session")
def litellm():
    v = Validator()
    yield v
    v.close()


@pytest.fixture(scope="session")
def postgres():
    with Postgres() as pg:
        yield pg


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="switchyard-sidecar-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, workdir):
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite://{workdir / 'switchyard.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database("sw_" + uuid.uuid4().hex[:12])


@pytest.fixture
def sidecar(database_url, workdir):
    s = Sidecar(database_url, workdir)
    yield s
    s.stop()
