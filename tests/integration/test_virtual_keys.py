"""Virtual keys end to end: the real sidecar (SQLite) behind the real Envoy, its admin API on
the gateway's own port, keys enforced by the filter from Envoy's shared data."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

import launcher
from gatewayconf import Deployment, ModelGroup
from harness import Gateway, openai_error
from mockproviders.anthropic import AnthropicMock

from conftest import ANTHROPIC_KEY

MASTER = "sk-master-integration-0123456789"
SECRET = "internal-integration-secret-0123456789"
ENV = {"SWITCHYARD_MASTER_KEY": MASTER, "SWITCHYARD_INTERNAL_SECRET": SECRET}
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def sidecar():
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-sidecar-"))
    side = launcher.Sidecar(workdir, ENV)
    yield side
    side.stop()


def groups(mock) -> list[ModelGroup]:
    return [ModelGroup(name, [Deployment("anthropic", mock.port, model="claude-sonnet-4-5",
                                         api_key_env="TEST_ANTHROPIC_KEY")],
                       route={"retry_policy": None}, cluster={"outlier_detection": None})
            for name in ("claude", "claude-2")]


@pytest.fixture(scope="module")
def gw(sidecar, anthropic_mock):
    """The shipped settings: a key is trusted for 60 s, admin changes arrive by the feed."""
    gateway = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=sidecar,
                      virtual_keys={}, concurrency=2)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def short_cache(sidecar, anthropic_mock):
    """The sidecar's answer trusted for 1 s, a known key working for 30 s while it is down."""
    gateway = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=sidecar,
                      virtual_keys={"cache_ttl": 1, "negative_cache_ttl": 1, "stale_ttl": 30, "timeout_ms": 500})
    yield gateway
    gateway.stop()


