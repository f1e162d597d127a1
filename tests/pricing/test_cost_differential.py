"""Switchyard's cost engine against LiteLLM's, over the whole built-in catalog.

For every entry of `switchyard catalog --json` and several usage shapes (plain; cache reads;
5-minute and 1-hour cache writes; reasoning; at and just above each threshold tier; large
counts), the cost `switchyard cost --batch` computes must equal LiteLLM's
`litellm.cost_per_token` for the same usage and model (prompt + completion cost), run by
tests/pricing/litellm_cost.py in the LiteLLM virtualenv:

    |ours × 1e-9 − LiteLLM's| ≤ 0.5e-9 + 1e-12 × |LiteLLM's|

(ours is exact and rounded once to the nano-USD; LiteLLM's is a sum of floats). Needs the
command line (`cargo build --release -p switchyard-cli`; SWITCHYARD_CLI names another
build) and `.venv-litellm` (`make litellm-venv`; LITELLM_VENV names another).
"""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("SWITCHYARD_CLI", ROOT / "target" / "release" / "switchyard"))
LITELLM_PY = Path(os.environ.get("LITELLM_VENV", ROOT / ".venv-litellm")) / "bin" / "python"
ORACLE = Path(__file__).with_name("litellm_cost.py")

KINDS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")


def usage(**counts: int) -> dict:
    return {k: counts.get(k, 0) for k in KINDS}


# Shapes for chat and completion models: (name, usage).
SHAPES = [
    ("plain", usage(input=1234, output=567)),
    ("cache read", usage(input=100, cache_read=5000, output=50)),
    ("cache write 5m", usage(input=10, cache_write_5m=2000, output=10)),
    ("cache write 1h", usage(input=10, cache_write_5m=300, cache_write_1h=2000, output=10)),
    ("reasoning", usage(input=100, output=900, reasoning=700)),
    ("everything", usage(input=3333, cache_read=4444, cache_write_5m=555, cache_write_1h=66, output=7777, reasoning=888)),
    ("large", usage(input=98_765, cache_read=12_345, output=99_991, reasoning=54_321)),
    ("one token", usage(input=1)),
    ("nothing", usage()),
]
EMBEDDING_SHAPES = [
    ("plain", usage(input=1234)),
    ("large", usage(input=7_654_321)),
]


def tier_shapes(above: int) -> list[tuple[str, dict]]:
    """At the threshold and one token past it, the prompt made of every kind of input."""
    return [
        (f"at {above}", usage(input=above - 3000, cache_read=2000, cache_write_5m=600, cache_write_1h=400,
                              output=1000, reasoning=300)),
        (f"above {above}", usage(input=above - 2999, cache_read=2000, cache_write_5m=600, cache_write_1h=400,
                                 output=1000, reasoning=300)),
        (f"above {above}, cached", usage(input=1, cache_read=above, output=10)),
    ]


def as_reported(litellm_provider: str, u: dict) -> dict:
    """Anthropic does not report thinking apart from output (src/providers/anthropic.rs, `billed`;
    LiteLLM estimates it from the thinking text, which a usage object has not): no reasoning."""
    return {**u, "reasoning": 0} if litellm_provider == "anthropic" else u


def within(ours_nano: int, theirs: Fraction) -> bool:
    return abs(Fraction(ours_nano, 10**9) - theirs) <= Fraction(1, 2 * 10**9) + abs(theirs) / 10**12


