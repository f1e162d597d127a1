"""The spend ledger against the real sidecar binary, on SQLite and on PostgreSQL
(contract: docs/ledger.md): usage batches (`POST /internal/v1/spend`) resent whole or
overlapping move every aggregate exactly once; concurrent overlapping batches through two
sidecars end exact with no error; a refused record never blocks its batch; the database
going away is a 503 and nothing is lost once it is back; `/spend/logs` rows validate
against LiteLLM 1.106.2's `LiteLLM_SpendLogs`; `/global/spend/report` has LiteLLM's shapes;
retention deletes old ledger rows and keeps the rollups and the entities' spend."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
import pytest

from postgres import Postgres
from sidecar_harness import BIN, SECRET, Sidecar, error, sha, uid

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def rec(*, key_hash=None, team_id=None, user_id=None, end_user=None, cost=1000, start_ms=None, id=None, **extra):
    start = start_ms if start_ms is not None else now_ms() - 60_000
    r = {"id": id or uuid.uuid4().hex, "client_request_id": uid("client"), "key_hash": key_hash, "team_id": team_id,
         "user_id": user_id, "end_user": end_user, "model_group": "gpt-4o", "provider": "openai",
         "model": "gpt-4o-2024-08-06", "operation": "chat", "status": 200, "stream": False,
         "usage": {"input": 100, "cache_read": 20, "cache_write_5m": 5, "cache_write_1h": 1, "output": 30, "reasoning": 4},
         "cost_nano": cost, "estimated": False, "attempts": 1, "start_ms": start, "end_ms": start + 1500}
    r.update(extra)
    return r


def post(sidecar, records) -> dict:
    r = sidecar.internal.post("/internal/v1/spend", json={"records": records})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"inserted", "duplicates", "rejected", "totals"}, body
    # Budget totals (docs/budgets.md; test_budgets.py): a list, empty for entities without budgets.
    assert isinstance(body.pop("totals"), list), body
    return body


def nano(x) -> int:
    return round(x * 1e9)


def setup_entities(sidecar):
    """A team with a member, the member's key in that team, an end user: their ids."""
    team, user, customer = uid("team"), uid("user"), uid("cust")
    assert sidecar.post("/team/new", {"team_id": team, "team_alias": uid("alias"),
                                      "members_with_roles": [{"user_id": user, "role": "user"}]}).status_code == 200
    k = sidecar.post("/key/generate", {"team_id": team, "user_id": user}).json()
    assert sidecar.post("/customer/new", {"user_id": customer}).status_code == 200
    return {"key": k["key"], "hash": k["token"], "team": team, "user": user, "customer": customer}


def spends(sidecar, e) -> dict:
    key = sidecar.get("/key/info", key=e["key"]).json()["info"]["spend"]
    team = sidecar.get("/team/info", team_id=e["team"]).json()
    user = sidecar.get("/user/info", user_id=e["user"]).json()["user_info"]["spend"]
    cust = sidecar.get("/customer/info", end_user_id=e["customer"]).json()["spend"]
    member = [m for m in team["team_memberships"] if m["user_id"] == e["user"]][0]["spend"]
    return {"key": nano(key), "team": nano(team["team_info"]["spend"]), "member": nano(member), "user": nano(user),
            "customer": nano(cust)}


def of(e, cost, **kw):
    return rec(**{"key_hash": e["hash"], "team_id": e["team"], "user_id": e["user"], "end_user": e["customer"], "cost": cost, **kw})