def admin(gw: Gateway, path: str, body: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {MASTER}"}
    if body is None:
        return gw.client.get(path, headers=headers)
    return gw.client.post(path, json=body, headers=headers)


def ask(gw: Gateway, key: str, model: str = "claude") -> httpx.Response:
    return gw.chat({"model": model, **HI}, headers={"Authorization": f"Bearer {key}"})


def new_key(gw: Gateway, **fields) -> str:
    r = admin(gw, "/key/generate", fields)
    assert r.status_code == 200, r.text
    return r.json()["key"]


def test_the_admin_api_is_on_the_gateways_port_and_needs_the_master_key(gw):
    assert gw.client.get("/health/liveliness").status_code == 200
    r = gw.client.post("/key/generate", json={})
    assert r.status_code == 401
    assert "error" in r.json()
    r = admin(gw, "/key/generate", {"key_alias": "first", "models": ["claude"]})
    assert r.status_code == 200, r.text
    assert r.json()["key"].startswith("sk-") and r.json()["key_alias"] == "first"
    # The sidecar's internal API is not reachable through the gateway.
    r = gw.client.get("/internal/v1/changes", headers={"x-switchyard-internal": SECRET})
    assert r.status_code == 401, "no key: refused before anything"
    r = gw.client.get("/internal/v1/changes",
                      headers={"x-switchyard-internal": SECRET, "Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 404 and openai_error(r)["code"] == "unknown_url"


def test_a_virtual_key_is_admitted_and_its_model_list_enforced(gw, anthropic_mock):
    key = new_key(gw, models=["claude"])
    r = ask(gw, key)
    assert r.status_code == 200, r.text
    sent = anthropic_mock.requests[-1]
    assert key not in str(sent.headers) and "authorization" not in sent.headers, "the client's key stays here"
    r = ask(gw, key, "claude-2")
    assert r.status_code == 403
    assert openai_error(r)["code"] == "key_model_access_denied"
    # It lists only what it may use.
    listed = gw.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert [m["id"] for m in listed["data"]] == ["claude"]
    assert gw.client.get("/v1/models/claude-2", headers={"Authorization": f"Bearer {key}"}).status_code == 404
    # The master key still works for everything.
    assert ask(gw, MASTER, "claude-2").status_code == 200


def test_unknown_keys_and_missing_keys_are_refused(gw):
    r = ask(gw, "sk-not-a-key")
    assert r.status_code == 401 and openai_error(r)["code"] == "invalid_api_key"
    r = gw.chat({"model": "claude", **HI})
    assert r.status_code == 401


def test_team_model_lists_apply_to_their_keys(gw):
    team = admin(gw, "/team/new", {"team_alias": "narrow", "models": ["claude-2"]})
    assert team.status_code == 200, team.text
    key = new_key(gw, team_id=team.json()["team_id"])
    assert ask(gw, key, "claude-2").status_code == 200
    r = ask(gw, key, "claude")
    assert r.status_code == 403 and openai_error(r)["code"] == "team_model_access_denied"


def test_a_block_reaches_every_worker_within_2_s_under_load_and_stays(gw):
    key, other = new_key(gw), new_key(gw)
    # Both workers cache the key (60 s): only the change feed can tell them.
    for _ in range(8):
        assert ask(gw, key).status_code == 200
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def load(k: str, into: list) -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/v1/chat/completions", json={"model": "claude", **HI},
                                headers={"Authorization": f"Bearer {k}"})
                into.append((time.monotonic(), r.status_code))

    others: list[tuple[float, int]] = []
    threads = [threading.Thread(target=load, args=(key, statuses)) for _ in range(3)]
    threads.append(threading.Thread(target=load, args=(other, others)))
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        assert admin(gw, "/key/block", {"key": key}).status_code == 200
        blocked_at = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    after = [(t - blocked_at, status) for t, status in statuses if t > blocked_at]
    first_refusal = next(delay for delay, status in after if status == 401)
    assert first_refusal < 2.0, f"the block took {first_refusal:.2f} s"
    late = [(round(d, 2), status) for d, status in after if d > first_refusal + 0.3 and status != 401]
    assert late == [], "once refused, never admitted again (no stale record came back)"
    assert {status for _, status in others} == {200}, "other keys are untouched"
    assert admin(gw, "/key/unblock", {"key": key}).status_code == 200
    deadline = time.monotonic() + 2
    while ask(gw, key).status_code != 200:
        assert time.monotonic() < deadline, "the unblock took more than 2 s"
        time.sleep(0.05)


def test_known_keys_survive_the_sidecar_going_down_and_unknown_ones_get_503(short_cache, sidecar):
    """The sidecar killed with SIGKILL and restarted while load runs: no request hangs or
    fails for a known key, unknown keys get a 503 meanwhile, and everything recovers."""
    gw = short_cache
    key = new_key(gw)
    assert ask(gw, key).status_code == 200
    stop, outcomes = threading.Event(), []

    def load() -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/chat/completions", json={"model": "claude", **HI},
                                    headers={"Authorization": f"Bearer {key}"})
                    outcomes.append(r.status_code)
                except httpx.HTTPError as e:
                    outcomes.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    sidecar.proc.signal(__import__("signal").SIGKILL)
    sidecar.proc.popen.wait()
    try:
        time.sleep(1.2)  # past the cache's 1 s: the sidecar is asked, and cannot answer
        r = ask(gw, key)
        assert r.status_code == 200, r.text
        stale = gw.stats("wasmcustom.switchyard.keys.stale_used")
        assert sum(stale.values()) >= 1
        r = ask(gw, "sk-never-seen")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert openai_error(r)["type"] == "service_unavailable"
    finally:
        # The same port and database again: the gateway recovers by itself.
        restarted = launcher.Sidecar(Path(sidecar.proc.log_path).parent, ENV, addr=sidecar.addr)
        sidecar.proc = restarted.proc
    deadline = time.monotonic() + 10
    while ask(gw, "sk-never-seen").status_code != 401:
        assert time.monotonic() < deadline, "the gateway did not recover when the sidecar came back"
        time.sleep(0.2)
    assert ask(gw, key).status_code == 200
    stop.set()
    for t in threads:
        t.join(15)
    assert len(outcomes) > 10 and set(outcomes) == {200}, sorted(set(map(str, outcomes)))


@pytest.fixture(autouse=True)
def fresh_mock(anthropic_mock):
    anthropic_mock.reset()
    yield


def test_anthropic_mock_is_the_same_for_all(anthropic_mock):
    # Guards the module's assumption that the session mock serves both groups.
    assert isinstance(anthropic_mock, AnthropicMock)


def test_requests_per_minute_hold_across_workers_with_retry_after(gw, anthropic_mock):
    import concurrent.futures

    # Not across a minute's turn (the window would restart mid-burst).
    early_in_a_minute()
    # Several fresh keys: a key's first burst is when both workers may find its window
    # missing at once (Envoy's CAS 0 once let both create it: one request too many).
    keys = [new_key(gw, rpm_limit=5) for _ in range(8)]
    with httpx.Client(base_url=gw.url, timeout=30) as client:

        def burst(key):
            def one(_):
                return client.post("/v1/chat/completions", json={"model": "claude", **HI},
                                   headers={"Authorization": f"Bearer {key}"})

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return list(pool.map(one, range(12)))

        bursts = [burst(key) for key in keys]
    for responses in bursts:
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 5 + [429] * 7, "exactly the limit, whichever worker served"
    responses = bursts[0]
    refused = next(r for r in responses if r.status_code == 429)
    error = openai_error(refused)
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "5"
    admitted = next(r for r in responses if r.status_code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "5"
    assert int(admitted.headers["x-ratelimit-remaining-requests"]) < 5


def test_parallel_requests_are_limited_and_slots_come_back(gw, anthropic_mock):
    from mockproviders import Delay

    key = new_key(gw, max_parallel_requests=1)
    anthropic_mock.enqueue(Delay(1.5))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(ask, gw, key)
        time.sleep(0.5)
        second = ask(gw, key)
        assert second.status_code == 429, second.text
        assert openai_error(second)["message"].startswith("Rate limit exceeded for api_key. Limit type: max_parallel")
        assert slow.result().status_code == 200
    assert ask(gw, key).status_code == 200, "the slot came back when the request ended"


class SlowLink:
    """A TCP relay on 127.0.0.1 that holds every answer from `upstream` for `delay`
    seconds: a sidecar that is slow to answer, so concurrent requests miss together."""

    def __init__(self, upstream_host: str, upstream_port: int, delay: float):
        import asyncio
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.upstream = (upstream_host, upstream_port)
        started = threading.Event()

        async def relay(reader, writer, slow: bool):
            try:
                while data := await reader.read(65536):
                    if slow:
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def client(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                writer.close()
                return
            await asyncio.gather(relay(reader, up_writer, False), relay(up_reader, writer, True))

        async def main():
            self.server = await asyncio.start_server(client, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(main()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        started.wait(5)
        self.host = "127.0.0.1"

    def stop(self) -> None:
        import asyncio

        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def key_lookups(sidecar: launcher.Sidecar) -> int:
    """How many key lookups the sidecar has answered."""
    return sidecar.proc.log().count('"route":"/internal/v1/keys/{hash}"')


def test_concurrent_first_requests_of_a_key_share_one_lookup_per_worker(sidecar, anthropic_mock):
    """A slow sidecar (each answer held 400 ms): 24 requests of a new key arrive together on
    two workers; each worker asks once, and every request is admitted."""
    link = SlowLink(sidecar.host, sidecar.port, 0.4)
    gateway = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=link,
                      virtual_keys={"timeout_ms": 5000}, concurrency=2)
    try:
        key = new_key(gateway)
        before = key_lookups(sidecar)
        barrier = threading.Barrier(24)

        def one(_):
            with httpx.Client(base_url=gateway.url, timeout=30) as client:
                barrier.wait()
                return client.post("/v1/chat/completions", json={"model": "claude", **HI},
                                   headers={"Authorization": f"Bearer {key}"}).status_code

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(one, range(24)))
        assert statuses == [200] * 24
        lookups = key_lookups(sidecar) - before
        assert 1 <= lookups <= 2, f"{lookups} lookups for 24 concurrent requests on 2 workers"
    finally:
        gateway.stop()
        link.stop()


def test_requests_that_joined_a_lookup_whose_client_left_are_still_answered(sidecar, anthropic_mock):
    """The request leading a key lookup goes away (its client hangs up; Envoy cancels its
    call): the requests that joined it ask again from the root context's tick, and the
    answer reaches them through it."""
    link = SlowLink(sidecar.host, sidecar.port, 0.8)
    gateway = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=link,
                      virtual_keys={"timeout_ms": 5000}, concurrency=1)
    try:
        key = new_key(gateway)
        auth = {"Authorization": f"Bearer {key}"}
        before = key_lookups(sidecar)

        def leader():
            try:
                httpx.post(gateway.url + "/v1/chat/completions", json={"model": "claude", **HI}, headers=auth, timeout=0.3)
            except httpx.TimeoutException:
                return "left"
            return "answered"

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(leader)
            time.sleep(0.1)
            joined = [pool.submit(lambda: httpx.post(gateway.url + "/v1/chat/completions", json={"model": "claude", **HI},
                                                      headers=auth, timeout=20).status_code) for _ in range(5)]
            assert first.result() == "left"
            assert [j.result() for j in joined] == [200] * 5
        assert key_lookups(sidecar) - before == 2, "the leader's lookup, and one more by a request that joined it"
    finally:
        gateway.stop()
        link.stop()


def wait_for(check, timeout: float = 2.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def ask_as(gw: Gateway, key: str, user: str, model: str = "claude", header: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **({"x-litellm-end-user-id": user} if header else {})}
    body = {"model": model, **HI, **({} if header else {"user": user})}
    return gw.chat(body, headers=headers)


def test_end_users_are_enforced_and_admin_changes_reach_them_within_2_s(gw):
    key = new_key(gw)
    user = f"eu-{time.monotonic_ns()}"
    assert admin(gw, "/customer/new", {"user_id": user, "rpm_limit": 2, "models": ["claude"]}).status_code == 200
    # The feed brings the new end user within a poll or two.
    wait_for(lambda: ask_as(gw, key, user, "claude-2").status_code == 403, what="the end user's model list")
    r = ask_as(gw, key, user, "claude-2")
    assert openai_error(r)["code"] == "customer_model_access_denied"
    early_in_a_minute()
    statuses = [ask_as(gw, key, user).status_code for _ in range(3)]
    assert statuses.count(200) <= 2 and statuses[-1] == 429, statuses
    err = openai_error(ask_as(gw, key, user, header=True))
    assert err["code"] == "rate_limit_exceeded" and "end_user" in err["message"]
    # Blocked: LiteLLM's 400, on every worker within 2 s.
    assert admin(gw, "/customer/block", {"user_ids": [user]}).status_code == 200
    wait_for(lambda: ask_as(gw, key, user).status_code == 400, what="the block")
    r = ask_as(gw, key, user)
    assert openai_error(r)["message"] == f"User blocked from making LLM API Calls. User={user}"
    # Deleted: it restricts nothing any more.
    assert admin(gw, "/customer/delete", {"user_ids": [user]}).status_code == 200
    wait_for(lambda: ask_as(gw, key, user).status_code == 200, what="the deletion")
    # An end user nobody configured costs nothing and is let through.
    assert ask_as(gw, key, f"unknown-{time.monotonic_ns()}").status_code == 200


def test_a_new_gateway_loads_the_end_users_before_it_admits_them(sidecar, anthropic_mock, gw):
    user = f"eu-load-{time.monotonic_ns()}"
    assert admin(gw, "/customer/new", {"user_id": user}).status_code == 200
    assert admin(gw, "/customer/block", {"user_ids": [user]}).status_code == 200
    key = new_key(gw)
    fresh = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=sidecar,
                    virtual_keys={}, concurrency=2)
    try:
        # The very first requests wait for the loading, then are refused.
        statuses = [ask_as(fresh, key, user).status_code for _ in range(4)]
        assert statuses == [400] * 4
    finally:
        fresh.stop()


def early_in_a_minute() -> None:
    """Limits count wall-clock minutes: start a burst where it cannot straddle two."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)


def test_a_slot_leaked_by_a_trapped_vm_frees_itself_at_its_deadline(sidecar, anthropic_mock, monkeypatch):
    """A VM that traps after admission never gives its request's slot back (its `on_log`
    never runs); the slot carries a deadline (`parallel_slot_ttl`), after which it is free."""
    import gatewayconf
    trap_wasm = gatewayconf.ROOT / "target" / "trap-test" / "wasm32-wasip1" / "release" / "switchyard.wasm"
    assert trap_wasm.exists(), "build it with `make build-trap-test` (make test does)"
    shipped = gatewayconf.set_wasm_path
    monkeypatch.setattr(gatewayconf, "set_wasm_path", lambda doc, wasm=None: shipped(doc, trap_wasm))
    gateway = Gateway(groups(anthropic_mock), env={**ENV, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}, sidecar=sidecar,
                      virtual_keys={"parallel_slot_ttl": 6}, concurrency=1)
    try:
        key = new_key(gateway, max_parallel_requests=1)
        assert ask(gateway, key).status_code == 200
        trapped = gateway.chat({"model": "claude", **HI},
                               headers={"Authorization": f"Bearer {key}", "x-switchyard-test-trap": "after-admission"})
        assert trapped.status_code == 503, trapped.text
        # The VM comes back; the slot is still held (shared data outlives the VM).
        deadline = time.monotonic() + 10
        while (r := ask(gateway, key)).status_code == 503 and openai_error(r)["code"] == "gateway_recovering":
            assert time.monotonic() < deadline, "the VM was not reloaded"
            time.sleep(0.05)
        assert r.status_code == 429, r.text
        assert openai_error(r)["message"].startswith("Rate limit exceeded for api_key. Limit type: max_parallel")
        deadline = time.monotonic() + 15
        while (r := ask(gateway, key)).status_code == 429:
            assert time.monotonic() < deadline, "the leaked slot never freed itself"
            time.sleep(0.2)
        assert r.status_code == 200, r.text
    finally:
        gateway.stop()


@pytest.mark.parametrize("entity", ["team", "user", "model_per_key", "tokens"])
def test_every_limited_entity_refuses_with_its_exact_answer(gw, entity):
    """The team's, the user's and the key's per-model RPM, and the key's TPM: each refuses
    through Envoy with LiteLLM's message naming the entity, and its headers."""
    early_in_a_minute()
    if entity == "team":
        team = admin(gw, "/team/new", {"team_alias": f"t-{time.monotonic_ns()}", "rpm_limit": 2}).json()["team_id"]
        key = new_key(gw, team_id=team)
    elif entity == "user":
        user = f"u-{time.monotonic_ns()}"
        assert admin(gw, "/user/new", {"user_id": user, "rpm_limit": 2, "auto_create_key": False}).status_code == 200
        key = new_key(gw, user_id=user)
    elif entity == "model_per_key":
        key = new_key(gw, model_rpm_limit={"claude": 2})
        assert all(ask(gw, key, "claude-2").status_code == 200 for _ in range(3)), "other models are not limited"
    else:
        key = new_key(gw, tpm_limit=20)
    if entity == "tokens":
        # Each answer's usage is a few tokens: ask until the minute's 20 are spent.
        responses = []
        while not responses or responses[-1].status_code == 200:
            assert len(responses) < 40, "a 20-token limit never refused"
            responses.append(ask(gw, key))
        spent = sum(r.json()["usage"]["total_tokens"] for r in responses[:-1])
        assert 0 < spent <= 20 + responses[0].json()["usage"]["total_tokens"], spent
    else:
        responses = [ask(gw, key) for _ in range(4)]
        assert [r.status_code for r in responses] == [200, 200, 429, 429], [r.text for r in responses]
    refused = responses[-1]
    err = openai_error(refused)
    limit_type, limit, header = ("tokens", 20, "tokens") if entity == "tokens" else ("requests", 2, "requests")
    name = "api_key" if entity == "tokens" else entity
    assert (err["code"], err["type"]) == ("rate_limit_exceeded", limit_type)
    assert err["message"].startswith(f"Rate limit exceeded for {name}. Limit type: {limit_type}. Current limit: {limit}")
    assert refused.headers[f"x-ratelimit-limit-{header}"] == str(limit)
    assert refused.headers[f"x-ratelimit-remaining-{header}"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers[f"x-ratelimit-reset-{header}"] == refused.headers["retry-after"] + "s"
    if entity == "tokens":
        assert responses[0].headers["x-ratelimit-limit-tokens"] == "20"
