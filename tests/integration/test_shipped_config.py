"""The shipped envoy/gateway.yaml and `make run`: what a newcomer runs first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

import gatewayconf
from harness import ENVOY, closed_port


def test_shipped_config_is_consistent():
    assert gatewayconf.lint(gatewayconf.load()) == []


def test_shipped_config_passes_envoy_validation(tmp_path):
    doc = gatewayconf.load()
    gatewayconf.set_wasm_path(doc)
    config = gatewayconf.write(doc, tmp_path / "gateway.json")
    result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout + result.stderr


def test_lint_catches_inconsistencies():
    doc = gatewayconf.load()
    gatewayconf.downstream_config(doc)["models"].append({"id": "orphan"})
    gatewayconf.routes(doc)[:] = [r for r in gatewayconf.routes(doc) if gatewayconf.route_model(r) != "demo"]
    fallback = gatewayconf.cluster(doc, "model.gpt-4o-mini")
    fallback["load_assignment"]["endpoints"].append({"priority": 1, "lb_endpoints": gatewayconf.endpoints(fallback)})
    for route in gatewayconf.routes(doc):
        if gatewayconf.route_model(route) == "gpt-4o-mini":
            route["route"]["retry_policy"].pop("retry_priority")
    stream_first = gatewayconf.routes(doc)
    claude = [i for i, r in enumerate(stream_first) if gatewayconf.route_model(r) == "claude-haiku-4-5"]
    stream_first[claude[0]], stream_first[claude[1]] = stream_first[claude[1]], stream_first[claude[0]]
    gatewayconf._hcm(doc)["route_config"]["virtual_hosts"][0].pop("include_request_attempt_count")
    meta = gatewayconf.endpoint_metadata(gatewayconf.endpoints(gatewayconf.cluster(doc, "model.gpt-4.1"))[0])
    meta["provider"] = "nonsense"
    meta["api_key_env"] = "NOT_PASSED_TO_VM"
    gatewayconf._hcm(doc)["route_config"]["virtual_hosts"][0]["request_headers_to_remove"].remove("authorization")
    problems = "\n".join(gatewayconf.lint(doc))
    assert "'orphan' is served by the filter but has no route" in problems
    assert "'demo' is served by the filter but has no route" in problems
    assert 'unknown provider "nonsense"' in problems
    assert "NOT_PASSED_TO_VM" in problems
    assert "must remove ['authorization']" in problems
    assert "route for 'gpt-4o-mini': its cluster has fallback priorities" in problems
    assert "the stream route for model 'claude-haiku-4-5' must come before its other route" in problems
    assert "include_request_attempt_count" in problems


@pytest.fixture
def make_run():
    """`make run` exactly as documented, on free ports."""
    gateway_port, admin_port = closed_port(), closed_port()
    env = {**os.environ, "GATEWAY_PORT": str(gateway_port), "ADMIN_PORT": str(admin_port)}
    env.pop("DEMO_PROVIDER_API_KEY", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=gatewayconf.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{gateway_port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1).text.strip() == "LIVE":
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        pytest.fail("make run did not become ready")
    yield url, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def descendants_alive(pid: int) -> list[str]:
    """The processes of `make run`'s group still running. One that has exited but not been
    reaped (state Z) is not running: make exits on Ctrl-C without waiting for its recipe,
    and a process whose parent is then gone waits for PID 1 to reap it, which in some
    containers never happens."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[1:] if line.split()[2] == str(pid) and not line.split()[3].startswith("Z")]


@pytest.mark.parametrize("stop", ["SIGTERM to make", "Ctrl-C (SIGINT to the process group)"])
def test_make_run_serves_demo_and_stops_cleanly(make_run, stop):
    url, proc = make_run
    # The README's first request, verbatim (curl's default content type included).
    result = subprocess.run(
        ["curl", "-s", f"{url}/v1/chat/completions", "-d", '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'],
        capture_output=True, text=True, timeout=30)
    body = json.loads(result.stdout)
    assert body["object"] == "chat.completion", body
    assert body["model"] == "switchyard-demo-1"
    assert "hi" in body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop"

    models = httpx.get(f"{url}/v1/models").json()
    assert "demo" in [m["id"] for m in models["data"]]
    # A real provider without its key: a clear error, not a hang.
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
    assert r.status_code in (500, 502, 503) and "error" in r.json()

    if stop.startswith("SIGTERM"):
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert descendants_alive(proc.pid) == [], "make run left processes behind"
