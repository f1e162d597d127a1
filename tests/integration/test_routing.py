"""Routing that stays up, through the real Envoy + switchyard.wasm: load balancing,
fallback chains across providers, retries, cooldowns and timeouts, with strict mock
providers failing in every way a real one does.

The gateway here has its own model groups (timeouts in seconds, backoff in
milliseconds, so the suite stays fast):

    chain     Anthropic (priority 0) -> OpenAI (1) -> Gemini (2); no cooldown, so each
              request starts at Anthropic
    solo      one Anthropic deployment: retries land on it again
    dead-end  a port with nothing listening (0) -> OpenAI (1)
    cooled    Anthropic (0) -> OpenAI (1); 2 failures in a row cool Anthropic for 1 s
    cooled-429  the same, for rate limits
    weighted / random / least / sticky  three (two for least) OpenAI deployments
    small -> large  a 300-token context window falling back to a 5,000-token one
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from gatewayconf import Deployment, ModelGroup
from harness import Gateway, closed_port, openai_error
from mockproviders import Hang, Reply, Reset, ResetMidBody, StallAfterHeaders, StreamEvents
from mockproviders.anthropic import AnthropicMock, anthropic_error_body, message_events, text_block
from mockproviders.gemini import GeminiMock
from mockproviders.openai import OpenAIMock, openai_error_body

ANTHROPIC_KEY = "sk-ant-routing-0123456789"
OPENAI_KEY = "sk-openai-routing-0123456789"
GEMINI_KEY = "AIzaSy-routing-0123456789"
KEYS = {"R_ANTHROPIC_KEY": ANTHROPIC_KEY, "R_OPENAI_KEY": OPENAI_KEY, "R_GEMINI_KEY": GEMINI_KEY}

FAST_RETRIES = {"retry_policy": {"per_try_timeout": "1s", "retry_back_off": {"base_interval": "0.01s",
                                                                            "max_interval": "0.05s"}}}
FAST_STREAM_RETRIES = {"retry_policy": {"per_try_idle_timeout": "1s"}}
NO_COOLDOWN = {"outlier_detection": None}


def cooldown(after: int) -> dict:
    return {"outlier_detection": {"consecutive_5xx": after, "interval": "0.2s", "base_ejection_time": "1s",
                                  "max_ejection_time": "1s"}}


@pytest.fixture(scope="module")
def mocks():
    made = {"anthropic": AnthropicMock(api_key=ANTHROPIC_KEY), "openai": OpenAIMock(api_key=OPENAI_KEY),
            "gemini": GeminiMock(api_key=GEMINI_KEY), "solo": AnthropicMock(api_key=ANTHROPIC_KEY),
            "cooled": AnthropicMock(api_key=ANTHROPIC_KEY),
            **{f"lb{i}": OpenAIMock(api_key=OPENAI_KEY) for i in range(3)}}
    yield made
    for mock in made.values():
        mock.close()


@pytest.fixture(autouse=True)
def fresh(mocks):
    for mock in mocks.values():
        mock.reset()


def anthropic(mock, **kw) -> Deployment:
    return Deployment("anthropic", mock.port, model="claude-sonnet-4-5", api_key_env="R_ANTHROPIC_KEY", **kw)


def gpt(mock, model: str = "gpt-4o-mini", **kw) -> Deployment:
    return Deployment("openai", mock.port, model=model, api_key_env="R_OPENAI_KEY", api_base_path="/v1", **kw)


def gemini(mock, **kw) -> Deployment:
    return Deployment("gemini", mock.port, model="gemini-2.5-flash", api_key_env="R_GEMINI_KEY", **kw)


# "Least busy": the deployment with the fewest requests in flight, over all of them
# (Envoy's default for least-request compares two at random).
LEAST_BUSY = {"load_balancing_policy": {"policies": [{"typed_extension_config": {
    "name": "envoy.load_balancing_policies.least_request",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
                     "selection_method": "FULL_SCAN"}}}]}}


def lb_group(name: str, mocks: dict, policy: str | dict, weights=(None, None, None), count: int = 3,
             route: dict | None = None) -> ModelGroup:
    deployments = [gpt(mocks[f"lb{i}"], model=f"deployment-{i}", weight=weights[i]) for i in range(count)]
    balancing = {"lb_policy": policy} if isinstance(policy, str) else policy
    return ModelGroup(name, deployments, route={**FAST_RETRIES, **(route or {})}, cluster={**balancing, **NO_COOLDOWN})


@pytest.fixture(scope="module")
def gw(mocks):
    m = mocks
    groups = [
        ModelGroup("chain", [anthropic(m["anthropic"]), gpt(m["openai"], priority=1), gemini(m["gemini"], priority=2)],
                   route=FAST_RETRIES, stream_route=FAST_STREAM_RETRIES, cluster=NO_COOLDOWN),
        ModelGroup("solo", [anthropic(m["solo"])], route=FAST_RETRIES, cluster=NO_COOLDOWN),
        ModelGroup("dead-end", [Deployment("anthropic", closed_port(), model="x", api_key_env="R_ANTHROPIC_KEY"),
                                gpt(m["openai"], priority=1)], route=FAST_RETRIES, cluster=NO_COOLDOWN),
        ModelGroup("cooled", [anthropic(m["cooled"]), gpt(m["openai"], priority=1)],
                   route=FAST_RETRIES, cluster=cooldown(2)),
        ModelGroup("cooled-429", [anthropic(m["cooled"]), gpt(m["openai"], priority=1)],
                   route=FAST_RETRIES, cluster=cooldown(2)),
        lb_group("weighted", m, "ROUND_ROBIN", weights=(1, 3, 6)),
        lb_group("random", m, "RANDOM"),
        lb_group("least", m, LEAST_BUSY, count=2, route={"retry_policy": {"per_try_timeout": "5s"}}),
        lb_group("sticky", m, "RING_HASH", route={"hash_policy": [{"header": {"header_name": "x-session-id"}}]}),
        ModelGroup("small", [anthropic(m["solo"])], route=FAST_RETRIES, cluster=NO_COOLDOWN,
                   model={"context_window": 300, "context_window_fallback": "large"}),
        ModelGroup("large", [gemini(m["gemini"])], route=FAST_RETRIES, cluster=NO_COOLDOWN,
                   model={"context_window": 5000}),
    ]
    # Stream stalls are Envoy's to detect here (1 s idle timeouts): the filter's own
    # mid-stream watchdog has its suite, test_stream_faults.py.
    gateway = Gateway(groups, env=KEYS, upstream_config={"stream_stall_timeout": 0})
    yield gateway
    gateway.stop()


def ask(gw, model: str, content: str = "hi", **kw) -> httpx.Response:
    return gw.chat({"model": model, "messages": [{"role": "user", "content": content}]}, **kw)


def answered_by(r: httpx.Response) -> tuple[str, str, int]:
    return r.headers["x-switchyard-provider"], r.headers["x-switchyard-model"], int(r.headers["x-switchyard-attempts"])


def valid_requests(mock) -> int:
    """How many requests `mock` got, after checking it refused none of them: every
    attempt must have been translated correctly for its provider."""
    assert mock.rejections == [], mock.rejections
    return len(mock.requests)


def overloaded() -> Reply:
    return Reply(529, anthropic_error_body("overloaded_error", "Overloaded"))


def stream_chunks(gw, model: str) -> tuple[httpx.Response, list]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with gw.client.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    return r, lines


# --- fallbacks ----------------------------------------------------------------------------------


def test_a_fallback_chain_crosses_providers_translating_every_attempt(gw, mocks):
    mocks["anthropic"].enqueue(overloaded())
    mocks["openai"].enqueue(Reply(500, openai_error_body("The server had an error", "server_error")))
    r = ask(gw, "chain")
    assert r.status_code == 200, r.text
    assert answered_by(r) == ("gemini", "gemini-2.5-flash", 3)
    assert r.json()["object"] == "chat.completion"
    assert [valid_requests(mocks[p]) for p in ("anthropic", "openai", "gemini")] == [1, 1, 1]
    assert mocks["anthropic"].requests[0].path == "/v1/messages"
    assert mocks["openai"].requests[0].path == "/v1/chat/completions"
    assert mocks["gemini"].requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


FAILURES = {
    "429 with retry-after": Reply(429, anthropic_error_body("rate_limit_error", "slow down"), headers={"retry-after": "1"}),
    "500": Reply(500, anthropic_error_body("api_error", "Internal server error")),
    "503": Reply(503, body=b"upstream connect error", headers={"content-type": "text/plain"}),
    "529 overloaded": overloaded(),
    "hang past the per-try timeout": Hang(10),
    "reset before a byte": Reset(),
    "reset mid-body": ResetMidBody(),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_each_failure_of_the_primary_is_answered_by_the_fallback(gw, mocks, failure):
    mocks["anthropic"].enqueue(failure)
    started = time.monotonic()
    r = ask(gw, "chain")
    assert r.status_code == 200, r.text
    assert answered_by(r) == ("openai", "gpt-4o-mini", 2)
    assert time.monotonic() - started < 3, "the per-try timeout (1 s) bounds a hanging provider"
    assert valid_requests(mocks["anthropic"]) == 1 and valid_requests(mocks["openai"]) == 1
    assert valid_requests(mocks["gemini"]) == 0


def test_a_provider_that_cannot_be_reached_is_skipped(gw, mocks):
    r = ask(gw, "dead-end")
    assert r.status_code == 200, r.text
    assert answered_by(r) == ("openai", "gpt-4o-mini", 2)


@pytest.mark.parametrize("status,kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                         (403, "permission_error"), (404, "not_found_error")])
def test_client_errors_are_never_retried(gw, mocks, status, kind):
    mocks["anthropic"].enqueue(Reply(status, anthropic_error_body(kind, f"no ({status})")))
    r = ask(gw, "chain")
    assert r.status_code == status
    openai_error(r)
    assert answered_by(r)[::2] == ("anthropic", 1)
    assert valid_requests(mocks["openai"]) == 0


# --- streams ------------------------------------------------------------------------------------


STREAM_FAILURES = {
    "529 before the stream": overloaded(),
    "stall before any byte": Hang(10),
    "stall after the headers, before the first event": StallAfterHeaders(10),
    "reset before a byte": Reset(),
}


@pytest.mark.parametrize("failure", STREAM_FAILURES.values(), ids=STREAM_FAILURES.keys())
def test_a_stream_that_fails_before_its_first_byte_falls_back(gw, mocks, failure):
    mocks["anthropic"].enqueue(failure)
    started = time.monotonic()
    r, lines = stream_chunks(gw, "chain")
    assert r.status_code == 200
    assert r.headers["x-switchyard-provider"] == "openai" and r.headers["x-switchyard-attempts"] == "2"
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert time.monotonic() - started < 3
    assert valid_requests(mocks["openai"]) == 1


def test_a_stream_cut_after_its_first_byte_is_not_retried_and_never_hangs(gw, mocks):
    events = message_events(AnthropicMock.message(text_block("Hello there, this stream will be cut")))
    mocks["anthropic"].enqueue(StreamEvents(events[:3], then_reset=True))
    started = time.monotonic()
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        body = {"model": "chain", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with gw.client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                received.append(line)
    assert any(line.startswith("data: {") for line in received), "the first bytes reached the client"
    assert "data: [DONE]" not in received, "a cut stream must not look complete"
    assert time.monotonic() - started < 3
    assert valid_requests(mocks["openai"]) == 0, "nothing is retried once the client has bytes"


# --- no fallback left ---------------------------------------------------------------------------


def test_retries_honour_the_providers_retry_after(gw, mocks):
    mocks["solo"].enqueue(Reply(429, anthropic_error_body("rate_limit_error", "slow down"), headers={"retry-after": "1"}))
    started = time.monotonic()
    r = ask(gw, "solo")
    waited = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert answered_by(r)[::2] == ("anthropic", 2)
    assert waited >= 1.0, f"retried after {waited:.2f}s despite retry-after: 1"
    # Without retry-after, the backoff is the group's (milliseconds here).
    mocks["solo"].enqueue(Reply(429, anthropic_error_body("rate_limit_error", "slow down")))
    started = time.monotonic()
    assert ask(gw, "solo").status_code == 200
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("failure,status,code", [
    (Reply(500, anthropic_error_body("api_error", "Internal server error")), 500, None),
    (overloaded(), 503, "overloaded"),
    (Reply(429, anthropic_error_body("rate_limit_error", "slow down"), headers={"retry-after": "0"}), 429, "rate_limit_exceeded"),
    (Hang(10), 504, "timeout"),
], ids=["500", "529", "429", "hang"])
def test_when_every_attempt_fails_the_client_gets_a_clean_error(gw, mocks, failure, status, code):
    mocks["solo"].always(failure)
    r = ask(gw, "solo")
    assert r.status_code == status, r.text
    error = openai_error(r)
    assert error["code"] == code
    assert len(mocks["solo"].requests) == 3, "the first attempt and two retries"
    if status == 429:
        assert r.headers["x-switchyard-attempts"] == "3"
        assert r.headers.get("retry-after") == "0"
        assert "x-switchyard-status" not in r.headers
    mocks["solo"].always(None)
    assert ask(gw, "solo").status_code == 200, "the gateway keeps serving"


@pytest.mark.parametrize("failure", [Reply(503, body=b"down", headers={"content-type": "text/plain"}), Hang(30)],
                         ids=["503", "hang"])
def test_200_concurrent_requests_during_an_outage_all_complete(gw, mocks, failure):
    mocks["anthropic"].always(failure)

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=gw.url, timeout=20, limits=limits) as client:
            body = {"model": "chain", "messages": [{"role": "user", "content": "hi"}]}
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(200)))

    started = time.monotonic()
    responses = asyncio.run(run())
    assert time.monotonic() - started < 15
    assert [r.status_code for r in responses] == [200] * 200, [r.text for r in responses if r.status_code != 200][:3]
    # Every answer comes from a fallback. Mostly OpenAI's; under 200 concurrent requests
    # on two cores the Python mock may take longer than the 1 s per-attempt timeout for
    # some, which then move on to Gemini, as they should.
    providers = [answered_by(r)[0] for r in responses]
    assert set(providers) <= {"openai", "gemini"} and providers.count("openai") >= 100, providers
    assert len({r.json()["id"] for r in responses}) == 200, "every answer is its own"
    assert valid_requests(mocks["openai"]) == 200


# --- cooldown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("group,failure", [
    ("cooled", Reply(500, anthropic_error_body("api_error", "Internal server error"))),
    ("cooled-429", Reply(429, anthropic_error_body("rate_limit_error", "slow down"))),
], ids=["5xx", "429"])
def test_a_failing_deployment_cools_down_and_comes_back(gw, mocks, group, failure):
    ejected = f"cluster.model.{group}.outlier_detection.ejections_enforced_total"
    before = gw.stats(ejected).get(ejected, 0)
    mocks["cooled"].always(failure)
    for _ in range(2):
        r = ask(gw, group)
        assert answered_by(r) == ("openai", "gpt-4o-mini", 2), r.text
    mocks["cooled"].always(None)
    assert gw.stats(ejected).get(ejected, 0) == before + 1
    healthy = f"cluster.model.{group}.endpoint.127.0.0.1_{mocks['cooled'].port}.healthy"
    assert gw.stats(healthy)[healthy] == 0, "the deployment's own gauge shows its cooldown"
    # Cooling down: the fallback answers at once, without trying the primary.
    seen = len(mocks["cooled"].requests)
    for _ in range(3):
        r = ask(gw, group)
        assert answered_by(r) == ("openai", "gpt-4o-mini", 1)
    assert len(mocks["cooled"].requests) == seen
    # And back after its cooldown (1 s, checked every 0.2 s).
    deadline = time.monotonic() + 5
    while answered_by(ask(gw, group))[0] != "anthropic":
        assert time.monotonic() < deadline, "the deployment never came back"
        time.sleep(0.1)
    assert gw.stats(healthy)[healthy] == 1
    assert gw.log_records(lambda e: e.get("action") == "EJECT" and e.get("cluster_name") == f"model.{group}")


# --- load balancing -----------------------------------------------------------------------------


def deployments_of(responses) -> list[str]:
    return [r.headers["x-switchyard-model"] for r in responses]


def test_weighted_round_robin_shares_follow_the_weights(gw):
    served = deployments_of(ask(gw, "weighted") for _ in range(400))
    shares = [served.count(f"deployment-{i}") / len(served) for i in range(3)]
    for share, expected in zip(shares, (0.1, 0.3, 0.6)):
        assert abs(share - expected) <= 0.03, shares


def test_random_spreads_over_every_deployment(gw):
    served = deployments_of(ask(gw, "random") for _ in range(300))
    shares = [served.count(f"deployment-{i}") / len(served) for i in range(3)]
    assert all(0.2 <= s <= 0.47 for s in shares), shares


def test_least_busy_keeps_new_requests_off_the_deployment_with_requests_in_flight(gw, mocks):
    from concurrent.futures import ThreadPoolExecutor

    from mockproviders import Delay

    slow, fast = mocks["lb0"], mocks["lb1"]
    slow.always(Delay(3.0))
    with ThreadPoolExecutor(20) as pool:
        futures = []
        for _ in range(20):
            futures.append(pool.submit(ask, gw, "least"))
            time.sleep(0.1)  # the fast deployment has finished the previous one by now
        assert all(f.result().status_code == 200 for f in futures)
    # Round robin or random would send the slow one about half; least-busy sends it a
    # request only while it has none in flight.
    assert len(slow.requests) <= 3 and len(fast.requests) >= 17, (len(slow.requests), len(fast.requests))


def test_sticky_sessions_keep_to_one_deployment(gw):
    homes = {}
    for session in range(12):
        served = set(deployments_of(ask(gw, "sticky", headers={"x-session-id": f"conversation-{session}"})
                                    for _ in range(5)))
        assert len(served) == 1, (session, served)
        homes[session] = served.pop()
    assert len(set(homes.values())) >= 2, f"sessions should spread over deployments: {homes}"


# --- context window -----------------------------------------------------------------------------


def test_a_request_too_large_for_its_model_goes_to_the_larger_group(gw, mocks):
    r = ask(gw, "small", "a short question")
    assert answered_by(r)[0] == "anthropic" and "x-switchyard-context-fallback" not in r.headers
    r = ask(gw, "small", "word " * 1000)
    assert r.status_code == 200, r.text
    assert answered_by(r) == ("gemini", "gemini-2.5-flash", 1)
    assert r.headers["x-switchyard-context-fallback"] == "large"
    assert valid_requests(mocks["solo"]) == 1, "the small model never saw the large request"
    r = ask(gw, "small", "word " * 10_000)
    assert r.status_code == 400
    assert openai_error(r)["code"] == "context_length_exceeded"
    assert gw.log_records(lambda e: e.get("model") == "large" and e.get("context_fallback") == "large")


# --- visibility ---------------------------------------------------------------------------------


def test_fallbacks_show_in_stats_by_group_and_provider_and_in_the_access_log(gw, mocks):
    mocks["anthropic"].enqueue(overloaded())
    mocks["openai"].enqueue(Reply(500, openai_error_body("boom", "server_error")))
    r = ask(gw, "chain")
    assert r.status_code == 200
    stats = gw.stats("wasmcustom.switchyard")
    assert stats.get("wasmcustom.switchyard.fallbacks.openai.chain", 0) >= 1, stats
    assert stats.get("wasmcustom.switchyard.fallbacks.gemini.chain", 0) >= 1, stats
    assert stats.get("wasmcustom.switchyard.attempt_errors.anthropic.529.chain", 0) >= 1, stats
    prometheus = httpx.get(gw.admin_url + "/stats/prometheus", timeout=5).text
    assert any('switchyard_provider="gemini"' in line and 'switchyard_group="chain"' in line
               for line in prometheus.splitlines() if line.startswith("switchyard_fallbacks{")), \
        [line for line in prometheus.splitlines() if "switchyard_fallbacks" in line]
    retries = gw.stats("cluster.model.chain.upstream_rq_retry")
    assert retries.get("cluster.model.chain.upstream_rq_retry", 0) >= 2
    access = gw.log_records(lambda e: e.get("model") == "chain" and e.get("attempts") == 3)
    assert any(e["provider"] == "gemini" and e["provider_model"] == "gemini-2.5-flash" for e in access), access


def test_openai_sdk_clients_get_the_fallbacks_answers(gw, mocks):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    mocks["anthropic"].enqueue(overloaded())
    raw = client.chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-switchyard-provider"] == "openai"
    assert raw.parse().choices[0].message.content
    mocks["anthropic"].enqueue(Reply(503, anthropic_error_body("api_error", "unavailable")))
    mocks["openai"].enqueue(Reply(500, openai_error_body("boom", "server_error")))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="chain", stream=True, messages=[{"role": "user", "content": "hi"}]) if chunk.choices)
    assert text
    assert valid_requests(mocks["gemini"]) == 1