def test_batches_resent_whole_and_overlapping_move_aggregates_once(sidecar, litellm):
    e = setup_entities(sidecar)
    records = [of(e, 1_000_000 * (i + 1)) for i in range(20)]
    assert post(sidecar, records[:10]) == {"inserted": 10, "duplicates": 0, "rejected": []}
    first = sum(r["cost_nano"] for r in records[:10])
    assert spends(sidecar, e) == dict.fromkeys(["key", "team", "member", "user", "customer"], first)
    # The acknowledgement was lost: the filter sends the same batch again.
    assert post(sidecar, records[:10]) == {"inserted": 0, "duplicates": 10, "rejected": []}
    assert spends(sidecar, e)["key"] == first
    # Overlapping, shuffled, with one record twice in the batch.
    again = records[5:] + [records[12]]
    random.shuffle(again)
    assert post(sidecar, again) == {"inserted": 10, "duplicates": 6, "rejected": []}
    total = sum(r["cost_nano"] for r in records)
    assert spends(sidecar, e) == dict.fromkeys(["key", "team", "member", "user", "customer"], total)
    # LiteLLM's shapes still validate with the spend in them.
    litellm.check("LiteLLM_VerificationToken", sidecar.get("/key/info", key=e["key"]).json()["info"])
    litellm.check("TeamInfoResponseObject", sidecar.get("/team/info", team_id=e["team"]).json())
    litellm.check("UserInfoResponse", sidecar.get("/user/info", user_id=e["user"]).json())
    litellm.check("CustomerResponse", sidecar.get("/customer/info", end_user_id=e["customer"]).json())
    litellm.check("KeyListResponseObject", sidecar.get("/key/list", return_full_object="true").json())
    # One ledger row per request; the day's rollup agrees.
    logs = sidecar.get("/spend/logs", api_key=e["key"], limit=100).json()
    assert sorted(r["request_id"] for r in logs) == sorted(r["id"] for r in records)
    today = day(records[0]["start_ms"])
    summary = sidecar.get("/spend/logs", start_date=today, end_date=today, api_key=e["hash"]).json()
    assert nano(summary[0]["spend"]) == total and nano(summary[0][e["hash"]]) == total
    # Spend of a key that was deleted since is still recorded (ledger and rollups).
    assert sidecar.post("/key/delete", {"keys": [e["key"]]}).status_code == 200
    late = of(e, 7_000)
    assert post(sidecar, [late])["inserted"] == 1
    assert sidecar.get("/spend/logs", request_id=late["id"]).json()[0]["api_key"] == e["hash"]
    assert spends_team(sidecar, e) == total + 7_000


def spends_team(sidecar, e) -> int:
    return nano(sidecar.get("/team/info", team_id=e["team"]).json()["team_info"]["spend"])


def test_a_refused_record_never_blocks_the_rest_and_is_logged_without_key_material(sidecar):
    e = setup_entities(sidecar)
    good = [of(e, 100), of(e, 200)]
    bad = [dict(of(e, 5), cost_nano=-1), dict(of(e, 5), key_hash="sk-" + e["hash"][3:]), dict(of(e, 5), operation="images"),
           dict(of(e, 5), id=e["hash"]), dict(of(e, 5), start_ms=now_ms() + 3 * DAY_MS), dict(of(e, 5), usage={"input": 1.5}),
           "not a record", dict(of(e, 5), status=1000)]
    body = post(sidecar, [good[0]] + bad + [good[1]])
    assert body["inserted"] == 2 and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == list(range(1, len(bad) + 1))
    messages = [r["message"] for r in body["rejected"]]
    for part, msg in zip(["cost_nano", "key_hash", "operation", "id", "start_ms", "usage.input", "object", "status"], messages):
        assert part in msg, (part, msg)
    assert spends(sidecar, e)["key"] == 300
    # Client-controlled text is cut, not refused: the spend still counts.
    long = of(e, 1000, end_user="x" * 5000, client_request_id="y\u0000" * 400)
    assert post(sidecar, [long])["inserted"] == 1
    row = sidecar.get("/spend/logs", request_id=long["id"]).json()[0]
    assert len(row["end_user"]) == 256 and len(row["metadata"]["client_request_id"]) == 256
    assert spends(sidecar, e)["team"] == 1300
    sidecar.stop()
    text = sidecar.log_text()
    assert "spend records refused" in text
    assert e["hash"] not in text and e["hash"][3:] not in text and e["key"] not in text


