"""Two gateway replicas, as a scaled-out deployment runs them: two Envoy processes, each
with its own sidecar, both sidecars on one PostgreSQL (Debian's, on loopback). Rate limits
in `global` scope hold across them by window grants; admin changes reach both."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import launcher
from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from postgres import Postgres

from conftest import ANTHROPIC_KEY

MASTER = "sk-master-replicas-0123456789"
SECRET = "internal-replicas-secret-0123456789"
ENV = {"SWITCHYARD_MASTER_KEY": MASTER, "SWITCHYARD_INTERNAL_SECRET": SECRET}
HI = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def replicas(anthropic_mock):
    group = ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                             api_key_env="TEST_ANTHROPIC_KEY")],
                       route={"retry_policy": None}, cluster={"outlier_detection": None})
    started = []
    with Postgres() as pg:
        url = pg.create_database("sw_replicas")
        try:
            for _ in range(2):
                side = launcher.Sidecar(Path(tempfile.mkdtemp(prefix="switchyard-replica-")), ENV, database_url=url)
                started.append(side)
                gw = Gateway([group], env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=side,
                             virtual_keys={"rate_limit_scope": "global"}, concurrency=2)
                started.append(gw)
            yield started[1], started[3]
        finally:
            for part in reversed(started):
                part.stop()


def new_key(gw: Gateway, **fields) -> str:
    r = gw.client.post("/key/generate", json=fields, headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    return r.json()["key"]


def early_in_a_minute() -> None:
    """Limits count wall-clock minutes: start a burst where it cannot straddle two."""
    second = time.time() % 60
    if second > 40:
        time.sleep(60.5 - second)


def test_an_rpm_limit_holds_across_two_envoy_processes(replicas):
    a, b = replicas
    key = new_key(a, rpm_limit=12)
    early_in_a_minute()

    def one(i):
        gw = a if i % 2 else b
        return gw, gw.chat(HI, headers={"Authorization": f"Bearer {key}"})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    ok = [gw for gw, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code == 429]
    assert len(ok) + len(refused) == 40, [r.text for _, r in results if r.status_code not in (200, 429)]
    # Each replica keeps asking until it is refused, so every grant is used: exactly the limit.
    assert len(ok) == 12, f"admitted {len(ok)} across both replicas"
    assert {id(gw) for gw in ok} == {id(a), id(b)}, "both replicas admitted some"
    err = openai_error(refused[0])
    assert (err["code"], err["type"]) == ("rate_limit_exceeded", "requests")
    assert 1 <= int(refused[0].headers["retry-after"]) <= 60
    assert refused[0].headers["x-ratelimit-limit-requests"] == "12"


def test_a_token_limit_holds_across_two_envoy_processes(replicas):
    """TPM: admitted on the estimate (a few tokens for this prompt), corrected by usage."""
    a, b = replicas
    key = new_key(a, tpm_limit=300)
    early_in_a_minute()
    admitted = 0
    for i in range(40):
        r = (a if i % 2 else b).chat(HI, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code in (200, 429), r.text
        if r.status_code == 200:
            admitted += r.json()["usage"]["total_tokens"]
        else:
            assert openai_error(r)["type"] == "tokens"
    # The mock's usage per answer is small; admitted tokens end within one request's of the limit.
    assert 0 < admitted <= 300 + 60, admitted


def test_a_block_reaches_both_replicas_within_two_seconds(replicas):
    a, b = replicas
    key = new_key(a)
    auth = {"Authorization": f"Bearer {key}"}
    assert a.chat(HI, headers=auth).status_code == 200 and b.chat(HI, headers=auth).status_code == 200
    r = a.client.post("/key/block", json={"key": key}, headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 2
    for gw, which in ((b, "the other replica"), (a, "the replica it was made on")):
        while gw.chat(HI, headers=auth).status_code == 200:
            assert time.monotonic() < deadline, f"the block did not reach {which} within 2 s"
            time.sleep(0.05)
        assert gw.chat(HI, headers=auth).status_code == 401
