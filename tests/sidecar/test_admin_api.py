"""The LiteLLM-compatible admin API end to end against the real sidecar binary, on SQLite
and on PostgreSQL: exact statuses and bodies, and every response validated against
LiteLLM 1.106.2's own pydantic models."""

from __future__ import annotations

import calendar
import re
import time

import httpx
import pytest

from sidecar_harness import MASTER, Sidecar, error, sha, uid


def iso_to_unix(s: str) -> int:
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


# ---------------------------------------------------------------- health and auth

def test_health_is_public_and_readiness_checks_the_database(sidecar):
    r = httpx.get(sidecar.url + "/health/liveliness")
    assert (r.status_code, r.json()) == (200, "I'm alive!")
    r = httpx.get(sidecar.url + "/health/readiness")
    backend = "sqlite" if sidecar.database_url.startswith("sqlite") else "postgres"
    assert (r.status_code, r.json()) == (200, {"status": "healthy", "db": "connected", "backend": backend})


def test_admin_api_needs_the_master_key(sidecar):
    url = sidecar.url + "/key/generate"
    error(401, "no API key passed in", None, "auth_error")(httpx.post(url, json={}))
    error(401, "invalid master key", None, "auth_error")(httpx.post(url, json={}, headers={"Authorization": "Bearer sk-wrong"}))
    error(401, "invalid master key", None, "auth_error")(httpx.post(url, json={}, headers={"Authorization": f"Bearer {MASTER}x"}))
    r = httpx.post(url, json={}, headers={"x-litellm-api-key": MASTER})
    assert r.status_code == 200, r.text
    r = httpx.post(url, json={}, headers={"x-litellm-api-key": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    error(404, "unknown path", None, "not_found_error")(sidecar.get("/key/nothing"))
    error(405, "method not allowed", None)(sidecar.get("/key/generate"))


def test_litellm_master_key_variable_and_no_master_key(database_url, workdir):
    s = Sidecar(database_url, workdir, env={"SWITCHYARD_MASTER_KEY": None, "LITELLM_MASTER_KEY": "sk-from-litellm-env"})
    try:
        assert httpx.post(s.url + "/team/new", json={}, headers={"Authorization": "Bearer sk-from-litellm-env"}).status_code == 200
        error(401, "invalid master key", None, "auth_error")(httpx.post(s.url + "/team/new", json={}, headers={"Authorization": f"Bearer {MASTER}"}))
    finally:
        s.stop()
    s = Sidecar(database_url, workdir, env={"SWITCHYARD_MASTER_KEY": None})
    try:
        error(401, "the admin API is disabled", None, "auth_error")(httpx.post(s.url + "/team/new", json={}, headers={"Authorization": f"Bearer {MASTER}"}))
    finally:
        s.stop()


# ---------------------------------------------------------------- keys

def test_key_generate_returns_the_key_once_and_stores_only_its_hash(sidecar, litellm):
    team = uid("team")
    assert sidecar.post("/team/new", {"team_id": team, "models": ["gpt-4o", "claude"]}).status_code == 200
    body = {"key_alias": uid("alias"), "models": ["gpt-4o"], "duration": "30d", "team_id": team, "user_id": "u-1",
            "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 2, "model_rpm_limit": {"gpt-4o": 5},
            "model_tpm_limit": {"gpt-4o": 500}, "metadata": {"owner": "ops"}, "max_budget": 12.5, "soft_budget": 10,
            "budget_duration": "1mo", "model_max_budget": {"gpt-4o": {"max_budget": 1}}, "aliases": {"fast": "gpt-4o"},
            "tags": ["prod"]}
    before = int(time.time())
    r = sidecar.post("/key/generate", body)
    assert r.status_code == 200, r.text
    k = r.json()
    litellm.check("GenerateKeyResponse", k)
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{22}", k["key"]), k["key"]
    assert k["token"] == k["token_id"] == sha(k["key"])
    assert k["key_name"] == "sk-..." + k["key"][-4:]
    for f in ("key_alias", "models", "team_id", "user_id", "rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit",
              "model_tpm_limit", "metadata", "max_budget", "soft_budget", "budget_duration", "model_max_budget", "aliases", "tags", "duration"):
        assert k[f] == body[f], f
    assert k["spend"] == 0.0 and k["blocked"] is False
    assert before + 30 * 86400 <= iso_to_unix(k["expires"]) <= int(time.time()) + 30 * 86400
    # The plaintext key is never shown again: /key/info has the hash-derived name only.
    info = sidecar.get("/key/info", key=k["key"]).json()
    assert info["key"] == k["key"] and "token" not in info["info"] and k["key"] not in str(info["info"])
    litellm.check("LiteLLM_VerificationToken", info["info"])
    assert sidecar.get("/key/info", key=k["token"]).json()["info"] == info["info"]


def test_custom_key_and_defaults(sidecar, litellm):
    r = sidecar.post("/key/generate", {"key": "sk-my-own-key-1234"})
    assert r.status_code == 200, r.text
    k = r.json()
    litellm.check("GenerateKeyResponse", k)
    assert (k["key"], k["token"], k["key_name"], k["expires"], k["models"], k["metadata"]) == \
        ("sk-my-own-key-1234", sha("sk-my-own-key-1234"), "sk-...1234", None, [], {})
    error(400, "already exists", "token")(sidecar.post("/key/generate", {"key": "sk-my-own-key-1234"}))
    error(400, 'must start with "sk-"', "key")(sidecar.post("/key/generate", {"key": "my-key"}))


@pytest.mark.parametrize("body,param,message", [
    ({"rpm_limit": -1}, "rpm_limit", "rpm_limit must be a non-negative integer"),
    ({"tpm_limit": 1.5}, "tpm_limit", "tpm_limit must be a non-negative integer"),
    ({"max_parallel_requests": "2"}, "max_parallel_requests", "must be a non-negative integer"),
    ({"models": "gpt-4o"}, "models", "models must be a list of strings"),
    ({"models": ["a", 3]}, "models[1]", "models[1] must be a string"),
    ({"duration": "30x"}, "duration", 'invalid duration "30x"'),
    ({"duration": "10ms"}, "duration", 'invalid duration "10ms"'),
    ({"budget_duration": "2mo"}, "budget_duration", "budget resets support only 1mo"),
    ({"max_budget": -5}, "max_budget", "max_budget must be a non-negative number"),
    ({"model_rpm_limit": {"gpt-4o": -1}}, "model_rpm_limit.gpt-4o", "must be a non-negative integer"),
    ({"model_tpm_limit": [1]}, "model_tpm_limit", "must be an object"),
    ({"metadata": "x"}, "metadata", "metadata must be an object"),
    ({"blocked": "no"}, "blocked", "blocked must be true or false"),
    ({"team_id": "no-such-team"}, "team_id", 'unknown team_id "no-such-team"'),
    ({"colour": "blue"}, "colour", 'unknown field "colour"'),
    ({"key_type": "root"}, "key_type", "key_type must be one of"),
    ({"rpm_limit_type": "fast"}, "rpm_limit_type", "must be one of"),
])
def test_key_generate_refuses_bad_input_naming_the_field(sidecar, body, param, message):
    error(400, message, param)(sidecar.post("/key/generate", body))


def test_bad_bodies(sidecar):
    for raw, message in [(b"{", "not valid JSON"), (b"[1]", "must be a JSON object"), (b'"x"', "must be a JSON object")]:
        error(400, message, None)(sidecar.client.post("/key/generate", content=raw))
    error(413, "over 1048576 bytes", None)(sidecar.client.post("/key/generate", content=b" " * (1 << 20 + 1)))


def test_key_update_is_an_exclude_unset_merge(sidecar, litellm):
    alias = uid("a")
    k = sidecar.post("/key/generate", {"key_alias": alias, "rpm_limit": 10, "tpm_limit": 100, "metadata": {"a": 1}, "models": ["m1"]}).json()
    r = sidecar.post("/key/update", {"key": k["key"], "rpm_limit": 20, "metadata": {"b": 2}, "tpm_limit": None})
    assert r.status_code == 200, r.text
    u = r.json()
    litellm.check("GenerateKeyResponse", u)
    assert (u["key"], u["rpm_limit"], u["tpm_limit"], u["metadata"], u["models"], u["key_alias"]) == (k["key"], 20, None, {"b": 2}, ["m1"], alias)
    # By hash, and a duration change moves expires.
    u2 = sidecar.post("/key/update", {"key": k["token"], "duration": "1h"}).json()
    assert abs(iso_to_unix(u2["expires"]) - (time.time() + 3600)) < 30 and u2["rpm_limit"] == 20
    u3 = sidecar.post("/key/update", {"key": k["token"], "duration": None}).json()
    assert u3["expires"] is None
    error(404, "key not found", "key", "not_found_error")(sidecar.post("/key/update", {"key": "sk-unknown", "rpm_limit": 1}))
    error(400, 'missing required field "key"', "key")(sidecar.post("/key/update", {"rpm_limit": 1}))
    error(400, "must be set together", "temp_budget_expiry")(sidecar.post("/key/update", {"key": k["key"], "temp_budget_increase": 5}))
    other = sidecar.post("/key/generate", {"key_alias": uid("b")}).json()
    error(400, "already exists", "key_alias")(sidecar.post("/key/update", {"key": other["key"], "key_alias": alias}))


def test_key_block_unblock_delete(sidecar, litellm):
    k = sidecar.post("/key/generate", {"key_alias": uid("blk")}).json()
    r = sidecar.post("/key/block", {"key": k["key"]})
    assert r.status_code == 200 and r.json()["blocked"] is True, r.text
    litellm.check("LiteLLM_VerificationToken", r.json())
    r = sidecar.post("/key/unblock", {"key": k["token"]})
    assert r.status_code == 200 and r.json()["blocked"] is False
    error(404, "key not found", "key", "not_found_error")(sidecar.post("/key/block", {"key": "sk-nope"}))
    error(400, 'missing required field "key"', "key")(sidecar.post("/key/block", {}))
    k2 = sidecar.post("/key/generate", {"key_alias": uid("del")}).json()
    r = sidecar.post("/key/delete", {"keys": [k["key"]]})
    assert (r.status_code, r.json()) == (200, {"deleted_keys": [k["key"]]})
    r = sidecar.post("/key/delete", {"key_aliases": [k2["key_alias"]]})
    assert (r.status_code, r.json()) == (200, {"deleted_keys": [k2["key_alias"]]})
    error(404, "key not found", "key", "not_found_error")(sidecar.get("/key/info", key=k["key"]))
    error(404, "key not found", "keys", "not_found_error")(sidecar.post("/key/delete", {"keys": [k["key"]]}))
    error(400, "pass keys", "keys")(sidecar.post("/key/delete", {}))


def test_key_list_pages_and_filters(sidecar, litellm):
    team = uid("t")
    sidecar.post("/team/new", {"team_id": team})
    made = [sidecar.post("/key/generate", {"team_id": team, "key_alias": uid("l")}).json() for _ in range(5)]
    # Listed oldest first (created_at, in seconds), ties by hash.
    made.sort(key=lambda k: (k["created_at"], k["token"]))
    r = sidecar.get("/key/list", team_id=team, size=2, page=2)
    assert r.status_code == 200
    body = r.json()
    litellm.check("KeyListResponseObject", body)
    assert body == {"keys": [made[2]["token"], made[3]["token"]], "total_count": 5, "current_page": 2, "total_pages": 3}
    full = sidecar.get("/key/list", team_id=team, return_full_object="true", size=100).json()
    litellm.check("KeyListResponseObject", full)
    assert [k["token"] for k in full["keys"]] == [m["token"] for m in made]
    assert sidecar.get("/key/list", key_alias=made[0]["key_alias"]).json()["keys"] == [made[0]["token"]]
    error(400, "size must be an integer from 1 to 100", "size")(sidecar.get("/key/list", size=101))
    error(400, "page must be an integer", "page")(sidecar.get("/key/list", page="x"))


def test_key_regenerate(sidecar, litellm):
    k = sidecar.post("/key/generate", {"key_alias": uid("rot"), "rpm_limit": 7}).json()
    r = sidecar.post("/key/regenerate", {"key": k["key"]})
    assert r.status_code == 200, r.text
    n = r.json()
    litellm.check("GenerateKeyResponse", n)
    assert n["key"] != k["key"] and n["token"] == sha(n["key"]) and n["rpm_limit"] == 7 and n["key_alias"] == k["key_alias"]
    error(404, "key not found", "key", "not_found_error")(sidecar.get("/key/info", key=k["key"]))
    # The path form, a chosen new key, an update riding along, and a grace period.
    r = sidecar.post(f"/key/{n['key']}/regenerate", {"new_key": "sk-rotated-0001", "rpm_limit": 9, "grace_period": "1h"})
    assert r.status_code == 200, r.text
    m = r.json()
    assert (m["key"], m["rpm_limit"], m["key_alias"]) == ("sk-rotated-0001", 9, k["key_alias"])
    old = sidecar.get("/key/info", key=n["key"]).json()["info"]
    assert old["key_alias"] is None and abs(iso_to_unix(old["expires"]) - (time.time() + 3600)) < 30
    error(400, 'new_key must start with "sk-"', "new_key")(sidecar.post("/key/regenerate", {"key": m["key"], "new_key": "x"}))
    error(400, "SWITCHYARD_MASTER_KEY", "new_master_key")(sidecar.post("/key/regenerate", {"key": m["key"], "new_master_key": "sk-new"}))
    error(404, "key not found", "key", "not_found_error")(sidecar.post("/key/regenerate", {"key": "sk-none"}))


# ---------------------------------------------------------------- teams

def test_team_lifecycle(sidecar, litellm):
    team, alias = uid("team"), uid("eng")
    r = sidecar.post("/team/new", {"team_id": team, "team_alias": alias, "models": ["gpt-4o"], "rpm_limit": 100, "tpm_limit": 10000,
                                   "max_budget": 50, "budget_duration": "30d", "metadata": {"cost_center": 7},
                                   "members_with_roles": [{"role": "admin", "user_id": "alice-" + team}, {"role": "user", "user_email": "bob@example.com"}]})
    assert r.status_code == 200, r.text
    t = r.json()
    litellm.check("LiteLLM_TeamTable", t)
    assert (t["team_id"], t["team_alias"], t["models"], t["rpm_limit"], t["blocked"], t["spend"]) == (team, alias, ["gpt-4o"], 100, False, 0.0)
    assert [m["role"] for m in t["members_with_roles"]] == ["admin", "user"] and t["admins"] == ["alice-" + team]
    assert t["budget_reset_at"] is not None
    error(400, "already exists", "team_id")(sidecar.post("/team/new", {"team_id": team}))
    error(400, "already exists", "team_alias")(sidecar.post("/team/new", {"team_alias": alias}))
    error(400, "members_with_roles[0].role", "members_with_roles[0].role")(sidecar.post("/team/new", {"members_with_roles": [{"role": "owner", "user_id": "x"}]}))
    # Generated id.
    g = sidecar.post("/team/new", {}).json()
    assert re.fullmatch(r"[0-9a-f-]{36}", g["team_id"])

    k = sidecar.post("/key/generate", {"team_id": team}).json()
    info = sidecar.get("/team/info", team_id=team)
    assert info.status_code == 200
    litellm.check("TeamInfoResponseObject", info.json())
    assert info.json()["team_id"] == team and [x["token"] for x in info.json()["keys"]] == [k["token"]]
    assert len(info.json()["team_memberships"]) == 2

    r = sidecar.post("/team/update", {"team_id": team, "rpm_limit": 200, "models": []})
    assert r.status_code == 200, r.text
    assert r.json()["team_id"] == team
    litellm.check("LiteLLM_TeamTable", r.json()["data"])
    assert (r.json()["data"]["rpm_limit"], r.json()["data"]["models"], r.json()["data"]["tpm_limit"]) == (200, [], 10000)
    error(404, "team not found", "team_id", "not_found_error")(sidecar.post("/team/update", {"team_id": "nope", "rpm_limit": 1}))
    error(400, "member_add", "members_with_roles")(sidecar.post("/team/update", {"team_id": team, "members_with_roles": []}))

    r = sidecar.post("/team/member_add", {"team_id": team, "member": {"role": "user", "user_id": "carol-" + team}, "max_budget_in_team": 5})
    assert r.status_code == 200, r.text
    litellm.check("TeamAddMemberResponse", r.json())
    assert [u["user_id"] for u in r.json()["updated_users"]] == ["carol-" + team]
    assert r.json()["updated_team_memberships"][0]["litellm_budget_table"]["max_budget"] == 5
    error(400, "already a member", "member")(sidecar.post("/team/member_add", {"team_id": team, "member": [{"role": "user", "user_id": "carol-" + team}]}))
    r = sidecar.post("/team/member_delete", {"team_id": team, "user_id": "carol-" + team})
    assert r.status_code == 200 and "carol-" + team not in r.json()["members"], r.text
    error(404, "no such member", "user_id", "not_found_error")(sidecar.post("/team/member_delete", {"team_id": team, "user_id": "carol-" + team}))

    for path, blocked in (("/team/block", True), ("/team/unblock", False)):
        r = sidecar.post(path, {"team_id": team})
        assert r.status_code == 200 and r.json()["blocked"] is blocked, r.text
        litellm.check("LiteLLM_TeamTable", r.json())

    teams = sidecar.get("/team/list").json()
    ids = [x["team_id"] for x in teams]
    assert team in ids and g["team_id"] in ids
    for x in teams:
        litellm.check("TeamListResponseObject", x)
    assert [x["team_id"] for x in sidecar.get("/team/list", user_id="alice-" + team).json()] == [team]

    r = sidecar.post("/team/delete", {"team_ids": [team]})
    assert (r.status_code, r.json()) == (200, {"deleted_teams": [team]})
    # A team's keys go with it (LiteLLM's behaviour).
    error(404, "key not found", "key", "not_found_error")(sidecar.get("/key/info", key=k["key"]))
    error(404, "team not found", "team_ids", "not_found_error")(sidecar.post("/team/delete", {"team_ids": [team]}))
    error(400, "team_ids", "team_ids")(sidecar.post("/team/delete", {"team_ids": []}))


# ---------------------------------------------------------------- users

def test_user_lifecycle(sidecar, litellm):
    team = uid("ut")
    sidecar.post("/team/new", {"team_id": team})
    user = uid("user")
    r = sidecar.post("/user/new", {"user_id": user, "user_email": f"{user}@example.com", "user_role": "internal_user", "teams": [team],
                                   "max_budget": 20, "rpm_limit": 30, "models": ["gpt-4o"], "key_alias": uid("uk"), "duration": "7d"})
    assert r.status_code == 200, r.text
    u = r.json()
    litellm.check("NewUserResponse", u)
    assert (u["user_id"], u["user_email"], u["user_role"], u["teams"], u["max_budget"], u["rpm_limit"]) == \
        (user, f"{user}@example.com", "internal_user", [team], 20, 30)
    assert u["key"].startswith("sk-") and u["token"] == sha(u["key"])
    # The minted key belongs to the user; the user's own limits stay on the user.
    kinfo = sidecar.get("/key/info", key=u["key"]).json()["info"]
    assert (kinfo["user_id"], kinfo["rpm_limit"], kinfo["models"]) == (user, None, ["gpt-4o"])
    error(400, "already exists", "user_id")(sidecar.post("/user/new", {"user_id": user}))
    error(400, "unknown team", "teams[0]")(sidecar.post("/user/new", {"teams": ["nope"]}))
    error(400, "user_role must be one of", "user_role")(sidecar.post("/user/new", {"user_role": "god"}))
    error(400, "passwords are not supported", "password")(sidecar.post("/user/new", {"password": "x"}))
    nokey = sidecar.post("/user/new", {"auto_create_key": False}).json()
    litellm.check("NewUserResponse", nokey)
    assert nokey["key"] == "" and "token" not in nokey

    info = sidecar.get("/user/info", user_id=user)
    assert info.status_code == 200
    litellm.check("UserInfoResponse", info.json())
    litellm.check("LiteLLM_UserTable", info.json()["user_info"])
    assert [k["token"] for k in info.json()["keys"]] == [u["token"]] and [t["team_id"] for t in info.json()["teams"]] == [team]

    r = sidecar.post("/user/update", {"user_email": f"{user}@example.com", "rpm_limit": 40, "user_alias": "Al"})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user
    litellm.check("LiteLLM_UserTable", r.json()["data"])
    assert (r.json()["data"]["rpm_limit"], r.json()["data"]["max_budget"], r.json()["data"]["user_alias"]) == (40, 20, "Al")
    error(404, "user not found", "user_id", "not_found_error")(sidecar.post("/user/update", {"user_id": "nope", "rpm_limit": 1}))

    lst = sidecar.get("/user/list", page_size=100)
    assert lst.status_code == 200
    litellm.check("UserListResponse", lst.json())
    mine = [x for x in lst.json()["users"] if x["user_id"] == user]
    assert len(mine) == 1 and mine[0]["key_count"] == 1

    r = sidecar.post("/user/delete", {"user_ids": [user]})
    assert (r.status_code, r.json()) == (200, {"deleted_users": [user]})
    error(404, "key not found", "key", "not_found_error")(sidecar.get("/key/info", key=u["key"]))
    error(404, "user not found", "user_id", "not_found_error")(sidecar.get("/user/info", user_id=user))


# ---------------------------------------------------------------- end users

@pytest.mark.parametrize("prefix", ["/customer", "/end_user"])
def test_customer_lifecycle(sidecar, litellm, prefix):
    cid = uid("cust")
    r = sidecar.post(f"{prefix}/new", {"user_id": cid, "alias": "Acme", "rpm_limit": 5, "tpm_limit": 500, "max_budget": 3,
                                       "budget_duration": "1d", "allowed_model_region": "eu", "default_model": "gpt-4o"})
    assert r.status_code == 200, r.text
    c = r.json()
    litellm.check("CustomerResponse", c)
    assert (c["user_id"], c["alias"], c["blocked"], c["allowed_model_region"], c["litellm_budget_table"]["rpm_limit"],
            c["litellm_budget_table"]["max_budget"]) == (cid, "Acme", False, "eu", 5, 3)
    error(400, "already exists", "user_id")(sidecar.post(f"{prefix}/new", {"user_id": cid}))
    error(400, "not both", "max_budget")(sidecar.post(f"{prefix}/new", {"user_id": uid("c"), "budget_id": "b", "max_budget": 1}))
    error(400, "allowed_model_region must be one of eu, us", "allowed_model_region")(sidecar.post(f"{prefix}/new", {"user_id": uid("c"), "allowed_model_region": "mars"}))
    error(400, 'missing required field "user_id"', "user_id")(sidecar.post(f"{prefix}/new", {}))

    info = sidecar.get(f"{prefix}/info", end_user_id=cid)
    assert info.status_code == 200 and info.json() == c
    error(404, "end user not found", "end_user_id", "not_found_error")(sidecar.get(f"{prefix}/info", end_user_id="nope"))

    r = sidecar.post(f"{prefix}/update", {"user_id": cid, "rpm_limit": 6, "alias": None})
    assert r.status_code == 200, r.text
    litellm.check("CustomerResponse", r.json())
    assert (r.json()["alias"], r.json()["litellm_budget_table"]["rpm_limit"], r.json()["litellm_budget_table"]["tpm_limit"]) == (None, 6, 500)

    fresh = uid("unknown")
    r = sidecar.post(f"{prefix}/block", {"user_ids": [cid, fresh]})
    assert r.status_code == 200, r.text
    litellm.check("BlockUsersResponse", r.json())
    assert [(x["user_id"], x["blocked"]) for x in r.json()["blocked_users"]] == [(cid, True), (fresh, True)]
    r = sidecar.post(f"{prefix}/unblock", {"user_ids": [cid]})
    assert r.status_code == 200, r.text
    litellm.check("UnblockUsersResponse", r.json())
    assert cid not in r.json()["blocked_users"] and fresh in r.json()["blocked_users"]

    rows = sidecar.get(f"{prefix}/list").json()
    for row in rows:
        litellm.check("CustomerResponse", row)
    assert {cid, fresh} <= {x["user_id"] for x in rows}

    r = sidecar.post(f"{prefix}/delete", {"user_ids": [cid, fresh]})
    assert r.status_code == 200, r.text
    litellm.check("DeleteCustomersResponse", r.json())
    assert r.json()["deleted_customers"] == 2
    error(404, "end user not found", "user_ids", "not_found_error")(sidecar.post(f"{prefix}/delete", {"user_ids": [cid]}))


def test_concurrent_updates_lose_nothing(sidecar):
    """Sixteen updates of sixteen different fields of one key, eight at a time: each is a
    read-merge-write; the version check makes the losers of a race re-read, so all land."""
    import concurrent.futures

    k = sidecar.post("/key/generate", {}).json()
    updates = {"rpm_limit": 1, "tpm_limit": 2, "max_parallel_requests": 3, "tpd_limit": 4, "key_alias": uid("c"),
               "max_budget": 5.0, "soft_budget": 6.0, "budget_duration": "1d", "models": ["m"], "aliases": {"a": "m"},
               "tags": ["t"], "guardrails": ["g"], "policies": ["p"], "prompts": ["q"], "config": {"c": 1}, "permissions": {"p": 1}}

    def one(item):
        field, value = item
        with httpx.Client(base_url=sidecar.url, headers=sidecar.client.headers, timeout=30) as c:
            return c.post("/key/update", json={"key": k["key"], field: value}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, updates.items())) == [200] * len(updates)
    info = sidecar.get("/key/info", key=k["key"]).json()["info"]
    assert {f: info[f] for f in updates} == updates
