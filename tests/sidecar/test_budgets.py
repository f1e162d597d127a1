"""Budgets (contract: docs/budgets.md).

- Periods against LiteLLM 1.106.2's own functions: `get_next_standardized_reset_time`,
  `duration_in_seconds`, and the reset chain its job produces (litellm_periods.py, run in
  .venv-litellm), against `switchyard-sidecar period`, over many durations and instants,
  the chain's boundaries themselves included.
- `/budget/*` end to end, responses validated with LiteLLM's pydantic models; `budget_id`
  on keys and end users; refusals naming the field.
- The filter's side through the real binary, on SQLite and PostgreSQL: a key's `budgets`
  in LiteLLM's precedence, an end user's budget from its linked row, the batch answer's
  `totals`, and a duration set later re-baselining.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from pathlib import Path

from sidecar_harness import BIN, LITELLM_PY, error, sha, uid

HERE = Path(__file__).resolve().parent

DURATIONS = (
    [f"{n}s" for n in (1, 2, 5, 7, 10, 15, 30, 45, 59, 60, 61, 90, 120, 150, 3600, 7200, 86399, 86400, 90000)]
    + [f"{n}m" for n in (1, 5, 7, 15, 30, 45, 59, 60, 61, 90, 120, 150, 180, 720, 1439, 1440, 1500, 2880, 10000)]
    + [f"{n}h" for n in (1, 2, 3, 5, 7, 8, 11, 12, 13, 23, 24, 25, 30, 48, 72, 100)]
    + [f"{n}d" for n in (1, 2, 3, 6, 7, 8, 10, 14, 28, 29, 30, 31, 45, 90, 365)]
    + [f"{n}w" for n in (1, 2, 3, 4, 5)]
    + ["1mo", "hourly", "daily", "weekly", "monthly"]
)

EDGES = [
    "2026-11-25T15:30:00",  # GOVERNANCE.md §1.4's instant (a Wednesday)
    "2026-11-30T00:00:00",  # a Monday, midnight
    "2026-11-29T23:59:59",  # a Sunday's last second
    "2026-12-31T23:59:59",
    "2027-01-01T00:00:00",
    "2028-02-29T12:00:00",  # a leap day
    "2027-02-28T23:30:00",
    "2030-06-30T23:59:30",
]


def ts(text: str) -> int:
    from datetime import datetime, timezone
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def span(d: str) -> int:
    """About one period of `d`, in seconds."""
    words = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
    d = words.get(d, d)
    if d.endswith("mo"):
        return 31 * 86400
    n, unit = int(d[:-1]), d[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def run_lines(cmd: list[str], requests: list[dict]) -> list[dict]:
    out = subprocess.run(cmd, input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin", "TZ": "UTC", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr[-4000:]
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    assert len(lines) == len(requests), out.stderr[-4000:]
    for req, line in zip(requests, lines):
        assert "error" not in line, (req, line)
    return lines


def litellm(requests):
    return run_lines([str(LITELLM_PY), str(HERE / "litellm_periods.py")], requests)


def ours(requests):
    # The sidecar reads whole seconds (a record's end is cut to its second; resets fall on
    # whole seconds, so the second decides).
    return run_lines([str(BIN), "period"], [dict(r, t=[math.floor(t) for t in r["t"]]) for r in requests])


def cases(rng: random.Random) -> list[dict]:
    reqs = []
    for d in DURATIONS:
        anchors = [ts(e) for e in EDGES] + [rng.randrange(ts("2020-01-01T00:00:00"), ts("2035-01-01T00:00:00")) for _ in range(4)]
        for anchor in anchors:
            s = span(d)
            # Instants from just before the anchor to ~150 periods (or ~2 years) after it.
            reach = min(150 * s, 2 * 366 * 86400)
            t = [anchor - 1, anchor, anchor + 0.25] + [anchor + rng.randrange(0, reach) + rng.choice((0, 0.5)) for _ in range(12)]
            t += [ts(e) for e in EDGES if anchor <= ts(e) <= anchor + reach]
            first = None
            if rng.random() < 0.2:
                first = anchor + rng.randrange(-3600, 3 * s + 1)  # a pinned budget_reset_at (maybe not after the anchor)
            reqs.append({"duration": d, "anchor": anchor, "first_reset": first, "t": t, "chain": 25})
    return reqs


def test_periods_and_resets_match_litellm():
    reqs = cases(random.Random(1106))
    theirs, mine = litellm(reqs), ours(reqs)
    compared = 0
    for req, a, b in zip(reqs, theirs, mine):
        assert b["next_reset"] == a["next_reset"], (req["duration"], req["t"], a["next_reset"], b["next_reset"])
        assert b["seconds"] == a["seconds"], (req["duration"], a["seconds"], b["seconds"])
        assert b["periods"] == a["periods"], (req, a["periods"], b["periods"])
        compared += len(req["t"])
    assert compared > 10_000
    # The chain's boundaries themselves: at each reset a new period starts, ending at the
    # next reset; a second before, the old one ends there.
    bounds = [dict(req, t=a["chain"][1:] + [c - 1 for c in a["chain"][1:]], chain=0) for req, a in zip(reqs, theirs)]
    theirs_b, mine_b = litellm(bounds), ours(bounds)
    for req, a, b, full in zip(bounds, theirs_b, mine_b, theirs):
        assert b["periods"] == a["periods"], (req["duration"], req["anchor"], a["periods"], b["periods"])
        chain = full["chain"]
        for i in range(1, len(chain) - 1):
            assert b["periods"][i - 1] == [chain[i], chain[i + 1]], (req["duration"], req["anchor"], i)


def test_period_subcommand_refuses_what_cannot_reset():
    out = subprocess.run([str(BIN), "period"], input='{"duration": "2mo", "anchor": 0, "t": [1]}\n{"duration": "x"}\nnot json\n',
                         capture_output=True, text=True, timeout=30)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert out.returncode == 0 and len(lines) == 3 and all("error" in x for x in lines), out


# ---------------------------------------------------------------- /budget/*

def test_budget_endpoints_have_litellms_shapes(sidecar, litellm):
    bid = uid("tier")
    r = sidecar.post("/budget/new", {"budget_id": bid, "max_budget": 10, "soft_budget": 8, "rpm_limit": 5, "tpm_limit": 500,
                                     "max_parallel_requests": 2, "tpd_limit": 9000, "budget_duration": "1mo",
                                     "model_max_budget": {"gpt-4o": {"max_budget": "0.5", "budget_duration": "1d", "rpm_limit": 3}}})
    assert r.status_code == 200, r.text
    b = r.json()
    litellm.check("LiteLLM_BudgetTableFull", b)
    assert (b["budget_id"], b["max_budget"], b["soft_budget"], b["rpm_limit"], b["budget_duration"]) == (bid, 10, 8, 5, "1mo")
    assert b["model_max_budget"] == {"gpt-4o": {"max_budget": 0.5, "budget_duration": "1d", "rpm_limit": 3}}
    assert b["budget_reset_at"].endswith("-01T00:00:00Z") and b["created_by"] == "default_user_id"
    # Generated id; pinned first reset.
    r = sidecar.post("/budget/new", {"max_budget": 1, "budget_duration": "1d", "budget_reset_at": "2099-01-01T12:00:00Z"})
    other = r.json()
    litellm.check("LiteLLM_BudgetTableFull", other)
    assert len(other["budget_id"]) == 36 and other["budget_reset_at"] == "2099-01-01T12:00:00Z"
    info = sidecar.post("/budget/info", {"budgets": [bid, other["budget_id"], "nope"]})
    assert info.status_code == 200 and sorted(x["budget_id"] for x in info.json()) == sorted([bid, other["budget_id"]])
    for x in info.json():
        litellm.check("LiteLLM_BudgetTableFull", x)
    listed = sidecar.get("/budget/list").json()
    assert {bid, other["budget_id"]} <= {x["budget_id"] for x in listed}
    u = sidecar.post("/budget/update", {"budget_id": bid, "max_budget": 12, "budget_duration": "7d"})
    assert u.status_code == 200, u.text
    litellm.check("LiteLLM_BudgetTableFull", u.json())
    assert (u.json()["max_budget"], u.json()["soft_budget"], u.json()["budget_duration"]) == (12, 8, "7d")
    s = sidecar.get("/budget/settings", budget_id=bid)
    assert s.status_code == 200
    for item in s.json():
        litellm.check("ConfigList", item)
    values = {x["field_name"]: x["field_value"] for x in s.json()}
    assert values == {"max_budget": 12, "soft_budget": 8, "max_parallel_requests": 2, "tpm_limit": 500, "rpm_limit": 5,
                      "tpd_limit": 9000, "budget_duration": "7d",
                      "model_max_budget": {"gpt-4o": {"max_budget": 0.5, "budget_duration": "1d", "rpm_limit": 3}}}
    # The descriptions and order are LiteLLM's BudgetNewRequest's.
    script = ("import json; from litellm.proxy._types import BudgetNewRequest as B; allowed = " + json.dumps(list(values)) +
              "; print(json.dumps([[n, f.description] for n, f in B.model_fields.items() if n in allowed]))")
    out = subprocess.run([str(LITELLM_PY), "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert [[x["field_name"], x["field_description"]] for x in s.json()] == json.loads(out.stdout.strip().splitlines()[-1])
    assert all(x["field_value"] is None for x in sidecar.get("/budget/settings", budget_id="nope").json())
    # Keys and end users link to it; the end user's litellm_budget_table is the row.
    k = sidecar.post("/key/generate", {"budget_id": bid})
    assert k.status_code == 200, k.text
    litellm.check("GenerateKeyResponse", k.json())
    c = sidecar.post("/customer/new", {"user_id": uid("c"), "budget_id": bid})
    assert c.status_code == 200, c.text
    litellm.check("CustomerResponse", c.json())
    assert c.json()["litellm_budget_table"]["max_budget"] == 12 and c.json()["budget_id"] == bid
    d = sidecar.post("/budget/delete", {"id": other["budget_id"]})
    assert d.status_code == 200 and d.json()["budget_id"] == other["budget_id"]
    litellm.check("LiteLLM_BudgetTableFull", d.json())
    error(404, "budget not found", "id", "not_found_error")(sidecar.post("/budget/delete", {"id": other["budget_id"]}))


def test_budget_endpoints_refuse_bad_input_naming_the_field(sidecar):
    for body, param, part in [
        ({"max_budget": -1}, "max_budget", "non-negative"),
        ({"soft_budget": "x"}, "soft_budget", "non-negative"),
        ({"rpm_limit": -3}, "rpm_limit", "non-negative integer"),
        ({"tpm_limit": 2.5}, "tpm_limit", "non-negative integer"),
        ({"budget_duration": "10ms"}, "budget_duration", "invalid duration"),
        ({"budget_duration": "0d"}, "budget_duration", "longer than zero"),
        ({"budget_duration": "2mo"}, "budget_duration", "only 1mo"),
        ({"budget_reset_at": "soon"}, "budget_reset_at", "ISO 8601"),
        ({"model_max_budget": {"m": {"max_budget": -1}}}, "model_max_budget.m.max_budget", "non-negative"),
        ({"model_max_budget": {"m": {"budget_duration": "x"}}}, "model_max_budget.m.budget_duration", "invalid duration"),
        ({"model_max_budget": {"m": {"tier": 1}}}, "model_max_budget.m.tier", "unknown field"),
        ({"model_max_budget": ["m"]}, "model_max_budget", "must be an object"),
        ({"colour": "blue"}, "colour", 'unknown field "colour"'),
        ({"budget_id": 5}, "budget_id", "must be a string"),
    ]:
        error(400, part, param)(sidecar.post("/budget/new", body))
    bid = uid("b")
    assert sidecar.post("/budget/new", {"budget_id": bid}).status_code == 200
    error(400, f"Budget with id '{bid}' already exists.", "budget_id")(sidecar.post("/budget/new", {"budget_id": bid}))
    error(400, "budget_id is required", "budget_id")(sidecar.post("/budget/update", {"max_budget": 1}))
    error(404, "budget not found", "budget_id", "not_found_error")(sidecar.post("/budget/update", {"budget_id": "nope"}))
    error(400, "Specify list of budget id", "budgets")(sidecar.post("/budget/info", {"budgets": []}))
    error(400, "missing required field", "budgets")(sidecar.post("/budget/info", {}))
    error(400, "pass ?budget_id=", "budget_id")(sidecar.get("/budget/settings"))
    error(400, "unknown budget_id", "budget_id")(sidecar.post("/key/generate", {"budget_id": "nope"}))
    error(400, "unknown budget_id", "budget_id")(sidecar.post("/customer/new", {"user_id": uid("c"), "budget_id": "nope"}))
    error(400, "not both", "max_budget")(sidecar.post("/customer/new", {"user_id": uid("c"), "budget_id": bid, "max_budget": 1}))
    error(401, None, None, "auth_error")(sidecar.client.get("/budget/list", headers={"Authorization": "Bearer wrong"}))


# ---------------------------------------------------------------- the filter's side

def record(n: int, key: str, cost: int, end_ms: int, **who) -> dict:
    return {"id": f"{n:032x}", "key_hash": sha(key), "model_group": who.pop("model", "gpt-4o"), "operation": "chat",
            "status": 200, "stream": False, "usage": {"input": 10, "output": 5}, "cost_nano": cost, "estimated": False,
            "attempts": 1, "start_ms": end_ms - 300, "end_ms": end_ms, **who}


def test_lookups_totals_and_rebaselining_through_the_binary(sidecar, litellm):
    team, user, cust, tier = uid("t"), uid("u"), uid("c"), uid("tier")
    base = int(time.time() * 1000) * 100  # record ids unique per run
    assert sidecar.post("/budget/new", {"budget_id": tier, "max_budget": 2, "budget_duration": "1d"}).status_code == 200
    assert sidecar.post("/user/new", {"user_id": user, "max_budget": 9, "auto_create_key": False}).status_code == 200
    t = sidecar.post("/team/new", {"team_id": team, "max_budget": 50, "soft_budget": 40, "budget_duration": "30d"})
    litellm.check("LiteLLM_TeamTable", t.json())
    assert t.json()["budget_reset_at"].endswith("-01T00:00:00Z")
    m = sidecar.post("/team/member_add", {"team_id": team, "member": {"user_id": user, "role": "user"},
                                          "max_budget_in_team": 4, "budget_duration": "1d"})
    litellm.check("TeamAddMemberResponse", m.json())
    tk = sidecar.post("/key/generate", {"team_id": team, "user_id": user, "max_budget": 3, "budget_duration": "1d",
                                        "model_max_budget": {"gpt-4o": {"max_budget": 1, "budget_duration": "1h"}}}).json()
    pk = sidecar.post("/key/generate", {"user_id": user, "budget_id": tier}).json()
    c = sidecar.post("/customer/new", {"user_id": cust, "budget_id": tier})
    litellm.check("CustomerResponse", c.json())
    now = int(time.time() * 1000)
    batch = [record(base + 1, tk["key"], 1000, now + 500, team_id=team, user_id=user, end_user=cust),
             record(base + 2, pk["key"], 2000, now + 600, user_id=user, end_user=cust),
             record(base + 3, pk["key"], 0, now + 700, user_id=user)]
    r = sidecar.internal.post("/internal/v1/spend", json={"records": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["inserted"], body["duplicates"], body["rejected"]) == (3, 0, [])
    got = {(x["kind"], x["id"]): x for x in body["totals"]}
    assert set(got) == {("key", tk["token"]), ("key_model", f"{tk['token']}:gpt-4o"), ("team", team),
                        ("team_member", f"{team}:{user}"), ("user", user), ("key", pk["token"]), ("end_user", cust)}, body
    assert got[("user", user)] == {"kind": "user", "id": user, "period_start_ms": None, "spent_nano": 3000}
    assert got[("end_user", cust)]["spent_nano"] == 3000 and isinstance(got[("end_user", cust)]["period_start_ms"], int)
    assert [(x["kind"], x["id"]) for x in body["totals"]] == sorted((x["kind"], x["id"]) for x in body["totals"])
    again = sidecar.internal.post("/internal/v1/spend", json={"records": batch}).json()
    assert (again["inserted"], again["totals"]) == (0, [])
    # The team key: key, team, membership, its model budget (not the user's budget).
    rec = sidecar.internal.get(f"/internal/v1/keys/{tk['token']}").json()
    assert [(b["kind"], b["id"]) for b in rec["budgets"]] == [
        ("key", tk["token"]), ("team", team), ("team_member", f"{team}:{user}"), ("key_model", f"{tk['token']}:gpt-4o")]
    kb = rec["budgets"][0]
    assert set(kb) == {"kind", "id", "max_budget_nano", "soft_budget_nano", "spent_nano", "period_start_ms", "period_end_ms",
                       "model", "budget_id"}
    assert (kb["max_budget_nano"], kb["soft_budget_nano"], kb["model"], kb["budget_id"]) == (3_000_000_000, None, None, None)
    assert kb["period_end_ms"] % 86_400_000 == 0 and kb["period_start_ms"] <= now < kb["period_end_ms"]
    assert rec["budgets"][1]["soft_budget_nano"] == 40_000_000_000 and rec["budgets"][3]["model"] == "gpt-4o"
    # The personal key: the tier's limits (budget_id), the user's lifetime budget.
    rec = sidecar.internal.get(f"/internal/v1/keys/{pk['token']}").json()
    assert [(b["kind"], b["budget_id"]) for b in rec["budgets"]] == [("key", tier), ("user", None)]
    assert (rec["budgets"][0]["max_budget_nano"], rec["budgets"][1]["spent_nano"], rec["budgets"][1]["period_end_ms"]) == \
        (2_000_000_000, 3000, None)
    # The end user: the tier's budget, its own spend; in the page the filter loads.
    crec = sidecar.internal.get(f"/internal/v1/customers/{cust}").json()
    assert [(b["kind"], b["max_budget_nano"], b["budget_id"]) for b in crec["budgets"]] == [("end_user", 2_000_000_000, tier)]
    page = sidecar.internal.get("/internal/v1/customers").json()
    assert cust in {x["user_id"] for x in page["customers"]}
    # Info endpoints: lifetime spend (as LiteLLM), budget_reset_at derived.
    info = sidecar.get("/key/info", key=tk["key"]).json()["info"]
    litellm.check("LiteLLM_VerificationToken", info)
    assert info["spend"] == 1e-6 and info["budget_reset_at"].endswith("T00:00:00Z")
    # A duration set later starts a period from then (LiteLLM #22013 keeps the old spend).
    time.sleep(1.1)
    u = sidecar.post("/user/update", {"user_id": user, "budget_duration": "1d"})
    assert u.status_code == 200, u.text
    litellm.check("LiteLLM_UserTable", u.json()["data"])
    rec = sidecar.internal.get(f"/internal/v1/keys/{pk['token']}").json()
    ub = rec["budgets"][1]
    assert ub["kind"] == "user" and ub["spent_nano"] == 0 and ub["period_start_ms"] > now, ub
    assert sidecar.get("/user/info", user_id=user).json()["user_info"]["spend"] == 3e-6
