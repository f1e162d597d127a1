"""The config lint (tools/gatewayconf.py): endpoint metadata checked by the filter's own
rules through the `switchyard` command line, and stream routes kept free of
per_try_timeout. No Envoy needed."""

from __future__ import annotations

import copy
import datetime
import json
import subprocess
import sys

import pytest

import gatewayconf


@pytest.fixture
def doc() -> dict:
    return gatewayconf.load()


def metadata(doc: dict, cluster: str) -> dict:
    return gatewayconf.endpoint_metadata(gatewayconf.endpoints(gatewayconf.cluster(doc, cluster))[0])


def where(doc: dict, cluster: str) -> str:
    address = gatewayconf.endpoints(gatewayconf.cluster(doc, cluster))[0]["endpoint"]["address"]["socket_address"]
    return f"cluster {cluster!r} endpoint {address}"


def test_the_shipped_config_passes(doc):
    assert gatewayconf.lint(doc) == []


def test_the_command_line_lint_passes_the_shipped_config_and_refuses_a_bad_one(tmp_path):
    script = gatewayconf.ROOT / "tools" / "gatewayconf.py"
    ok = subprocess.run([sys.executable, str(script), "--switchyard", str(gatewayconf.CLI),
                         str(gatewayconf.SHIPPED)], capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout) == (0, ""), ok.stderr
    bad = gatewayconf.load()
    metadata(bad, "model.gpt-4.1")["provider"] = "carrier-pigeon"
    path = gatewayconf.write(bad, tmp_path / "bad.json")  # JSON is YAML
    refused = subprocess.run([sys.executable, str(script), "--switchyard", str(gatewayconf.CLI), str(path)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stdout == f'{where(bad, "model.gpt-4.1")}: unknown provider "carrier-pigeon"\n'


@pytest.mark.parametrize("change, message", [
    ({"provider": "carrier-pigeon"}, 'unknown provider "carrier-pigeon"'),
    ({"api_key_evn": "OPENAI_API_KEY"}, 'unknown metadata key "api_key_evn" (known: provider, model, '),
    ({"unsupported_params": "ignore"}, 'unsupported_params must be default, drop or reject, not "ignore"'),
    ({"max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"api_base": "api.openai.com/v1"}, 'api_base "api.openai.com/v1" must start with http:// or https://'),
    ({"model": "gpt 4.1"}, 'model "gpt 4.1" must be printable ASCII without spaces'),
    ({"input_cost_per_token": "cheap"}, "input_cost_per_token must be a number, 0 or more"),
])
def test_bad_metadata_is_refused_with_the_filters_message(doc, change, message):
    metadata(doc, "model.gpt-4.1").update(change)
    problems = gatewayconf.lint(doc)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f'{where(doc, "model.gpt-4.1")}: {message}')


def test_every_endpoint_is_checked_and_a_missing_provider_is_named(doc):
    for name in ("model.demo", "model.gemini-2.5-flash"):
        metadata(doc, name).pop("provider")
    problems = gatewayconf.lint(doc)
    assert problems == [f"{where(doc, name)}: endpoint metadata has no provider"
                        for name in ("model.demo", "model.gemini-2.5-flash")]


def test_what_the_filter_accepts_passes(doc):
    meta = metadata(doc, "model.gpt-4.1")
    # Prices (LiteLLM's names) override the built-in catalog; numbers may be quoted;
    # an unquoted YAML date is text to Envoy.
    meta.update(input_cost_per_token=2e-6, output_cost_per_token="0.000008", cache_read_input_token_cost=5e-7,
                cache_creation_input_token_cost=0, max_tokens="4096", unsupported_params="drop",
                api_version=datetime.date(2024, 10, 21), model="")
    assert gatewayconf.lint(doc) == []


def test_the_lint_and_the_schema_come_from_the_binary():
    schema = json.loads(subprocess.run([str(gatewayconf.CLI), "schema"], capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    keys = {k["name"]: k for k in schema["keys"]}
    assert keys["provider"]["required"] and keys["provider"]["values"] == [p["name"] for p in schema["providers"]]
    assert {"anthropic", "gemini", "openai", "azure", "mistral"} <= set(keys["provider"]["values"])
    assert keys["unsupported_params"]["values"] == ["default", "drop", "reject"]
    assert keys["input_cost_per_token"]["read_by"] == "filter"
    assert {"base_model", "cache_creation_input_token_cost_above_1hr", "output_cost_per_reasoning_token"} <= set(keys)
    # Every provider the schema lists passes the lint, every other name fails.
    results = gatewayconf.check_endpoints([{"provider": p} for p in keys["provider"]["values"]] + [{"provider": "x"}])
    assert results == [None] * len(keys["provider"]["values"]) + ['unknown provider "x"']


def test_a_missing_binary_is_a_clear_error(doc, tmp_path):
    with pytest.raises(FileNotFoundError, match="cargo build --locked --release -p switchyard-cli"):
        gatewayconf.lint(doc, tmp_path / "switchyard")


# --- stream routes and per_try_timeout ---------------------------------------------


def stream_route(doc: dict, model: str) -> dict:
    return next(r for r in gatewayconf.routes(doc)
                if gatewayconf.route_model(r) == model and gatewayconf.is_stream_route(r))


def test_a_stream_route_may_not_set_per_try_timeout(doc):
    route = stream_route(doc, "claude-haiku-4-5")
    # The shipped stream routes share one retry policy (a YAML anchor): change a copy.
    route["route"]["retry_policy"] = {**copy.deepcopy(route["route"]["retry_policy"]), "per_try_timeout": "300s"}
    problems = gatewayconf.lint(doc)
    assert len(problems) == 1, problems
    assert problems[0].startswith("stream route for 'claude-haiku-4-5': its retry_policy must not set per_try_timeout")
    assert "deletes the attempt's per_try_idle_timeout timer" in problems[0]


@pytest.mark.parametrize("per_try_timeout", ["0s", "0.000s", {"seconds": 0}])
def test_a_zero_per_try_timeout_is_no_timeout(doc, per_try_timeout):
    route = stream_route(doc, "gpt-4.1")
    route["route"]["retry_policy"] = {**route["route"]["retry_policy"], "per_try_timeout": per_try_timeout}
    assert gatewayconf.lint(doc) == []


def test_a_virtual_host_per_try_timeout_reaches_stream_routes_without_their_own_policy(doc):
    vhost = gatewayconf._hcm(doc)["route_config"]["virtual_hosts"][0]
    vhost["retry_policy"] = {"retry_on": "5xx", "per_try_timeout": {"seconds": 30}}
    route = stream_route(doc, "demo")
    route["route"].pop("retry_policy")
    problems = gatewayconf.lint(doc)
    assert [p.split(":")[0] for p in problems] == ["stream route for 'demo'"], problems


def test_non_stream_routes_keep_their_per_try_timeout(doc):
    chat = next(r for r in gatewayconf.routes(doc)
                if gatewayconf.route_model(r) == "gpt-4.1" and not gatewayconf.is_stream_route(r))
    assert chat["route"]["retry_policy"]["per_try_timeout"] == "300s"
    assert "per_try_timeout" not in stream_route(doc, "gpt-4.1")["route"]["retry_policy"]
    assert gatewayconf.lint(doc) == []


def upstream_config(doc: dict, cluster: str) -> dict:
    c = gatewayconf.cluster(doc, cluster)
    # The shipped clusters share one filter block (a YAML anchor): give this one a copy.
    c["typed_extension_protocol_options"] = copy.deepcopy(c["typed_extension_protocol_options"])
    wasm = next(f for f in gatewayconf._upstream_filters(c) if f.get("typed_config", {}).get("@type")
                == gatewayconf.WASM_FILTER_TYPE)
    return wasm["typed_config"]["config"]["configuration"]["value"]


@pytest.mark.parametrize("stall, idle, refused", [(55, "60s", False), (60, "60s", True), (90, "60s", True),
                                                  (0, "10s", False), (None, "50s", True), (None, "56s", False)])
def test_the_stall_timeout_must_be_below_the_stream_idle_timeout(doc, stall, idle, refused):
    value = upstream_config(doc, "model.gpt-4.1")
    value.pop("stream_stall_timeout", None)
    if stall is not None:
        value["stream_stall_timeout"] = stall
    route = stream_route(doc, "gpt-4.1")
    route["route"]["retry_policy"] = {**copy.deepcopy(route["route"]["retry_policy"]), "per_try_idle_timeout": idle}
    problems = gatewayconf.lint(doc)
    if refused:
        assert len(problems) == 1 and "must exceed the upstream filter's stream_stall_timeout" in problems[0], problems
    else:
        assert problems == []
