"""The sidecar as a process: graceful shutdown, logs that never carry a secret, SIGKILL in
the middle of writes (the database stays consistent), the database going away and coming
back, random admin bodies (never a 5xx), and importing LiteLLM's tables."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from postgres import Postgres
from sidecar_harness import BIN, MASTER, SECRET, Sidecar, error, sha, uid


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_graceful_shutdown(database_url, workdir, sig, name):
    s = Sidecar(database_url, workdir)
    assert s.post("/key/generate", {}).status_code == 200
    start = time.monotonic()
    assert s.stop(sig) == 0
    assert time.monotonic() - start < 5
    messages = [(l["fields"].get("message"), l["fields"].get("signal")) for l in s.log_lines()]
    assert ("shutting down", name) in messages and messages[-1] == ("stopped", None), messages


def test_logs_are_json_and_never_contain_a_key(database_url, workdir):
    s = Sidecar(database_url, workdir)
    secrets = {MASTER, SECRET}
    try:
        for _ in range(3):
            k = s.post("/key/generate", {"key_alias": uid("log")}).json()
            secrets |= {k["key"], k["token"]}
        custom = "sk-custom-log-test-key"
        secrets |= {custom, sha(custom)}
        s.post("/key/generate", {"key": custom})
        s.get("/key/info", key=custom)
        s.post("/key/update", {"key": custom, "rpm_limit": -1})
        r = s.post(f"/key/{custom}/regenerate", {})
        secrets |= {r.json()["key"], r.json()["token"]}
        s.internal.get(f"/internal/v1/keys/{r.json()['token']}")
        httpx.post(s.url + "/key/generate", headers={"Authorization": "Bearer sk-wrong-master-attempt"})
        secrets.add("sk-wrong-master-attempt")
        httpx.get(s.url + f"/{custom}/nowhere")
        u = s.post("/user/new", {}).json()
        secrets |= {u["key"], u["token"]}
    finally:
        s.stop()
    text = s.log_text()
    assert "request" in text and "listening" in text
    for line in text.splitlines():
        rec = json.loads(line)
        assert {"timestamp", "level", "fields", "target"} <= set(rec), line
    leaked = [x for x in secrets if x in text]
    assert not leaked, leaked
    assert "sk-" not in text
    assert s.database_url not in text


def _writer(url: str, stop: threading.Event, ok: list, lock: threading.Lock):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=5) as c:
        while not stop.is_set():
            try:
                r = c.post("/key/generate", json={"key_alias": uid("kill"), "metadata": {"pad": "x" * 200}})
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                with lock:
                    ok.append(r.json()["token"])


def test_sigkill_mid_write_leaves_a_consistent_database(database_url, workdir):
    s = Sidecar(database_url, workdir)
    ok, lock, stop = [], threading.Lock(), threading.Event()
    threads = [threading.Thread(target=_writer, args=(s.url, stop, ok, lock)) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(ok) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.proc.kill()  # SIGKILL while the writers are mid-request
    s.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    s.kill()
    assert len(ok) >= 40
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite://")
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = Sidecar(database_url, workdir)
    try:
        assert httpx.get(again.url + "/health/readiness").status_code == 200
        # Every acknowledged key survived; the change feed agrees with the keys table.
        listed = again.get("/key/list", size=100, page=1).json()
        tokens = []
        for page in range(1, listed["total_pages"] + 1):
            tokens += again.get("/key/list", size=100, page=page).json()["keys"]
        assert set(ok) <= set(tokens)
        feed = again.internal.get("/internal/v1/changes", params={"limit": 10000}).json()
        assert not feed["more"]
        fed = [c["id"] for c in feed["changes"] if c["kind"] == "key"]
        assert set(fed) == set(tokens) and len(fed) == len(set(fed))
        seqs = [c["seq"] for c in feed["changes"]]
        assert seqs == sorted(seqs) and feed["latest"] == max(seqs)
        for t in tokens[:5]:
            rec = again.internal.get(f"/internal/v1/keys/{t}").json()
            assert rec["token"] == t and rec["version"] in seqs
        # And it takes writes again.
        assert again.post("/key/generate", {}).status_code == 200
    finally:
        again.stop()


def test_database_outage_is_a_503_and_recovers(workdir):
    with Postgres() as pg:
        url = pg.create_database("outage")
        s = Sidecar(url, workdir)
        try:
            assert s.post("/team/new", {"team_id": "t"}).status_code == 200
            pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w", "stop")
            r = httpx.get(s.url + "/health/readiness", timeout=30)
            assert r.status_code == 503 and r.json()["status"] == "unhealthy" and r.json()["db"] == "unreachable", r.text
            r = s.post("/team/new", {"team_id": "u"})
            assert r.status_code == 503 and r.json()["error"]["type"] == "no_db_connection", r.text
            assert httpx.get(s.url + "/health/liveliness").status_code == 200
            pg.start_again()
            deadline = time.monotonic() + 20
            while httpx.get(s.url + "/health/readiness", timeout=30).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert s.get("/team/info", team_id="t").status_code == 200
        finally:
            s.stop()


NAMES = ["key", "keys", "key_alias", "team_id", "team_ids", "user_id", "user_ids", "user_email", "models", "rpm_limit",
         "tpm_limit", "max_parallel_requests", "model_rpm_limit", "duration", "budget_duration", "max_budget", "metadata",
         "blocked", "member", "members_with_roles", "role", "teams", "new_key", "grace_period", "alias", "budget_id", "x"]
ENDPOINTS = ["/key/generate", "/key/update", "/key/delete", "/key/block", "/key/regenerate", "/team/new", "/team/update",
             "/team/delete", "/team/member_add", "/team/member_delete", "/team/block", "/user/new", "/user/update",
             "/user/delete", "/customer/new", "/customer/update", "/customer/delete", "/customer/block", "/customer/unblock"]


def _value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 2 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 10, 2**63 - 1, -2**63, 1.5, 1e300])
    if choice in (3, 4, 5):
        return rng.choice(["", "sk-x", "t1", "30d", "1mo", "admin", "user", "a\u0000b", "é", "x" * 300, "-1", "none"])
    if choice in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(NAMES): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_random_admin_bodies_never_get_a_5xx(sidecar):
    sidecar.post("/team/new", {"team_id": "t1"})
    sidecar.post("/key/generate", {"key": "sk-x", "team_id": "t1"})
    rng = random.Random(11)
    for i in range(300):
        path = rng.choice(ENDPOINTS)
        body = {rng.choice(NAMES): _value(rng) for _ in range(rng.randrange(5))}
        r = sidecar.post(path, body)
        assert r.status_code < 500, (path, body, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]["code"] == str(r.status_code), r.text


# ---------------------------------------------------------------- import from LiteLLM

LITELLM_KEYS = ["sk-litellm-imported-0001", "sk-litellm-imported-0002"]


def litellm_rows(team: str) -> dict:
    return {
        "LiteLLM_TeamTable": [{"team_id": team, "team_alias": team + "-alias", "models": ["gpt-4o"], "rpm_limit": 100, "tpm_limit": None,
                               "blocked": False, "spend": 1.25, "max_budget": 10.0, "admins": [], "members": [],
                               "members_with_roles": [{"role": "admin", "user_id": "imp-alice", "user_email": "alice@example.com"}],
                               "metadata": {}, "created_at": "2025-06-01T10:00:00", "updated_at": "2025-06-02T10:00:00"}],
        "LiteLLM_UserTable": [{"user_id": "imp-alice", "user_email": "alice@example.com", "user_role": "internal_user", "teams": [team],
                               "max_budget": 5.0, "spend": 0.5, "models": [], "rpm_limit": 20, "password": "hashed-should-not-import",
                               "metadata": {}, "created_at": "2025-06-01T10:00:00"}],
        "LiteLLM_VerificationToken": [
            {"token": sha(LITELLM_KEYS[0]), "key_name": "sk-...0001", "key_alias": team + "-k1", "spend": 0.75, "expires": "2099-01-01T00:00:00",
             "models": ["gpt-4o"], "aliases": {}, "config": {}, "user_id": "imp-alice", "team_id": team, "permissions": {},
             "max_parallel_requests": 3, "metadata": {"model_rpm_limit": {"gpt-4o": 7}, "note": "kept"}, "blocked": None,
             "tpm_limit": 1000, "rpm_limit": 10, "max_budget": 2.5, "budget_duration": "30d", "allowed_cache_controls": [],
             "model_spend": {}, "model_max_budget": {}, "created_at": "2025-06-03T10:00:00", "created_by": "admin"},
            {"token": sha(LITELLM_KEYS[1]), "key_name": "sk-...0002", "key_alias": None, "spend": 0.0, "expires": None, "models": [],
             "aliases": {}, "config": {}, "user_id": None, "team_id": None, "permissions": {}, "metadata": {}, "blocked": True,
             "tpm_limit": None, "rpm_limit": None, "created_at": "2025-06-03T11:00:00"},
        ],
        "LiteLLM_BudgetTable": [{"budget_id": "b-1", "max_budget": 3.0, "rpm_limit": 4, "tpm_limit": 400, "budget_duration": "1d",
                                 "created_at": "2025-06-01T10:00:00", "created_by": "a", "updated_at": "2025-06-01T10:00:00", "updated_by": "a"}],
        "LiteLLM_EndUserTable": [{"user_id": "imp-customer", "alias": "Cust", "spend": 0.1, "allowed_model_region": "eu",
                                  "default_model": None, "models": [], "budget_id": "b-1", "blocked": False}],
    }


def run_import(database_url: str, source: str, workdir: Path) -> dict:
    out = subprocess.run([str(BIN), "import-litellm", source], env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60, cwd=workdir)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return json.loads(out.stdout)


def check_imported(s: Sidecar, team: str):
    info = s.get("/key/info", key=LITELLM_KEYS[0])
    assert info.status_code == 200, info.text
    i = info.json()["info"]
    assert (i["spend"], i["max_budget"], i["team_id"], i["models"], i["metadata"]) == (0.75, 2.5, team, ["gpt-4o"], {"note": "kept"})
    rec = s.internal.get(f"/internal/v1/keys/{sha(LITELLM_KEYS[0])}").json()
    assert (rec["rpm_limit"], rec["tpm_limit"], rec["max_parallel_requests"], rec["model_rpm_limit"]) == (10, 1000, 3, {"gpt-4o": 7})
    assert rec["expires_at"] == 4070908800 and rec["team"]["rpm_limit"] == 100 and rec["user"]["rpm_limit"] == 20
    assert s.internal.get(f"/internal/v1/keys/{sha(LITELLM_KEYS[1])}").json()["blocked"] is True
    t = s.get("/team/info", team_id=team).json()
    assert [(m["user_id"], m["role"]) for m in t["team_info"]["members_with_roles"]] == [("imp-alice", "admin")]
    u = s.get("/user/info", user_id="imp-alice").json()["user_info"]
    assert u["teams"] == [team] and "password" not in u
    c = s.internal.get("/internal/v1/customers/imp-customer").json()
    assert (c["rpm_limit"], c["tpm_limit"], c["allowed_model_region"]) == (4, 400, "eu")


def test_import_litellm_json_export(database_url, workdir):
    team = uid("imp")
    src = workdir / "litellm-export.json"
    src.write_text(json.dumps(litellm_rows(team)))
    summary = run_import(database_url, str(src), workdir)
    assert summary == {"keys": 2, "teams": 1, "users": 1, "end_users": 1, "memberships": 1, "skipped": []}
    # Importing again is harmless (upsert by primary key).
    assert run_import(database_url, str(src), workdir)["keys"] == 2
    s = Sidecar(database_url, workdir)
    try:
        check_imported(s, team)
    finally:
        s.stop()


def test_import_litellm_csv_export(database_url, workdir):
    # As `\copy "LiteLLM_VerificationToken" TO … CSV HEADER` writes it: arrays {a,b}, JSON, t/f.
    src = workdir / "LiteLLM_VerificationToken.csv"
    src.write_text('token,key_alias,spend,expires,models,metadata,blocked,rpm_limit,tpm_limit,created_at\n'
                   f'{sha(LITELLM_KEYS[0])},csv-k1,0.5,2099-01-01 00:00:00,"{{gpt-4o,claude}}","{{""model_tpm_limit"": {{""gpt-4o"": 9}}}}",f,11,,2025-06-03 10:00:00\n'
                   f'{sha(LITELLM_KEYS[1])},,0,,{{}},{{}},t,,,2025-06-03 10:00:00\n'
                   'only-a-token,,not-a-number,,{},{},f,,,\n')
    out = subprocess.run([str(BIN), "import-litellm", str(src)], env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60, cwd=workdir)
    assert out.returncode == 1, out  # one row skipped, and said so
    summary = json.loads(out.stdout)
    assert summary["keys"] == 2 and [(x["id"], x["reason"]) for x in summary["skipped"]] == [("only-a-token", "spend: expected a non-negative number")]
    s = Sidecar(database_url, workdir)
    try:
        rec = s.internal.get(f"/internal/v1/keys/{sha(LITELLM_KEYS[0])}").json()
        assert (rec["models"], rec["rpm_limit"], rec["tpm_limit"], rec["model_tpm_limit"], rec["blocked"], rec["expires_at"]) == \
            (["gpt-4o", "claude"], 11, None, {"gpt-4o": 9}, False, 4070908800)
        assert s.get("/key/info", key=LITELLM_KEYS[1]).json()["info"]["blocked"] is True
    finally:
        s.stop()


LITELLM_DDL = """
CREATE TABLE "LiteLLM_TeamTable" (team_id TEXT PRIMARY KEY, team_alias TEXT, admins TEXT[], members TEXT[], members_with_roles JSONB DEFAULT '{}',
  metadata JSONB DEFAULT '{}', max_budget DOUBLE PRECISION, spend DOUBLE PRECISION DEFAULT 0, models TEXT[], max_parallel_requests INTEGER,
  tpm_limit BIGINT, rpm_limit BIGINT, blocked BOOLEAN DEFAULT false, created_at TIMESTAMP(3) DEFAULT now(), updated_at TIMESTAMP(3) DEFAULT now());
