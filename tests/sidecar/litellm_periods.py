"""Runs inside the LiteLLM test virtualenv (.venv-litellm, `litellm[proxy]==1.106.2`):
LiteLLM's own budget-period functions, for test_budgets.py to compare with
`switchyard-sidecar period`.

Protocol: one JSON object per line on stdin, `{"duration", "anchor", "first_reset", "t": [...],
"chain": n}` (times in unix seconds, `t` may have fractions); one line back:

- `next_reset`: `get_next_standardized_reset_time(duration, t, "UTC")` for each `t`;
- `seconds`: `duration_in_seconds(duration)` with the clock at `t` (its `mo` branch reads
  `time.time()` and local time: the process runs with `TZ=UTC`);
- `periods`: the period containing each `t` of LiteLLM's reset chain — the duration set at
  `anchor` (`budget_reset_at` = the pinned `first_reset`, or the next reset from the anchor),
  then, each time the reset job finds `budget_reset_at` passed, spend zeroed and
  `budget_reset_at` set to the next reset from then (`_reset_budget_common`), the job
  running exactly on time; `null` before the anchor;
- `chain`: the first `n` resets of that chain (the anchor first).
"""

import json
import os
import sys
import time
from datetime import datetime, timezone

os.environ["TZ"] = "UTC"
time.tzset()
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm.litellm_core_utils import duration_parser  # noqa: E402
from litellm.litellm_core_utils.duration_parser import duration_in_seconds, get_next_standardized_reset_time  # noqa: E402


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def nxt(duration: str, ts: float) -> float:
    return get_next_standardized_reset_time(duration, at(ts), "UTC").timestamp()


def seconds(duration: str, ts: float) -> int:
    real = duration_parser.time_module.time
    duration_parser.time_module.time = lambda: ts
    try:
        return duration_in_seconds(duration)
    finally:
        duration_parser.time_module.time = real


def answer(req: dict) -> dict:
    d, anchor = req["duration"], req["anchor"]
    first = req.get("first_reset")
    r1 = first if first is not None and first > anchor else nxt(d, anchor)
    ts = sorted(set(req["t"]))
    horizon = max(ts + [anchor]) if ts else anchor
    chain = [anchor, r1]
    while chain[-1] <= horizon or len(chain) < req.get("chain", 0):
        chain.append(nxt(d, chain[-1]))
        if len(chain) > 200_000:
            raise RuntimeError("chain too long")
    periods = {}
    i = 0
    for t in ts:
        if t < anchor:
            periods[t] = None
            continue
        while chain[i + 1] <= t:
            i += 1
        periods[t] = [int(chain[i]), int(chain[i + 1])]
    return {
        "periods": [periods[t] for t in req["t"]],
        "next_reset": [int(nxt(d, t)) for t in req["t"]],
        "seconds": [seconds(d, t) for t in req["t"]],
        "chain": [int(c) for c in chain[: req.get("chain", 0)]],
    }


for line in sys.stdin:
    try:
        out = answer(json.loads(line))
    except Exception as e:  # noqa: BLE001 - reported to the test
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