def test_what_is_not_a_batch_is_refused_whole(sidecar):
    s = sidecar.internal
    for body in [b"{not json", b"[]", b"{}", b'{"records": 5}', b'{"records": null}', b""]:
        error(400, None, "records")(s.post("/internal/v1/spend", content=body))
    r = s.post("/internal/v1/spend", json={"records": [rec() for _ in range(1001)]})
    assert r.status_code == 413 and r.json()["error"]["param"] == "records", r.text
    r = s.post("/internal/v1/spend", content=b'{"records": [' + b" " * (5 << 20) + b"]}")
    assert r.status_code == 413, r.text
    # The internal secret, as on every internal endpoint; the master key is not it.
    error(401, "x-switchyard-internal", None, "auth_error")(httpx.post(sidecar.url + "/internal/v1/spend", json={"records": []}))
    error(401, "x-switchyard-internal", None, "auth_error")(sidecar.post("/internal/v1/spend", {"records": []}))
    # 1000 records (the most) in one batch are fine.
    assert post(sidecar, [rec() for _ in range(1000)])["inserted"] == 1000


def _sender(url, batches, out, errors, lock):
    with httpx.Client(base_url=url, headers={"x-switchyard-internal": SECRET}, timeout=60) as c:
        for b in batches:
            r = c.post("/internal/v1/spend", json={"records": b})
            with lock:
                if r.status_code == 200:
                    out.append(r.json())
                else:
                    errors.append((r.status_code, r.text))