def run_text(args: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=600)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{args[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: build it with `cargo build --locked --release -p switchyard-cli`")
    if not LITELLM_PY.exists():
        pytest.fail(f"{LITELLM_PY} is missing: run `make litellm-venv`")
    return json.loads(run_text([str(CLI), "catalog", "--json"]))


def ours(cases: list[dict]) -> list[dict]:
    requests = [{"provider": c["provider"], "model": c["model"], "usage": c["usage"],
                 **({"metadata": c["metadata"]} if "metadata" in c else {})} for c in cases]
    lines = run_text([str(CLI), "cost", "--batch"], json.dumps(requests)).splitlines()
    assert len(lines) == len(cases)
    return [json.loads(line) for line in lines]


def litellms(cases: list[dict]) -> list[Fraction]:
    oracle_cases = [{"model": c["model"], "key": c["key"], "litellm_provider": c["litellm_provider"],
                     "mode": c["mode"], "usage": c["usage"], "overrides": c.get("overrides")} for c in cases]
    out = json.loads(run_text([str(LITELLM_PY), str(ORACLE)], json.dumps(oracle_cases)))
    return [Fraction(float(prompt)) + Fraction(float(completion)) for prompt, completion in out]


def compare(cases: list[dict]) -> None:
    mismatches = []
    for case, mine, theirs in zip(cases, ours(cases), litellms(cases), strict=True):
        if not mine.get("ok"):
            mismatches.append(f"{case['provider']} {case['model']} ({case['shape']}): {mine.get('error')}")
        elif not within(mine["nano_usd"], theirs):
            mismatches.append(f"{case['provider']} {case['model']} ({case['shape']}) {case['usage']}: "
                              f"ours {mine['usd']} USD, LiteLLM's {float(theirs)!r}")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ:\n" + "\n".join(mismatches[:40])


def test_every_catalog_entry_costs_what_litellm_says(catalog):
    cases = []
    for entry in catalog:
        shapes = EMBEDDING_SHAPES if entry["mode"] == "embedding" else SHAPES
        shapes = shapes + [s for tier in entry["tiers"] for s in tier_shapes(tier["above"])]
        for shape, u in shapes:
            cases.append({"provider": entry["provider"], "model": entry["model"], "key": entry["litellm_key"],
                          "litellm_provider": entry["litellm_provider"], "mode": entry["mode"],
                          "shape": shape, "usage": as_reported(entry["litellm_provider"], u)})
    assert len({c["key"] for c in cases}) == len(catalog) > 300
    compare(cases)


# Endpoint metadata over a catalog entry (LiteLLM: the deployment's prices merged over its
# base model's price map entry), by LiteLLM's names, as a YAML config would give them.
OVERRIDES = [
    {"input_cost_per_token": "0.0000042", "output_cost_per_token": "0.000017"},
    {"cache_read_input_token_cost": "0.00000011", "cache_creation_input_token_cost": "0.0000051"},
    {"cache_creation_input_token_cost_above_1hr": "0.0000093", "output_cost_per_reasoning_token": "0.000031"},
    {"input_cost_per_token_above_200k_tokens": "0.0000061", "output_cost_per_token_above_200k_tokens": "0.000029",
     "cache_read_input_token_cost_above_200k_tokens": "0.00000071"},
]
OVERRIDDEN = ["anthropic/claude-haiku-4-5", "gemini/gemini-2.5-pro", "openai/gpt-5.4", "azure/gpt-4.1",
              "xai/grok-4.3", "deepseek/deepseek-v4-pro", "fireworks/kimi-k3", "perplexity/sonar-pro",
              "mistral/mistral-small-latest"]


def test_metadata_prices_over_the_catalog_cost_what_litellm_says(catalog):
    by_name = {f"{e['provider']}/{e['model']}": e for e in catalog}
    shapes = SHAPES + tier_shapes(200_000) + tier_shapes(272_000)
    cases = []
    for name in OVERRIDDEN:
        entry = by_name[name]
        for overrides in OVERRIDES:
            for shape, u in shapes:
                cases.append({"provider": entry["provider"], "model": entry["model"], "key": entry["litellm_key"],
                              "litellm_provider": entry["litellm_provider"], "mode": entry["mode"],
                              "shape": f"{shape}, {sorted(overrides)}",
                              "usage": as_reported(entry["litellm_provider"], u),
                              "metadata": overrides, "overrides": overrides})
    compare(cases)