CREATE TABLE "LiteLLM_UserTable" (user_id TEXT PRIMARY KEY, user_email TEXT, user_role TEXT, teams TEXT[] DEFAULT '{}', max_budget DOUBLE PRECISION,
  spend DOUBLE PRECISION DEFAULT 0, models TEXT[], rpm_limit BIGINT, password TEXT, metadata JSONB DEFAULT '{}', created_at TIMESTAMP(3));
CREATE TABLE "LiteLLM_VerificationToken" (token TEXT PRIMARY KEY, key_name TEXT, key_alias TEXT, spend DOUBLE PRECISION DEFAULT 0,
  expires TIMESTAMP(3), models TEXT[], aliases JSONB DEFAULT '{}', config JSONB DEFAULT '{}', user_id TEXT, team_id TEXT, permissions JSONB DEFAULT '{}',
  max_parallel_requests INTEGER, metadata JSONB DEFAULT '{}', blocked BOOLEAN, tpm_limit BIGINT, rpm_limit BIGINT, max_budget DOUBLE PRECISION,
  budget_duration TEXT, allowed_cache_controls TEXT[] DEFAULT '{}', model_spend JSONB DEFAULT '{}', model_max_budget JSONB DEFAULT '{}',
  created_at TIMESTAMP(3), created_by TEXT);
