"""Spend end to end: every answer through the real Envoy metered from its provider's usage,
priced, told to the client (`x-litellm-response-cost`, `x-litellm-call-id`) and recorded once
in the sidecar's ledger, whatever happens to the sidecar meanwhile."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

import launcher
from gatewayconf import Deployment, ModelGroup
from harness import Gateway
from postgres import Postgres

from conftest import ANTHROPIC_KEY

MASTER = "sk-master-spend-0123456789"
SECRET = "internal-spend-secret-0123456789"
ENV = {"SWITCHYARD_MASTER_KEY": MASTER, "SWITCHYARD_INTERNAL_SECRET": SECRET}
HI = {"messages": [{"role": "user", "content": "hi there, how much does this cost?"}]}
# Prices in the endpoint metadata, LiteLLM's names (USD per token).
PRICES = {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
          "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06}


@pytest.fixture(scope="module")
def sidecar():
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-spend-"))
    side = launcher.Sidecar(workdir, ENV)
    yield side
    side.stop()


@pytest.fixture(scope="module")
def gw(sidecar, anthropic_mock):
    group = ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                             api_key_env="TEST_ANTHROPIC_KEY", extra=dict(PRICES))],
                       route={"retry_policy": None}, cluster={"outlier_detection": None})
    gateway = Gateway([group], env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=sidecar,
                      virtual_keys={}, concurrency=2)
    yield gateway
    gateway.stop()


def admin(gw: Gateway, method: str, path: str, **kwargs) -> httpx.Response:
    return gw.client.request(method, path, headers={"Authorization": f"Bearer {MASTER}"}, **kwargs)


def new_key(gw: Gateway) -> str:
    r = admin(gw, "POST", "/key/generate", json={})
    assert r.status_code == 200, r.text
    return r.json()["key"]


def nano(usd: Decimal) -> int:
    return int((usd * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_nano(usage: dict) -> int:
    """The cost of an OpenAI-shaped usage at PRICES, to the nano-dollar (Anthropic's cache
    writes in `cache_creation_input_tokens`, its reads in `cached_tokens`)."""
    price = {k: Decimal(str(v)) for k, v in PRICES.items()}
    read = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    write = usage.get("cache_creation_input_tokens", 0) or 0
    plain = usage["prompt_tokens"] - read - write
    usd = (plain * price["input_cost_per_token"] + read * price["cache_read_input_token_cost"]
           + write * price["cache_creation_input_token_cost"]
           + usage["completion_tokens"] * price["output_cost_per_token"])
    return nano(usd)


def ledger_rows(gw: Gateway, key: str) -> list[dict]:
    """Every ledger row of `key`, page by page (newest first), through the gateway."""
    return ledger_pages(lambda params: admin(gw, "GET", "/spend/logs", params=params), key)


def ledger_pages(get, key: str) -> list[dict]:
    """Every ledger row of `key`, `get(params)` answering one `/spend/logs` page."""
    rows, params = [], {"api_key": key, "limit": 1000}
    while True:
        r = get(params)
        assert r.status_code == 200, r.text
        rows.extend(r.json())
        if not (before := r.headers.get("x-switchyard-next-before")):
            return rows
        params["before"] = before


def wait_for_rows(gw: Gateway, key: str, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(rows := ledger_rows(gw, key)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} of {count} ledger rows after {timeout} s"
        time.sleep(0.2)
    return rows


def test_every_answer_is_priced_told_and_recorded_once(gw, anthropic_mock):
    key = new_key(gw)
    auth = {"Authorization": f"Bearer {key}"}
    answers = {}
    for _ in range(3):
        r = gw.chat({"model": "claude", **HI}, headers=auth)
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        assert Decimal(r.headers["x-litellm-response-cost"]) == Decimal(expected_nano(usage)) / 10**9
        answers[r.headers["x-litellm-call-id"]] = usage
    for _ in range(2):
        with gw.client.stream("POST", "/v1/chat/completions", headers=auth,
                              json={"model": "claude", "stream": True, "stream_options": {"include_usage": True},
                                    **HI}) as r:
            assert r.status_code == 200
            assert "x-litellm-response-cost" not in r.headers, "a stream's headers leave before its usage"
            events = [line for line in r.iter_lines() if line.startswith("data: {")]
        import json
        usage = json.loads(events[-1][len("data: "):])["usage"]
        answers[r.headers["x-litellm-call-id"]] = usage
    assert len(answers) == 5, "one call id per request"
    rows = wait_for_rows(gw, key, 5)
    assert len(rows) == 5
    by_id = {row["request_id"]: row for row in rows}
    assert set(by_id) == set(answers)
    for call_id, usage in answers.items():
        row = by_id[call_id]
        assert row["prompt_tokens"] == usage["prompt_tokens"]
        assert row["completion_tokens"] == usage["completion_tokens"]
        assert nano(Decimal(str(row["spend"]))) == expected_nano(usage), row
        assert row["model_group"] == "claude" and row["custom_llm_provider"] == "anthropic"
    info = admin(gw, "GET", "/key/info", params={"key": key}).json()["info"]
    total = sum(expected_nano(u) for u in answers.values())
    assert nano(Decimal(str(info["spend"]))) == total


@pytest.mark.timeout(300)
def test_the_sidecar_killed_and_kept_down_under_load_loses_and_doubles_nothing(gw, sidecar):
    """SIGKILL mid-load, down for 60 s while the gateway keeps answering known keys, then
    back on the same database: every answered request is in the ledger exactly once."""
    key = new_key(gw)
    auth = {"Authorization": f"Bearer {key}"}
    assert gw.chat({"model": "claude", **HI}, headers=auth).status_code == 200  # the key is cached
    stop, answered, lock = threading.Event(), {}, threading.Lock()

    def load() -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/v1/chat/completions", json={"model": "claude", **HI}, headers=auth)
                if r.status_code == 200:
                    with lock:
                        answered[r.headers["x-litellm-call-id"]] = r.json()["usage"]
                time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1)
    sidecar.proc.signal(signal.SIGKILL)
    sidecar.proc.popen.wait()
    try:
        time.sleep(60)
    finally:
        restarted = launcher.Sidecar(Path(sidecar.proc.log_path).parent, ENV, addr=sidecar.addr)
        sidecar.proc = restarted.proc
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(15)
    with lock:
        served = dict(answered)
    assert len(served) > 100, len(served)
    rows = wait_for_rows(gw, key, len(served) + 1, timeout=60)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids)), "no record doubled"
    assert set(served) <= set(ids), f"{len(set(served) - set(ids))} answered requests missing"
    assert len(ids) == len(served) + 1, "and nothing else"


# --- PostgreSQL: the database restarted under load, and two replicas on one database -----------


def claude_group(anthropic_mock) -> ModelGroup:
    return ModelGroup("claude", [Deployment("anthropic", anthropic_mock.port, model="claude-sonnet-4-5",
                                            api_key_env="TEST_ANTHROPIC_KEY", extra=dict(PRICES))],
                      route={"retry_policy": None}, cluster={"outlier_detection": None})


@pytest.fixture
def pg_gw(anthropic_mock):
    """One gateway whose sidecar keeps its keys and ledger in a PostgreSQL of its own."""
    started = []
    with Postgres() as pg:
        url = pg.create_database("sw_spend_restart")
        try:
            side = launcher.Sidecar(Path(tempfile.mkdtemp(prefix="switchyard-spend-pg-")), ENV, database_url=url)
            started.append(side)
            gateway = Gateway([claude_group(anthropic_mock)], env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY},
                              sidecar=side, virtual_keys={}, concurrency=2)
            started.append(gateway)
            yield pg, side, gateway
        finally:
            for part in reversed(started):
                part.stop()


@pytest.fixture
def pg_replicas(anthropic_mock):
    """Two gateways, each with its own sidecar, both sidecars on one PostgreSQL."""
    started = []
    with Postgres() as pg:
        url = pg.create_database("sw_spend_replicas")
        try:
            for _ in range(2):
                side = launcher.Sidecar(Path(tempfile.mkdtemp(prefix="switchyard-spend-replica-")), ENV,
                                        database_url=url)
                started.append(side)
                gateway = Gateway([claude_group(anthropic_mock)], env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY},
                                  sidecar=side, virtual_keys={}, concurrency=2)
                started.append(gateway)
            yield started
        finally:
            for part in reversed(started):
                part.stop()


def evidence(*parts) -> str:
    """The tails of the sidecars' and Envoys' logs, for a failure's message."""
    out = []
    for part in parts:
        log = part.proc.log() if isinstance(part, launcher.Sidecar) else part.log()
        out.append(f"--- {type(part).__name__} log tail:\n{log[-3000:]}")
    return "\n".join(out)


