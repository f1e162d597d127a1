"""Window grants (`POST /internal/v1/grants`, contract: sidecar/README.md): several
sidecars on one database never hand out more than a limit between them, grants shrink as
the minute fills, and bad asks get a 400 naming the field."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sidecar_harness import Sidecar, error, uid


def minute() -> int:
    return int(time.time()) // 60


def ask(kind="api_key", id=None, rpm=None, tpm=None, need_requests=0, want_requests=0, need_tokens=0, want_tokens=0):
    return {"kind": kind, "id": id or uid("e"), "rpm": rpm, "tpm": tpm, "need_requests": need_requests,
            "want_requests": want_requests, "need_tokens": need_tokens, "want_tokens": want_tokens}


def grant(sidecar, window, *asks):
    r = sidecar.internal.post("/internal/v1/grants", json={"window": window, "asks": list(asks)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window"] == window
    return body["grants"]


def test_grants_shrink_as_the_minute_fills_and_stop_at_the_limit(sidecar):
    w, key = minute(), uid("k")
    got = [grant(sidecar, w, ask(id=key, rpm=100, need_requests=1, want_requests=10))[0] for _ in range(20)]
    requests = [g["requests"] for g in got]
    assert requests[:8] == [10] * 8
    assert sum(requests) == 100 and requests[-1] == 0
    assert got[-1]["granted_requests"] == 100
    # A partly unlimited ask: nothing granted for the unlimited side.
    g = grant(sidecar, w, ask(id=uid("k"), tpm=1000, need_requests=1, want_requests=5, need_tokens=300, want_tokens=100))[0]
    assert g == {"requests": 0, "tokens": 300, "granted_requests": 0, "granted_tokens": 300}
    # Another window of the same entity starts from zero.
    assert grant(sidecar, w + 1, ask(id=key, rpm=100, need_requests=1, want_requests=10))[0]["requests"] == 10


def test_several_asks_answer_in_order(sidecar):
    w = minute()
    team = uid("t")
    a, b = ask("team", team, rpm=3, need_requests=1, want_requests=1), ask("api_key", uid("k"), rpm=50, need_requests=1, want_requests=5)
    first = grant(sidecar, w, a, b)
    assert [g["requests"] for g in first] == [1, 5]
    for _ in range(2):
        grant(sidecar, w, a)
    assert [g["requests"] for g in grant(sidecar, w, a, b)] == [0, 5]


def test_two_sidecars_on_one_database_never_grant_more_than_the_limit(sidecar, database_url, workdir):
    """Two sidecar processes on one database (PostgreSQL: row locks; SQLite: one writer at a
    time), 16 callers each, asking for one request at a time: exactly the limit is handed out."""
    other = Sidecar(database_url, workdir)
    try:
        w, key, team, limit = minute(), uid("k"), uid("t"), 150

        def one(i):
            s = sidecar if i % 2 else other
            return grant(s, w, ask("api_key", key, rpm=limit, tpm=100_000, need_requests=1, want_requests=1,
                                   need_tokens=7, want_tokens=7),
                         ask("team", team, rpm=limit * 2, need_requests=1, want_requests=2))

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, range(400)))
        assert sum(r[0]["requests"] for r in results) == limit
        assert sum(r[0]["tokens"] for r in results) == 400 * 7
        assert sum(r[1]["requests"] for r in results) == limit * 2
        assert max(r[0]["granted_requests"] for r in results) == limit
    finally:
        other.stop()


def test_bad_asks_are_refused_with_the_field(sidecar):
    w = minute()
    post = lambda body: sidecar.internal.post("/internal/v1/grants", json=body)  # noqa: E731
    error(400, "clock skew", "window")(post({"window": w - 60, "asks": []}))
    error(400, "kind must be one of", "kind")(post({"window": w, "asks": [ask(kind="galaxy")]}))
    error(400, "id must be", "id")(post({"window": w, "asks": [ask(id="x" * 600)]}))
    error(400, "must not be negative", "asks")(post({"window": w, "asks": [ask(rpm=-1)]}))
    error(400, "at most 16", "asks")(post({"window": w, "asks": [ask() for _ in range(17)]}))
    error(400, "malformed", None)(post({"window": w, "asks": [{**ask(), "extra": 1}]}))
    error(400, "malformed", None)(post({"window": "now", "asks": []}))
    # The internal secret guards it like every internal path.
    import httpx
    error(401, "x-switchyard-internal", None, "auth_error")(httpx.post(sidecar.url + "/internal/v1/grants", json={"window": w, "asks": []}))
