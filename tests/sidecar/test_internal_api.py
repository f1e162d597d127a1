"""The internal API the Envoy filter reads (contract: sidecar/README.md): exact records,
the change feed, and its guard (loopback + shared secret)."""

from __future__ import annotations

import httpx

from sidecar_harness import SECRET, error, sha, uid


def test_internal_api_needs_the_secret(sidecar):
    url = sidecar.url + "/internal/v1/changes"
    error(401, "x-switchyard-internal", None, "auth_error")(httpx.get(url))
    error(401, "x-switchyard-internal", None, "auth_error")(httpx.get(url, headers={"x-switchyard-internal": SECRET + "x"}))
    # The master key is not the internal secret.
    error(401, "x-switchyard-internal", None, "auth_error")(sidecar.client.get("/internal/v1/changes"))
    assert sidecar.internal.get("/internal/v1/changes").status_code == 200


def test_key_record_has_everything_the_filter_enforces(sidecar):
    team, user = uid("t"), uid("u")
    t = sidecar.post("/team/new", {"team_id": team, "team_alias": uid("ta"), "models": ["gpt-4o", "claude"], "rpm_limit": 100,
                                   "tpm_limit": 9000, "max_parallel_requests": 8, "model_rpm_limit": {"claude": 3}}).json()
    sidecar.post("/user/new", {"user_id": user, "rpm_limit": 50, "tpm_limit": 5000, "max_parallel_requests": 4, "auto_create_key": False})
    k = sidecar.post("/key/generate", {"team_id": team, "user_id": user, "key_alias": uid("ka"), "models": ["gpt-4o"], "duration": "1h",
                                       "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 2,
                                       "model_rpm_limit": {"gpt-4o": 5}, "model_tpm_limit": {"gpt-4o": 500}, "aliases": {"fast": "gpt-4o"}}).json()
    r = sidecar.internal.get(f"/internal/v1/keys/{k['token']}")
    assert r.status_code == 200, r.text
    rec = r.json()
    expires_at = rec.pop("expires_at")
    version = rec.pop("version")
    assert rec.pop("budgets") == []  # no budget set (test_budgets.py)
    assert rec == {
        "token": sha(k["key"]), "key_alias": k["key_alias"], "key_name": k["key_name"], "team_id": team, "user_id": user,
        "models": ["gpt-4o"], "blocked": False, "aliases": {"fast": "gpt-4o"},
        "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 2, "model_rpm_limit": {"gpt-4o": 5}, "model_tpm_limit": {"gpt-4o": 500},
        "team": {"team_id": team, "team_alias": t["team_alias"], "models": ["gpt-4o", "claude"], "blocked": False, "rpm_limit": 100,
                 "tpm_limit": 9000, "max_parallel_requests": 8, "model_rpm_limit": {"claude": 3}, "model_tpm_limit": None},
        "user": {"user_id": user, "models": [], "rpm_limit": 50, "tpm_limit": 5000, "max_parallel_requests": 4,
                 "model_rpm_limit": None, "model_tpm_limit": None},
    }
    assert isinstance(expires_at, int) and isinstance(version, int) and version > 0
    # A team change is a change of each of its keys: new version, listed in the feed.
    before = sidecar.internal.get("/internal/v1/changes", params={"since": version}).json()
    assert before["changes"] == [] and before["seq"] == before["latest"] >= version
    sidecar.post("/team/block", {"team_id": team})
    after = sidecar.internal.get("/internal/v1/changes", params={"since": before["seq"]}).json()
    assert {(c["kind"], c["id"]) for c in after["changes"]} == {("team", team), ("key", k["token"])}
    assert len({c["seq"] for c in after["changes"]}) == 1 and after["seq"] == after["changes"][0]["seq"]
    rec2 = sidecar.internal.get(f"/internal/v1/keys/{k['token']}").json()
    assert rec2["team"]["blocked"] is True and rec2["version"] == after["seq"]
    # Unknown and malformed hashes.
    error(404, "no such key", "hash", "not_found_error")(sidecar.internal.get(f"/internal/v1/keys/{'0' * 64}"))
    error(400, "64 lowercase hex", "hash")(sidecar.internal.get("/internal/v1/keys/sk-plaintext"))