def iso_ms(stamp: str) -> float:
    """A ledger row's ISO 8601 time (`2026-12-02T17:14:12.902Z`) in unix ms."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def cache_key_everywhere(gw: Gateway, key: str) -> dict:
    """Caches `key` in the gateway for good: a new key's creation reaches the change feed
    (polled every 500 ms) after it was first looked up, and marks the cached entry changed;
    a request after that caches it again, and nothing changes it later. Returns the usage
    of each answer, by call id."""
    answers = {}
    for pause in (1.5, 0):
        r = gw.chat({"model": "claude", **HI}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        answers[r.headers["x-litellm-call-id"]] = r.json()["usage"]
        time.sleep(pause)
    return answers


def assert_ledger_is_exactly(gw: Gateway, key: str, served: dict[str, dict], logs=(), timeout: float = 30) -> list[dict]:
    """The key's ledger holds every served call id once and nothing else, and the key's
    `spend` is the sum of its rows' to the nano-dollar: nothing lost, nothing doubled."""
    deadline = time.monotonic() + timeout
    while len(rows := ledger_rows(gw, key)) < len(served):
        assert time.monotonic() < deadline, \
            f"{len(rows)} of {len(served)} ledger rows after {timeout} s\n{evidence(*logs)}"
        time.sleep(0.25)
    time.sleep(0.6)  # a late duplicate or stray record would arrive within a few ticks
    rows = ledger_rows(gw, key)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ledger rows doubled"
    missing, extra = set(served) - set(ids), set(ids) - set(served)
    assert not missing, f"{len(missing)} answered requests missing from the ledger\n{evidence(*logs)}"
    assert not extra, f"{len(extra)} ledger rows of requests nobody was answered: {sorted(extra)[:5]}"
    rows_total = sum(nano(Decimal(str(row["spend"]))) for row in rows)
    r = admin(gw, "GET", "/key/info", params={"key": key})
    assert r.status_code == 200, r.text
    assert nano(Decimal(str(r.json()["info"]["spend"]))) == rows_total, \
        f"the key's spend {r.json()['info']['spend']} USD, the sum of its ledger rows' {Decimal(rows_total) / 10**9}"
    return rows