CREATE TABLE "LiteLLM_BudgetTable" (budget_id TEXT PRIMARY KEY, max_budget DOUBLE PRECISION, rpm_limit BIGINT, tpm_limit BIGINT, budget_duration TEXT,
  created_at TIMESTAMP(3), created_by TEXT, updated_at TIMESTAMP(3), updated_by TEXT);
CREATE TABLE "LiteLLM_EndUserTable" (user_id TEXT PRIMARY KEY, alias TEXT, spend DOUBLE PRECISION DEFAULT 0, allowed_model_region TEXT,
  default_model TEXT, models TEXT[] DEFAULT '{}', budget_id TEXT, blocked BOOLEAN DEFAULT false);
"""


def test_import_litellm_database_directly(database_url, workdir, postgres):
    team = uid("pgimp")
    src = postgres.create_database("litellm_" + uuid.uuid4().hex[:8])
    dbname = src.rsplit("/", 1)[1]
    postgres.psql(LITELLM_DDL, dbname)
    for table, rows in litellm_rows(team).items():
        for row in rows:
            postgres.psql(f"""INSERT INTO "{table}" SELECT * FROM json_populate_record(NULL::"{table}", '{json.dumps(row).replace("'", "''")}')""", dbname)
    summary = run_import(database_url, src, workdir)
    assert summary == {"keys": 2, "teams": 1, "users": 1, "end_users": 1, "memberships": 1, "skipped": []}
    s = Sidecar(database_url, workdir)
    try:
        check_imported(s, team)
    finally:
        s.stop()