def test_change_feed_is_ordered_complete_and_paged(sidecar):
    start = sidecar.internal.get("/internal/v1/changes").json()["seq"]
    keys = [sidecar.post("/key/generate", {}).json()["token"] for _ in range(7)]
    seen, since, pages = [], start, 0
    while True:
        page = sidecar.internal.get("/internal/v1/changes", params={"since": since, "limit": 3}).json()
        pages += 1
        seen += page["changes"]
        since = page["seq"]
        if not page["more"]:
            break
    assert pages == 3 and [c["id"] for c in seen] == keys and [c["kind"] for c in seen] == ["key"] * 7
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 7 and since == seqs[-1]
    # A `since` beyond the store: the caller must drop its cache and restart from `seq`.
    ahead = sidecar.internal.get("/internal/v1/changes", params={"since": since + 1000}).json()
    assert ahead["reset"] is True and ahead["seq"] == since and ahead["changes"] == []
    error(400, "since must be an integer", "since")(sidecar.internal.get("/internal/v1/changes", params={"since": "x"}))
    error(400, "limit must be an integer", "limit")(sidecar.internal.get("/internal/v1/changes", params={"limit": 0}))


def test_customer_record(sidecar):
    cid = uid("c")
    sidecar.post("/customer/new", {"user_id": cid, "rpm_limit": 5, "tpm_limit": 50, "models": ["gpt-4o"], "alias": "A"})
    r = sidecar.internal.get(f"/internal/v1/customers/{cid}")
    assert r.status_code == 200
    rec = r.json()
    assert rec.pop("version") > 0
    assert rec.pop("budgets") == []  # no budget set (test_budgets.py)
    assert rec == {"user_id": cid, "alias": "A", "default_model": None, "allowed_model_region": None, "models": ["gpt-4o"],
                   "blocked": False, "rpm_limit": 5, "tpm_limit": 50, "max_parallel_requests": None}
    sidecar.post("/customer/block", {"user_ids": [cid]})
    assert sidecar.internal.get(f"/internal/v1/customers/{cid}").json()["blocked"] is True
    feed = sidecar.internal.get("/internal/v1/changes").json()["changes"]
    assert [c["kind"] for c in feed if c["id"] == cid] == ["customer", "customer"]
    error(404, "no such end user", "id", "not_found_error")(sidecar.internal.get("/internal/v1/customers/nobody"))


def test_a_follower_starting_afresh_gets_the_changes_since_it_started(sidecar):
    """`since_time`: the changes made at or after a time (unix seconds), so an Envoy process
    that cached keys before its first poll misses none of their changes."""
    import time
    old = sidecar.post("/key/generate", {}).json()["token"]
    time.sleep(1.1)
    started = int(time.time())
    new = sidecar.post("/key/generate", {}).json()["token"]
    page = sidecar.internal.get("/internal/v1/changes", params={"since_time": started}).json()
    assert [c["id"] for c in page["changes"]] == [new] and old not in str(page)
    assert page["seq"] == page["latest"]
    later = sidecar.internal.get("/internal/v1/changes", params={"since_time": started + 3600}).json()
    assert later["changes"] == [] and later["seq"] == later["latest"] == page["latest"]
    error(400, "not both", "since_time")(sidecar.internal.get("/internal/v1/changes", params={"since": 0, "since_time": 1}))
    error(400, "since_time must be an integer", "since_time")(sidecar.internal.get("/internal/v1/changes", params={"since_time": "x"}))


def test_end_users_that_restrict_anything_are_listed_in_pages_and_fetched_by_id(sidecar):
    prefix = uid("eu")
    a, b, c, d = (f"{prefix}-{n}" for n in "abcd")
    sidecar.post("/customer/new", {"user_id": a, "rpm_limit": 5})
    sidecar.post("/customer/new", {"user_id": b})  # restricts nothing: not listed
    sidecar.post("/customer/new", {"user_id": c, "models": ["gpt-4o"]})
    sidecar.post("/customer/new", {"user_id": d})
    sidecar.post("/customer/block", {"user_ids": [d]})
    seen, after = [], None
    while True:
        params = {"limit": 1, **({"after": after} if after else {})}
        page = sidecar.internal.get("/internal/v1/customers", params=params).json()
        seen += [x["user_id"] for x in page["customers"] if x["user_id"].startswith(prefix)]
        after = page["next"]
        if after is None:
            break
    assert seen == [a, c, d]
    batch = sidecar.internal.get("/internal/v1/customers", params=[("id", a), ("id", b), ("id", "nobody")]).json()
    assert sorted(x["user_id"] for x in batch["customers"]) == [a, b] and batch["missing"] == ["nobody"]
    rec = next(x for x in batch["customers"] if x["user_id"] == a)
    assert rec["rpm_limit"] == 5 and rec["blocked"] is False and rec["version"] > 0
    error(400, "limit must be", "limit")(sidecar.internal.get("/internal/v1/customers", params={"limit": 0}))