def assert_metered_as_answered(rows: list[dict], served: dict[str, dict], costs: dict[str, str | None]) -> None:
    """Each answer told its cost (`x-litellm-response-cost`) and its ledger row holds that
    cost and that usage: the ledger's total is what the provider's usage costs."""
    untold = sorted(call_id for call_id, cost in costs.items() if cost is None)
    unmetered = [row for row in rows if row["metadata"]["attempts"] == 0]
    assert not untold and not unmetered, (
        f"{len(untold)} of {len(costs)} answers (200, with the provider's usage) carry no x-litellm-response-cost, "
        f"and {len(unmetered)} ledger rows have no attempt, no usage and no cost: {untold[:5]}; their rows: "
        + "; ".join(f"{r['request_id']} x-request-id {r['metadata']['client_request_id']} start {r['startTime']} "
                    f"provider {r['custom_llm_provider']!r} {r['metadata']['usage']}" for r in unmetered[:5]))
    for call_id, cost in costs.items():
        assert nano(Decimal(cost)) == expected_nano(served[call_id]), (call_id, cost, served[call_id])
    for row in rows:
        usage = served[row["request_id"]]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"]), row
        assert row["metadata"]["cost_nano"] == expected_nano(usage), row
        assert nano(Decimal(str(row["spend"]))) == expected_nano(usage), row
    assert sum(nano(Decimal(str(row["spend"]))) for row in rows) == sum(expected_nano(u) for u in served.values())


@pytest.mark.timeout(180)
def test_postgresql_restarted_mid_load_loses_and_doubles_nothing(pg_gw):
    """PostgreSQL stopped (fast shutdown: every connection cut, open transactions rolled
    back) while three clients keep a cached key busy, down 10 s, started again on the same
    data and port: the sidecar reconnects by itself and every answered request is in the
    ledger exactly once, its spend counted once."""
    pg, side, gw = pg_gw
    key = new_key(gw)
    auth = {"Authorization": f"Bearer {key}"}
    served = cache_key_everywhere(gw, key)
    costs = {}
    stop, lock, failures, done_at = threading.Event(), threading.Lock(), [], {}

    def load() -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/chat/completions", json={"model": "claude", **HI}, headers=auth)
                except httpx.HTTPError as e:
                    with lock:
                        failures.append(repr(e))
                    continue
                with lock:
                    if r.status_code == 200:
                        call_id = r.headers["x-litellm-call-id"]
                        served[call_id] = r.json()["usage"]
                        costs[call_id] = r.headers.get("x-litellm-response-cost")
                        done_at[call_id] = time.monotonic()
                    else:
                        failures.append((r.status_code, r.headers.get("x-litellm-call-id"), r.text[:300]))
                time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        pg.stop_server("fast")  # returns once the server is down
        down_at, down_wall_ms = time.monotonic(), time.time() * 1000
        try:
            time.sleep(10)
        finally:
            up_at, up_wall_ms = time.monotonic(), time.time() * 1000
            pg.start_again()
        time.sleep(3)  # and on, on the restarted database
    finally:
        stop.set()
        for t in threads:
            t.join(40)
    assert not failures, f"{len(failures)} requests not answered 200: {failures[:5]}\n{evidence(side, gw)}"
    during = sum(1 for at in done_at.values() if down_at < at < up_at)
    assert during > 50, f"only {during} answers while PostgreSQL was down"
    rows = assert_ledger_is_exactly(gw, key, served, logs=(side, gw), timeout=40)
    # The requests that started while PostgreSQL was down were held by the gateway and
    # recorded once it was back.
    held = [row for row in rows if down_wall_ms < iso_ms(row["startTime"]) < up_wall_ms]
    assert len(held) > 50, f"only {len(held)} ledger rows of requests made while PostgreSQL was down"
    early = [row["request_id"] for row in held if iso_ms(row["created_at"]) < up_wall_ms]
    assert not early, f"{len(early)} rows recorded while PostgreSQL was down: {early[:5]}"
    assert_metered_as_answered(rows, served, costs)