def test_concurrent_overlapping_batches_through_two_sidecars_are_exact(sidecar, database_url, workdir):
    """Two sidecar processes on one database, 6 senders each, batches of 80 records drawn
    from overlapping windows of a pool of 600 (every record sent by several senders, in
    different orders): every call a 200, every record inserted exactly once, every
    aggregate exact."""
    other = Sidecar(database_url, workdir)
    try:
        es = [setup_entities(sidecar) for _ in range(3)]
        pool = [of(es[i % 3], 1000 + i) for i in range(600)]
        plan = []
        for t in range(12):
            batches = []
            for round_ in range(10):
                start = (round_ * 53 + t * 31) % 600
                b = [pool[(start + j) % 600] for j in range(80)]
                if (t + round_) % 2:
                    b.reverse()
                batches.append(b)
            plan.append(batches)
        out, errors, lock = [], [], threading.Lock()
        threads = [threading.Thread(target=_sender, args=((sidecar if t % 2 == 0 else other).url, plan[t], out, errors, lock))
                   for t in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        sent = {r["id"] for batches in plan for b in batches for r in b}
        assert sum(o["inserted"] for o in out) == len(sent)
        assert sum(o["inserted"] + o["duplicates"] for o in out) == 12 * 10 * 80
        for i, e in enumerate(es):
            want = sum(r["cost_nano"] for j, r in enumerate(pool) if j % 3 == i and r["id"] in sent)
            assert spends(sidecar, e) == dict.fromkeys(["key", "team", "member", "user", "customer"], want), i
            assert spends(other, e)["key"] == want
    finally:
        other.stop()


def test_database_outage_is_a_503_and_nothing_is_lost(workdir):
    with Postgres() as pg:
        s = Sidecar(pg.create_database("ledger_outage"), workdir)
        try:
            e = setup_entities(s)
            before = [of(e, 1000 + i) for i in range(5)]
            assert post(s, before)["inserted"] == 5
            during = [of(e, 2000 + i) for i in range(8)] + before[:2]
            pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w", "stop")
            r = s.internal.post("/internal/v1/spend", json={"records": during})
            assert r.status_code == 503 and r.json()["error"]["type"] == "no_db_connection", r.text
            pg.start_again()
            deadline = time.monotonic() + 30
            while True:
                r = s.internal.post("/internal/v1/spend", json={"records": during})
                if r.status_code == 200:
                    break
                assert r.status_code == 503 and time.monotonic() < deadline, r.text
                time.sleep(0.2)
            assert r.json() == {"inserted": 8, "duplicates": 2, "rejected": [], "totals": []}
            assert post(s, during)["inserted"] == 0
            total = sum(x["cost_nano"] for x in before + during[:8])
            assert spends(s, e) == dict.fromkeys(["key", "team", "member", "user", "customer"], total)
            assert len(s.get("/spend/logs", api_key=e["hash"]).json()) == 13
        finally:
            s.stop()


def test_spend_logs_validate_against_litellm_and_filter_and_page(sidecar, litellm):
    e = setup_entities(sidecar)
    other = setup_entities(sidecar)
    t0 = now_ms() - 3_600_000
    mine = [of(e, 10_000 * (i + 1), start_ms=t0 + i * 1000) for i in range(25)]
    mine[3]["operation"], mine[4]["operation"], mine[5]["status"] = "embeddings", "completions", 0
    mine[6]["estimated"], mine[6]["attempts"], mine[7]["model"] = True, 3, None
    theirs = [of(other, 5, start_ms=t0 + 500 + i * 1000) for i in range(5)]
    post(sidecar, mine + theirs)
    rows = sidecar.get("/spend/logs").json()
    assert len(rows) == 30
    for row in rows:
        litellm.check("LiteLLM_SpendLogs", row)
    assert [r["startTime"] for r in rows] == sorted((r["startTime"] for r in rows), reverse=True)
    by_id = {r["request_id"]: r for r in rows}
    r3, r4, r5, r6, r7 = (by_id[mine[i]["id"]] for i in (3, 4, 5, 6, 7))
    assert (r3["call_type"], r4["call_type"], by_id[mine[0]["id"]]["call_type"]) == ("aembedding", "atext_completion", "acompletion")
    assert (r5["status"], r5["metadata"]["http_status"]) == ("failure", 0)
    assert (r6["metadata"]["estimated"], r6["metadata"]["attempts"], r6["metadata"]["attempted_retries"]) == (True, 3, 2)
    assert r7["model"] == "gpt-4o" and r7["model_group"] == "gpt-4o"
    r0 = by_id[mine[0]["id"]]
    assert (r0["prompt_tokens"], r0["completion_tokens"], r0["total_tokens"]) == (126, 30, 156)
    assert r0["metadata"]["usage"] == mine[0]["usage"]
    assert r0["metadata"]["client_request_id"] == mine[0]["client_request_id"]
    assert (r0["api_key"], r0["user"], r0["team_id"], r0["end_user"], r0["custom_llm_provider"]) == (
        e["hash"], e["user"], e["team"], e["customer"], "openai")
    assert nano(r0["spend"]) == 10_000 and r0["cache_hit"] == "False"
    # LiteLLM's filters: the key or its hash, the user, the request id (ours or the client's).
    assert len(sidecar.get("/spend/logs", api_key=e["key"]).json()) == 25
    assert len(sidecar.get("/spend/logs", api_key=other["hash"]).json()) == 5
    assert len(sidecar.get("/spend/logs", user_id=other["user"]).json()) == 5
    assert [r["request_id"] for r in sidecar.get("/spend/logs", request_id=mine[9]["client_request_id"]).json()] == [mine[9]["id"]]
    assert sidecar.get("/spend/logs", request_id=uuid.uuid4().hex).json() == []
    # Pages: at most `limit`, the truncation header, and a cursor to the next page.
    seen, params = [], {"api_key": e["hash"], "limit": 10}
    while True:
        r = sidecar.client.get("/spend/logs", params=params)
        assert r.status_code == 200
        seen += [x["request_id"] for x in r.json()]
        if "x-switchyard-next-before" not in r.headers:
            assert "x-litellm-spend-logs-truncated" not in r.headers
            break
        assert r.headers["x-litellm-spend-logs-truncated"] == "true"
        params = dict(params, before=r.headers["x-switchyard-next-before"])
    assert seen == [m["id"] for m in reversed(mine)]
    # Dates: rows of those days (summarize=false), or LiteLLM's daily summary.
    today = day(now_ms())
    yday = day(now_ms() - DAY_MS)
    rows = sidecar.get("/spend/logs", start_date=yday, end_date=today, summarize="false", user_id=e["user"]).json()
    assert len(rows) == 25
    summary = sidecar.get("/spend/logs", start_date=yday, end_date=today).json()
    days = {s["startTime"]: s for s in summary}
    assert set(days) <= {yday, today} and summary[-1]["startTime"] == today
    total = sum(m["cost_nano"] for m in mine) + 25
    assert nano(sum(s["spend"] for s in summary)) == total
    assert nano(sum(s.get(e["hash"], 0) for s in summary)) == total - 25
    assert nano(sum(s["users"].get(other["user"], 0) for s in summary)) == 25
    error(400, None, "end_date")(sidecar.get("/spend/logs", start_date=today))
    error(400, None, "limit")(sidecar.get("/spend/logs", limit=0))


def test_global_spend_report_has_litellms_shapes(sidecar):
    a, b = setup_entities(sidecar), setup_entities(sidecar)
    alias = sidecar.get("/team/info", team_id=a["team"]).json()["team_info"]["team_alias"]
    yday_ms = now_ms() - DAY_MS
    records = [of(a, 1000, start_ms=yday_ms), of(a, 2000), of(b, 4000), rec(cost=8000, end_user="walk-in")]
    post(sidecar, records)
    start, end = day(yday_ms), day(now_ms())
    teams = sidecar.get("/global/spend/report", start_date=start, end_date=end).json()
    assert [d["group_by_day"] for d in teams] == [f"{start}T00:00:00+00:00", f"{end}T00:00:00+00:00"]
    for d in teams:
        assert set(d) == {"group_by_day", "teams"}
        for t in d["teams"]:
            assert set(t) == {"team_name", "team_id", "total_spend", "metadata"}
            for m in t["metadata"]:
                assert set(m) == {"model", "api_key", "spend", "total_tokens"}
    today_teams = {t["team_name"]: t for t in teams[1]["teams"]}
    assert nano(today_teams[alias]["total_spend"]) == 2000
    assert nano(today_teams["Unassigned Team"]["total_spend"]) == 8000
    assert today_teams[alias]["metadata"] == [{"model": "gpt-4o-2024-08-06", "api_key": a["hash"], "spend": 2e-6, "total_tokens": 156}]
    one = sidecar.get("/global/spend/report", start_date=start, end_date=end, team_id=b["team"]).json()
    assert [[t["team_id"] for t in d["teams"]] for d in one] == [[b["team"]]]
    customers = sidecar.get("/global/spend/report", start_date=start, end_date=end, group_by="customer").json()
    assert all(set(d) == {"group_by_day", "customers"} for d in customers)
    assert {c["customer"] for c in customers[1]["customers"]} == {a["customer"], b["customer"], "walk-in"}
    keys = sidecar.get("/global/spend/report", start_date=start, end_date=end, group_by="api_key").json()
    for k in keys:
        assert set(k) == {"api_key", "total_cost", "total_input_tokens", "total_output_tokens", "model_details"}
        for m in k["model_details"]:
            assert set(m) == {"model", "total_cost", "total_input_tokens", "total_output_tokens"}
    assert [k["api_key"] for k in keys] == ["", b["hash"], a["hash"]], "costliest first"
    assert (nano(keys[2]["total_cost"]), keys[2]["total_input_tokens"], keys[2]["total_output_tokens"]) == (3000, 252, 60)
    by_key = sidecar.get("/global/spend/report", start_date=start, end_date=end, api_key=a["key"]).json()
    assert [k["api_key"] for k in by_key] == [a["hash"]]
    by_user = sidecar.get("/global/spend/report", start_date=start, end_date=end, internal_user_id=b["user"]).json()
    assert [k["api_key"] for k in by_user] == [b["hash"]]
    tc = sidecar.get("/global/spend/report", start_date=start, end_date=end, team_id=a["team"], customer_id=a["customer"]).json()
    assert [set(x) for d in tc for x in d["teams_customers"]] == [{"team_name", "team_id", "customer", "total_spend", "metadata"}] * 2
    error(400, None, "start_date")(sidecar.get("/global/spend/report"))
    error(400, None, "group_by")(sidecar.get("/global/spend/report", start_date=start, end_date=end, group_by="model"))
    error(400, None, "end_date")(sidecar.get("/global/spend/report", start_date=end, end_date=start))


def test_retention_deletes_old_ledger_rows_and_keeps_rollups_and_spend(database_url, workdir):
    old_ms = now_ms() - 100 * DAY_MS
    keep = Sidecar(database_url, workdir, env={"SPEND_LOG_RETENTION_DAYS": "0"})
    try:
        e = setup_entities(keep)
        old = [of(e, 1000 + i, start_ms=old_ms + i) for i in range(30)]
        fresh = of(e, 5000)
        assert post(keep, old + [fresh])["inserted"] == 31
        assert "retention off" in keep.log_text()
    finally:
        keep.stop()
    s = Sidecar(database_url, workdir)  # the default: 90 days
    try:
        deadline = time.monotonic() + 30
        while not any(l["fields"].get("message") == "old spend log rows deleted" for l in s.log_lines()):
            assert time.monotonic() < deadline, s.log_text()
            time.sleep(0.2)
        line = [l for l in s.log_lines() if l["fields"].get("message") == "old spend log rows deleted"][0]
        assert line["fields"]["deleted"] == 30
        d = day(old_ms)
        assert s.get("/spend/logs", start_date=d, end_date=d, summarize="false").json() == []
        assert [r["request_id"] for r in s.get("/spend/logs", api_key=e["hash"]).json()] == [fresh["id"]]
        # The rollups and the entities keep what the deleted rows counted.
        report = s.get("/global/spend/report", start_date=d, end_date=d, group_by="api_key").json()
        assert nano(report[0]["total_cost"]) == sum(r["cost_nano"] for r in old)
        assert spends(s, e)["key"] == sum(r["cost_nano"] for r in old) + 5000
        # A record this old can no longer be told from a duplicate: refused, not counted twice.
        body = post(s, [old[0]])
        assert body["inserted"] == 0 and "retention" in body["rejected"][0]["message"]
        assert spends(s, e)["key"] == sum(r["cost_nano"] for r in old) + 5000
    finally:
        s.stop()


def test_a_bad_retention_setting_stops_the_sidecar(workdir):
    r = subprocess.run([str(BIN)], env={"SPEND_LOG_RETENTION_DAYS": "ninety", "DATABASE_URL": f"sqlite://{workdir / 'x.db'}"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "SPEND_LOG_RETENTION_DAYS" in r.stderr


FIELDS = ["id", "client_request_id", "key_hash", "team_id", "user_id", "end_user", "model_group", "provider", "model",
          "operation", "status", "stream", "usage", "cost_nano", "estimated", "attempts", "start_ms", "end_ms", "new"]
VALUES = [None, True, 0, -1, 1.5, 2**64, 10**30, "", "x", "\u0000", "0" * 32, "f" * 64, "chat", [], {}, {"input": -1},
          {"output": 2**63}, "é" * 300]


def test_random_records_are_stored_or_refused_never_a_5xx(sidecar):
    rnd = random.Random(12)
    for _ in range(40):
        batch = []
        for _ in range(rnd.randint(0, 12)):
            r = rec(cost=rnd.randint(0, 10**6))
            for _ in range(rnd.randint(0, 3)):
                f = rnd.choice(FIELDS)
                if rnd.random() < 0.3:
                    r.pop(f, None)
                else:
                    r[f] = rnd.choice(VALUES)
            batch.append(r)
        resp = sidecar.internal.post("/internal/v1/spend", content=json.dumps({"records": batch}))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["inserted"] + body["duplicates"] + len(body["rejected"]) == len(batch)
        garbage = json.dumps(rnd.choice(VALUES + [{"records": rnd.choice(VALUES)}]))
        r = sidecar.internal.post("/internal/v1/spend", content=garbage)
        assert r.status_code < 500 and (r.status_code == 200) == (garbage == '{"records": []}'), (garbage, r.text)
    assert httpx.get(sidecar.url + "/health/readiness").status_code == 200