@pytest.mark.timeout(150)
def test_two_replicas_on_one_postgresql_record_every_request_exactly_once(pg_replicas):
    """200 requests from 16 clients spread over two Envoy processes, each with its own
    sidecar, both on one PostgreSQL: both sidecars write batches for the same key at the
    same time, and the ledger (read through either replica) holds each request once and the
    key's spend their sum. The key is new: its first requests on each replica wait for its
    lookup together, as a new key's first burst does."""
    side_a, a, side_b, b = pg_replicas
    key = new_key(a)
    auth = {"Authorization": f"Bearer {key}"}
    n = 200

    def one(i: int):
        gw = (a, b)[i % 2]
        return gw, gw.chat({"model": "claude", **HI}, headers=auth)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(n)))
    bad = [(r.status_code, r.text[:300]) for _, r in results if r.status_code != 200]
    assert not bad, f"{len(bad)} requests not answered 200: {bad[:5]}"
    served = {r.headers["x-litellm-call-id"]: r.json()["usage"] for _, r in results}
    costs = {r.headers["x-litellm-call-id"]: r.headers.get("x-litellm-response-cost") for _, r in results}
    assert len(served) == n, "one call id per request, distinct across the replicas"
    assert {id(gw) for gw, _ in results} == {id(a), id(b)}
    rows = assert_ledger_is_exactly(a, key, served, logs=(side_a, a, side_b, b))
    assert {row["request_id"] for row in assert_ledger_is_exactly(b, key, served)} == set(served)
    assert_metered_as_answered(rows, served, costs)


@pytest.mark.timeout(120)
def test_envoy_killed_loses_at_most_its_last_flush(sidecar, anthropic_mock):
    """Envoy SIGKILLed under load: the records its workers still held die with it, and
    nothing else. The stated bound is the flush interval (250 ms) plus a batch's round trip:
    every request answered more than a second before the kill is in the ledger."""
    gateway = Gateway([claude_group(anthropic_mock)], env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY},
                      sidecar=sidecar, virtual_keys={}, concurrency=2)
    try:
        key = new_key(gateway)
        answered = dict.fromkeys(cache_key_everywhere(gateway, key), 0.0)
        stop, lock = threading.Event(), threading.Lock()

        def load() -> None:
            with httpx.Client(base_url=gateway.url, timeout=5) as client:
                while not stop.is_set():
                    try:
                        r = client.post("/v1/chat/completions", json={"model": "claude", **HI},
                                        headers={"Authorization": f"Bearer {key}"})
                    except httpx.HTTPError:
                        return  # Envoy is gone
                    if r.status_code == 200:
                        with lock:
                            answered[r.headers["x-litellm-call-id"]] = time.monotonic()

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(3)
        killed_at = time.monotonic()
        gateway.proc.send_signal(signal.SIGKILL)
        gateway.proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        gateway.stop()
    # The sidecar is still up: read the ledger from it directly.
    with httpx.Client(base_url=f"http://{sidecar.addr}", timeout=10,
                      headers={"Authorization": f"Bearer {MASTER}"}) as direct:
        time.sleep(0.5)  # a batch already on its way is committed
        rows = ledger_pages(lambda params: direct.get("/spend/logs", params=params), key)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids)), "no record doubled"
    assert set(ids) <= set(answered), "nothing recorded that was not answered"
    settled = {call for call, at in answered.items() if at < killed_at - 1.0}
    assert len(settled) > 50, len(settled)
    missing = settled - set(ids)
    assert not missing, f"{len(missing)} requests answered over a second before the kill are not in the ledger"
    lost = len(answered) - len(ids)
    print(f"Envoy SIGKILL: {len(answered)} answered, {len(ids)} recorded, {lost} lost (answered in its last second)")
