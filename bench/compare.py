"""`make bench`: Switchyard against plain Envoy and the LiteLLM proxy, side by side, in one run.

Everything talks to one fast Rust mock provider (bench/src/bin/mock_provider.rs):

    direct                the mock itself (the floor)
    plain Envoy           Envoy proxying to the mock, no filter (the physical limit inside Envoy)
    Switchyard pass       the shipped gateway config, an OpenAI-compatible deployment
    Switchyard translated the shipped gateway config, an Anthropic-format deployment
    Switchyard translated, virtual key with RPM/TPM limits
                          the same requests with a virtual key of the real sidecar (SQLite in
                          the bench's workdir) with rpm_limit and tpm_limit (never reached)
    LiteLLM               the LiteLLM proxy (PyPI, own virtualenv) with an OpenAI-compatible model

each non-streaming and streaming (the virtual key non-streaming only; `make bench-profile`
shows where the CPU and memory go: see `profile_main`). Per scenario: throughput at
saturation (two connection counts), latency percentiles at fixed rates with
coordinated-omission correction (oha), time to first chunk of streams
(bench/src/bin/ttft.rs, open loop), proxy CPU time per request (/proc, the steadiest
figure on a shared machine) and peak RSS. Scenarios
alternate within each round; the report gives medians over rounds and the ratios of this
run: Switchyard vs plain Envoy, Switchyard vs LiteLLM, a virtual key vs the master key.

Every process starts through tools/launcher.py, as for `make run` and the tests. Switchyard's
Envoy has virtual keys on (as `make run` with a master key): the master key's requests never
touch them (it is checked first), so its rows and the virtual key's differ only by the key.

Environment: BENCH_ROUNDS (3), BENCH_SECONDS (10, per fixed-rate run; saturation runs take
half), BENCH_RATES (100,500,2000), BENCH_CONNECTIONS (16,64), BENCH_SOAK_SECONDS (0: skip the
RSS soak; 600 for the 10-minute run), BENCH_SKIP_LITELLM (1 to skip it).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gatewayconf  # noqa: E402
import launcher  # noqa: E402

BIN = ROOT / "target" / "release"
OHA = ROOT / ".bench" / "bin" / "oha"
ENVOY = launcher.ENVOY
LITELLM = ROOT / ".bench" / "litellm-venv" / "bin" / "litellm"
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENVOY_WORKERS = 2

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
RATES = [int(r) for r in os.environ.get("BENCH_RATES", "100,500,2000").split(",")]
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "16,64").split(",")]
SOAK_SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "0"))
STREAM_RATE = 100          # requests/s for the time-to-first-chunk probe
# Both gateways authenticate every request with a master key (LiteLLM refuses to start
# without one); direct and plain Envoy just carry the header along.
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
AUTH = f"authorization: Bearer {MASTER_KEY}"
# The filter and the sidecar share it for the sidecar's internal API (key lookups, the feed).
INTERNAL_SECRET = "bench-internal-secret-0123456789abcdef"
ENVOY_ENV = {"BENCH_MOCK_KEY": "sk-bench", "BENCH_MASTER_KEY": MASTER_KEY, "SWITCHYARD_INTERNAL_SECRET": INTERNAL_SECRET}
# The virtual key's scenario, and its limits: high enough never to refuse during a run, so
# every request pays for admission and release of its requests and tokens per minute.
VIRTUAL_KEY = "Switchyard translated, virtual key with RPM/TPM limits"
VIRTUAL_KEY_LIMITS = {"rpm_limit": 10**9, "tpm_limit": 10**9}
VIRTUAL_KEY_TARGET_US = 15  # added Envoy CPU per request over the master key (issue 11)
CHUNK_DELAY_MS = 20        # the mock's pause between stream events in that probe

# A typical chat request: a system prompt, a few turns, sampling settings (~1 KB).
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for an infrastructure team. Answer in at most three "
     "sentences, cite the relevant configuration field when there is one, and say so plainly when you are not sure."},
    {"role": "user", "content": "What does Envoy's per_connection_buffer_limit_bytes control on a listener, and what "
     "happens when a request body exceeds it?"},
    {"role": "assistant", "content": "It bounds how much data Envoy buffers for one connection in each direction. A "
     "filter that buffers a request body larger than the limit gets a 413 Payload Too Large."},
    {"role": "user", "content": "And on a cluster? Does the same limit apply to upstream responses that a filter "
     "buffers completely, for example to rewrite them?"},
]


def body(model: str, stream: bool) -> dict:
    request = {"model": model, "messages": MESSAGES, "temperature": 0.7, "max_tokens": 512}
    if stream:
        request["stream"] = True
    return request


# --- processes ---------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def memory_kib(pid: int, key: str) -> int:
    """Sum of a /proc/<pid>/status field (VmRSS, VmHWM) over a process tree."""
    total = 0
    for p in tree(pid):
        try:
            match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text(), re.M)
            total += int(match.group(1)) if match else 0
        except OSError:
            pass
    return total


def wait_http(url: str, timeout: float = 60, ok=lambda r: r.status_code < 500):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the systems under test ---------------------------------------------------------------


def start_mock(workdir: Path) -> tuple[launcher.Process, int]:
    port = free_port()
    proc = launcher.Process([str(BIN / "mock-provider"), "--port", str(port), "--threads", "1"], dict(os.environ),
                            workdir / "mock.log")
    wait_http(f"http://127.0.0.1:{port}/health", ok=lambda r: True)
    return proc, port


def without_access_log(doc: dict) -> None:
    # Logging costs the same in both Envoys; the benchmark measures the filter.
    gatewayconf._hcm(doc).pop("access_log", None)


def start_envoy(doc: dict, workdir: Path, name: str) -> launcher.Envoy:
    """Envoy on ephemeral ports (`.url`, `.admin_url`; `.proc.pid` is measured), logging
    warnings only. Not linted: plain Envoy and the profile's ladder are not gateway configs."""
    gatewayconf.set_ports(doc, 0, 0)
    return launcher.Envoy(doc, workdir, ENVOY_ENV, concurrency=ENVOY_WORKERS, log_level="warning",
                          wasm_log_level="warning", name=name, lint=False)


def start_sidecar(workdir: Path) -> launcher.Sidecar:
    """The real sidecar, its SQLite database in the bench's workdir."""
    return launcher.Sidecar(workdir, {"SWITCHYARD_MASTER_KEY": MASTER_KEY, "SWITCHYARD_INTERNAL_SECRET": INTERNAL_SECRET})


def virtual_key(gateway_url: str, model: str) -> str:
    """A virtual key with RPM and TPM limits, made with the admin API on the gateway's port,
    its cache warmed (the first request asks the sidecar; later ones read shared data)."""
    r = httpx.post(gateway_url + "/key/generate", json={"key_alias": "bench", **VIRTUAL_KEY_LIMITS},
                   headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    if r.status_code != 200:
        raise SystemExit(f"/key/generate: {r.status_code} {r.text[:500]}")
    key = r.json()["key"]
    for _ in range(8):
        r = httpx.post(gateway_url + "/v1/chat/completions", json=body(model, False),
                       headers={"authorization": f"Bearer {key}"}, timeout=30)
        if r.status_code != 200 or r.headers.get("x-ratelimit-limit-requests") != str(VIRTUAL_KEY_LIMITS["rpm_limit"]) \
                or r.headers.get("x-ratelimit-limit-tokens") != str(VIRTUAL_KEY_LIMITS["tpm_limit"]):
            raise SystemExit(f"{VIRTUAL_KEY}: {r.status_code} {dict(r.headers)} {r.text[:500]}")
    return key


def switchyard_config(mock_port: int) -> dict:
    doc = gatewayconf.load()
    groups = [
        gatewayconf.ModelGroup("bench-openai", [gatewayconf.Deployment(
            "openai", mock_port, model="gpt-4o-mini", api_key_env="BENCH_MOCK_KEY", api_base_path="/v1")]),
        gatewayconf.ModelGroup("bench-anthropic", [gatewayconf.Deployment(
            "anthropic", mock_port, model="claude-sonnet-4-5", api_key_env="BENCH_MOCK_KEY")]),
    ]
    gatewayconf.replace_models(doc, groups, extra_env_keys=["BENCH_MASTER_KEY"])
    gatewayconf.downstream_config(doc)["master_key_env"] = "BENCH_MASTER_KEY"
    gatewayconf.set_wasm_path(doc)
    without_access_log(doc)
    return doc


def virtual_keys_config(mock_port: int, sidecar: launcher.Sidecar) -> dict:
    """Switchyard's config with virtual keys on (the shipped settings), its sidecar cluster
    at `sidecar`; the master key stays BENCH_MASTER_KEY."""
    doc = switchyard_config(mock_port)
    gatewayconf.point_sidecar(doc, sidecar.host, sidecar.port)
    gatewayconf.enable_virtual_keys(doc, "BENCH_MASTER_KEY")
    return doc


def start_gateways(workdir: Path, procs: list) -> tuple:
    """The mock, the sidecar, plain Envoy and Switchyard's Envoy (virtual keys on), each
    appended to `procs` as it starts; a virtual key made and warmed. Returns (mock port,
    plain URL, Switchyard URL, plain Envoy's process, Switchyard's process, the key)."""
    mock, mock_port = start_mock(workdir)
    procs.append(mock)
    sidecar = start_sidecar(workdir)
    procs.append(sidecar)
    plain = start_envoy(plain_config(mock_port), workdir, "plain")
    procs.append(plain)
    switchyard = start_envoy(virtual_keys_config(mock_port, sidecar), workdir, "switchyard")
    procs.append(switchyard)
    key = virtual_key(switchyard.url, "bench-anthropic")
    return mock_port, plain.url, switchyard.url, plain.proc, switchyard.proc, key


def plain_config(mock_port: int) -> dict:
    """The same listener and cluster settings, without Switchyard's filters."""
    doc = switchyard_config(mock_port)
    hcm = gatewayconf._hcm(doc)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
    hcm.pop("local_reply_config", None)
    cluster = gatewayconf.cluster(doc, "model.bench-openai")
    cluster["typed_extension_protocol_options"][gatewayconf.PROTOCOL_OPTIONS].pop("http_filters")
    doc["static_resources"]["clusters"] = [cluster]
    gatewayconf.routes(doc)[:] = [{"match": {"prefix": "/"}, "route": {"cluster": cluster["name"], "timeout": "600s"}}]
    return doc


def start_litellm(mock_port: int, workdir: Path) -> tuple[launcher.Process, str]:
    port = free_port()
    config = {
        "model_list": [{"model_name": "bench-openai", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "sk-bench"}}],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "True"}
    # LiteLLM's docs recommend one uvicorn worker per CPU core.
    workers = os.cpu_count() or 1
    proc = launcher.Process([str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", str(workers)], env, workdir / "litellm.log")
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return proc, f"http://127.0.0.1:{port}"


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    url: str
    model: str
    stream: bool
    proc: launcher.Process | None = None     # the proxy whose CPU and memory are measured
    key: str = MASTER_KEY                    # the client's key
    results: list = field(default_factory=list)


def oha(url: str, body_path: Path, args: list[str], seconds: float, auth: str = AUTH) -> dict:
    command = [str(OHA), "-z", f"{seconds}s", "-m", "POST", "-H", "content-type: application/json", "-H", auth,
               "-D", str(body_path), "--no-tui", "--output-format", "json", *args, url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def measure(s: Scenario, body_path: Path, args: list[str], seconds: float) -> dict:
    cpu_before = cpu_seconds(s.proc.pid) if s.proc else 0.0
    report = oha(s.url + "/v1/chat/completions", body_path, args, seconds, f"authorization: Bearer {s.key}")
    cpu = cpu_seconds(s.proc.pid) - cpu_before if s.proc else 0.0
    ok = report["statusCodeDistribution"].get("200", 0)
    total = sum(report["statusCodeDistribution"].values())
    lat = report["latencyPercentiles"]
    return {
        "rps": ok / report["summary"]["total"],
        "ok": ok,
        "errors": total - ok + sum(report.get("errorDistribution", {}).values()),
        "p50_ms": (lat["p50"] or 0) * 1000, "p90_ms": (lat["p90"] or 0) * 1000,
        "p99_ms": (lat["p99"] or 0) * 1000, "p99.9_ms": (lat["p99.9"] or 0) * 1000,
        "cpu_us_per_request": cpu / ok * 1e6 if ok and s.proc else None,
    }


def ttft(s: Scenario, body_path: Path, seconds: float) -> dict:
    out = subprocess.run([str(BIN / "ttft"), "--url", s.url + "/v1/chat/completions", "--body", str(body_path),
                          "--rate", str(STREAM_RATE), "--duration", str(seconds),
                          "--header", f"x-mock-chunk-delay-ms: {CHUNK_DELAY_MS}",
                          "--header", f"authorization: Bearer {s.key}"],
                         capture_output=True, text=True, timeout=seconds * 4 + 60)
    report = json.loads(out.stdout)
    return {"first_chunk_ms": {k: v / 1000 for k, v in report["first_chunk_us"].items()},
            "achieved_rps": report["achieved_rps"], "errors": report["errors"]}


def run_round(scenarios: list[Scenario], bodies: dict, litellm_capacity: dict) -> None:
    for s in scenarios:
        body_path = bodies[(s.model, s.stream)]
        result = {"saturation": {}, "rates": {}}
        for c in CONNECTIONS:
            result["saturation"][c] = measure(s, body_path, ["-c", str(c)], SECONDS / 2)
        capacity = max(r["rps"] for r in result["saturation"].values())
        if s.name.startswith("LiteLLM"):
            litellm_capacity[s.stream] = capacity
        if s.stream:
            if capacity >= STREAM_RATE * 1.25:
                result["ttft"] = ttft(s, body_path, SECONDS)
        else:
            for rate in RATES:
                if rate > capacity * 0.8:
                    result["rates"][rate] = None  # not sustainable: queues grow without bound
                    continue
                connections = max(16, min(256, rate // 10))
                result["rates"][rate] = measure(s, body_path, ["-q", str(rate), "--latency-correction",
                                                               "-c", str(connections)], SECONDS)
        s.results.append(result)
        print(f"  {s.name:<38} saturation {capacity:9.0f} rps", flush=True)


# --- report -------------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def med(s: Scenario, *path):
    values = []
    for r in s.results:
        v = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
            if v is None:
                break
        values.append(v)
    return median(values)


def fmt(v, digits=2, unit=""):
    return "—" if v is None else f"{v:,.{digits}f}{unit}"


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {
        "envoy": subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True).stdout.split("version:")[-1].strip(),
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
        "oha": subprocess.run([str(OHA), "--version"], capture_output=True, text=True).stdout.strip(),
    }
    if LITELLM.exists():
        pip = LITELLM.parent / "pip"
        versions["litellm"] = subprocess.run([str(pip), "show", "litellm"], capture_output=True, text=True).stdout.split("Version:")[-1].split()[0]
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "versions": versions,
            "date": datetime.date.today().isoformat()}


def report(scenarios: dict[str, Scenario], core: list, memory: dict, soak: dict | None, info: dict, notes: list[str]) -> str:
    virtual_keys_setting = "virtual keys on in Switchyard's Envoy (its sidecar on SQLite), " if VIRTUAL_KEY in scenarios else ""
    lines = [f"Benchmark of {info['date']} on {info['cores']} cores ({info['cpu']}), Linux {info['kernel']}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
             f"Settings: Envoy --concurrency {ENVOY_WORKERS} (access log off in both Envoys), master key checked by both "
             f"gateways, {virtual_keys_setting}LiteLLM "
             f"--num_workers {os.cpu_count()}, one mock provider thread, load generator on the same machine; "
             f"{ROUNDS} alternating rounds, medians; fixed-rate runs {SECONDS:g} s with oha --latency-correction; "
             f"saturation runs {SECONDS / 2:g} s.", ""]
    lines += ["Non-streaming: throughput and proxy CPU", "",
              "| scenario | " + " | ".join(f"rps @ {c} conn" for c in CONNECTIONS) + " | proxy CPU µs/request |",
              "|---|" + "---|" * (len(CONNECTIONS) + 1)]
    for s in scenarios.values():
        if s.stream:
            continue
        cpu = med(s, "saturation", CONNECTIONS[-1], "cpu_us_per_request")
        lines.append(f"| {s.name} | " + " | ".join(fmt(med(s, "saturation", c, "rps"), 0) for c in CONNECTIONS)
                     + f" | {fmt(cpu, 1)} |")
    lines += ["", "Non-streaming: latency at fixed rates (ms; p50 / p90 / p99 / p99.9)", "",
              "| scenario | " + " | ".join(f"{r} rps" for r in RATES) + " |", "|---|" + "---|" * len(RATES)]
    for s in scenarios.values():
        if s.stream:
            continue
        cells = []
        for r in RATES:
            ps = [med(s, "rates", r, k) for k in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms")]
            cells.append("not sustainable" if ps[0] is None else " / ".join(fmt(p, 2) for p in ps))
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    lines += ["", f"Streaming (20-token answers): throughput, and time to first chunk at {STREAM_RATE} streams/s with "
              f"{CHUNK_DELAY_MS} ms between the provider's events (ms; p50 / p90 / p99 / p99.9)", "",
              "| scenario | " + " | ".join(f"streams/s @ {c} conn" for c in CONNECTIONS) + " | proxy CPU µs/stream | first chunk |",
              "|---|" + "---|" * (len(CONNECTIONS) + 2)]
    for s in scenarios.values():
        if not s.stream:
            continue
        first = [med(s, "ttft", "first_chunk_ms", k) for k in ("p50", "p90", "p99", "p99.9")]
        cpu = med(s, "saturation", CONNECTIONS[-1], "cpu_us_per_request")
        lines.append(f"| {s.name} | " + " | ".join(fmt(med(s, "saturation", c, "rps"), 0) for c in CONNECTIONS)
                     + f" | {fmt(cpu, 1)} | " + ("—" if first[0] is None else " / ".join(fmt(p, 2) for p in first)) + " |")

    # Ratios of this run.
    def pair(a, b):
        return scenarios.get(a), scenarios.get(b)

    lines += ["", "Ratios in this run", ""]
    plain, plain_s = scenarios["plain Envoy"], scenarios["plain Envoy (stream)"]
    for label, name in [("passthrough", "Switchyard passthrough"), ("translated", "Switchyard translated")]:
        sw = scenarios[name]
        for c in CONNECTIONS:
            frac = (med(sw, "saturation", c, "rps") or 0) / (med(plain, "saturation", c, "rps") or 1)
            lines.append(f"- Switchyard {label} / plain Envoy throughput @ {c} conn: **{frac:.0%}**")
        extra_cpu = (med(sw, "saturation", CONNECTIONS[-1], "cpu_us_per_request") or 0) - (med(plain, "saturation", CONNECTIONS[-1], "cpu_us_per_request") or 0)
        lines.append(f"- Switchyard {label}: **{extra_cpu:+.1f} µs** Envoy CPU per request over plain Envoy")
        for r in RATES:
            deltas = []
            for k in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms"):
                a, b = med(sw, "rates", r, k), med(plain, "rates", r, k)
                deltas.append(None if a is None or b is None else a - b)
            if deltas[0] is not None:
                lines.append(f"- Switchyard {label} added latency @ {r} rps (p50 / p90 / p99 / p99.9): "
                             + " / ".join(f"{d:+.3f} ms" for d in deltas))
    added_vk = virtual_key_added_cpu(scenarios)
    if added_vk is not None:
        lines.append(f"- virtual key with RPM/TPM limits: **{added_vk:+.1f} µs** Envoy CPU per request over Switchyard "
                     f"translated (target ≤ {VIRTUAL_KEY_TARGET_US} µs)")
    sw_t_s = scenarios["Switchyard translated (stream)"]
    added = [(med(sw_t_s, "ttft", "first_chunk_ms", k) or 0) - (med(plain_s, "ttft", "first_chunk_ms", k) or 0) for k in ("p50", "p99")]
    lines.append(f"- Switchyard translated stream: time to first chunk over plain Envoy p50 {added[0]:+.3f} ms, p99 {added[1]:+.3f} ms")
    if "LiteLLM" in scenarios:
        lite = scenarios["LiteLLM"]
        for name in ("Switchyard passthrough", "Switchyard translated"):
            ratio = (med(scenarios[name], "saturation", CONNECTIONS[-1], "rps") or 0) / (med(lite, "saturation", CONNECTIONS[-1], "rps") or 1)
            lines.append(f"- {name} / LiteLLM throughput @ {CONNECTIONS[-1]} conn: **{ratio:,.0f}×**")
        for r in RATES:
            a, b = med(scenarios["Switchyard passthrough"], "rates", r, "p99_ms"), med(lite, "rates", r, "p99_ms")
            if a is not None and b is not None:
                lines.append(f"- p99 @ {r} rps: Switchyard passthrough {a:.2f} ms vs LiteLLM {b:.2f} ms")
        cpu_ratio = (med(lite, "saturation", CONNECTIONS[-1], "cpu_us_per_request") or 0) / (med(scenarios["Switchyard passthrough"], "saturation", CONNECTIONS[-1], "cpu_us_per_request") or 1)
        lines.append(f"- LiteLLM CPU per request / Switchyard passthrough: **{cpu_ratio:,.0f}×**")
    lines += ["", "Targets (issue 3)", "", "| target | measured | |", "|---|---|---|"]
    lines += targets(scenarios, core, memory, soak)
    lines += ["", "Memory (peak RSS, MiB)", ""]
    for name, kib in memory.items():
        lines.append(f"- {name}: {kib / 1024:.1f}")
    if "plain Envoy" in memory and "Switchyard Envoy" in memory:
        lines.append(f"- Switchyard Envoy over plain Envoy: **{(memory['Switchyard Envoy'] - memory['plain Envoy']) / 1024:+.1f} MiB**")
    if soak:
        lines += ["", f"Soak: Switchyard translated at {soak['rate']} rps for {soak['seconds']:.0f} s, Envoy RSS (MiB) "
                  f"every {soak['interval']:.0f} s: " + ", ".join(f"{m / 1024:.1f}" for m in soak["rss_kib"])]
    lines += ["", "Translation core, native (µs; allocations)", ""]
    for m in core:
        lines.append(f"- {m['name']}: {m['us']:.2f} µs, {m['allocations']} allocations per {m['per']}")
    if notes:
        lines += ["", "Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def virtual_key_added_cpu(scenarios: dict[str, Scenario]) -> float | None:
    """Envoy CPU per request a virtual key with RPM/TPM limits adds over the master key (same
    Envoy, same requests), saturated at the most connections; None if not measured."""
    if VIRTUAL_KEY not in scenarios:
        return None
    vk = med(scenarios[VIRTUAL_KEY], "saturation", CONNECTIONS[-1], "cpu_us_per_request")
    tra = med(scenarios["Switchyard translated"], "saturation", CONNECTIONS[-1], "cpu_us_per_request")
    return None if vk is None or tra is None else vk - tra


def targets(scenarios: dict[str, Scenario], core: list, memory: dict, soak: dict | None) -> list[str]:
    rows = []

    def row(target: str, value, limit, unit: str, higher_is_better: bool, digits: int = 2):
        if value is None:
            rows.append(f"| {target} | not measured | |")
            return
        met = value >= limit if higher_is_better else value <= limit
        gap = "met" if met else f"missed by {abs(value - limit):,.{digits}f}{unit}"
        rows.append(f"| {target} | {value:,.{digits}f}{unit} | {gap} |")

    plain, pas, tra = scenarios["plain Envoy"], scenarios["Switchyard passthrough"], scenarios["Switchyard translated"]
    for rate in (500, 2000):
        a, b = med(tra, "rates", rate, "p99_ms"), med(plain, "rates", rate, "p99_ms")
        row(f"translated, added p99 over plain Envoy @ {rate} rps ≤ 0.3 ms", None if a is None or b is None else a - b,
            0.3, " ms", False, 3)
    c = CONNECTIONS[-1]
    base = med(plain, "saturation", c, "rps") or 1
    row("translated saturated throughput ≥ 60% of plain Envoy", 100 * (med(tra, "saturation", c, "rps") or 0) / base, 60, "%", True, 0)
    row("passthrough saturated throughput ≥ 80% of plain Envoy", 100 * (med(pas, "saturation", c, "rps") or 0) / base, 80, "%", True, 0)
    lite = scenarios.get("LiteLLM")
    if lite:
        row("≥ 100× LiteLLM's saturated throughput (passthrough)",
            (med(pas, "saturation", c, "rps") or 0) / (med(lite, "saturation", c, "rps") or 1), 100, "×", True, 0)
        worse = [r for r in RATES if med(lite, "rates", r, "p99_ms") is not None
                 and (med(pas, "rates", r, "p99_ms") or 0) >= med(lite, "rates", r, "p99_ms")]
        sustained = [r for r in RATES if med(lite, "rates", r, "p99_ms") is not None]
        rows.append(f"| lower p99 than LiteLLM at every rate it sustains ({', '.join(map(str, sustained)) or 'none'} rps) | "
                    f"{'higher at ' + ', '.join(map(str, worse)) if worse else 'lower at all'} | {'met' if not worse else 'missed'} |")
    else:
        rows.append("| ≥ 100× LiteLLM's saturated throughput | LiteLLM not measured | |")
    per_exchange = [m["us"] for m in core if m["per"] == "exchange"]
    row("translation core ≤ 20 µs per typical request + response (worst adapter)", max(per_exchange) if per_exchange else None, 20, " µs", False)
    per_event = [m["us"] for m in core if m["per"] == "event"]
    row("translation core ≤ 2 µs per stream chunk (worst adapter)", max(per_event) if per_event else None, 2, " µs", False)
    if VIRTUAL_KEY in scenarios:
        row(f"virtual key with RPM/TPM limits, added Envoy CPU per request over translated ≤ {VIRTUAL_KEY_TARGET_US} µs "
            "(issue 11)", virtual_key_added_cpu(scenarios), VIRTUAL_KEY_TARGET_US, " µs", False, 1)
    if "plain Envoy" in memory and "Switchyard Envoy" in memory:
        row("Envoy RSS with the filter ≤ 30 MiB over plain Envoy", (memory["Switchyard Envoy"] - memory["plain Envoy"]) / 1024, 30, " MiB", False, 1)
    if soak and len(soak["rss_kib"]) > 2:
        settled = soak["rss_kib"][max(1, int(60 / soak["interval"])):]
        row(f"RSS flat over a {soak['seconds'] / 60:.0f}-minute run (growth after the first minute ≤ 2 MiB)",
            (max(settled) - min(settled)) / 1024, 2, " MiB", False, 1)
    else:
        rows.append("| RSS flat across a 10-minute run | not run in this report (BENCH_SOAK_SECONDS=600) | |")
    return rows


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table}{end}{tail}")


def soak_run(scenario: Scenario, body_path: Path, seconds: float) -> dict:
    interval = max(10.0, seconds / 20)
    rate = 500
    load = subprocess.Popen([str(OHA), "-z", f"{seconds}s", "-q", str(rate), "-c", "64", "-m", "POST",
                             "-H", "content-type: application/json", "-H", AUTH, "-D", str(body_path), "--no-tui",
                             "--output-format", "json", scenario.url + "/v1/chat/completions"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(memory_kib(scenario.proc.pid, "VmRSS"))
        time.sleep(interval)
    load.wait()
    samples.append(memory_kib(scenario.proc.pid, "VmRSS"))
    return {"rate": rate, "seconds": seconds, "interval": interval, "rss_kib": samples}


def cpu_main() -> int:
    """`make bench-cpu`: Envoy CPU per request at --concurrency 1 and a fixed rate,
    plain Envoy and Switchyard interleaved over rounds (Switchyard with the master key and
    with a virtual key with RPM/TPM limits, in the same Envoy). The quick, steady figure
    to judge a change by (DESIGN.md, performance notes)."""
    global ENVOY_WORKERS
    ENVOY_WORKERS = 1
    # Saturated (closed loop): on a shared virtual machine, per-request wakeups dominate at
    # low rates and swamp the filter's cost; BENCH_RATE fixes a rate instead.
    rate, seconds, rounds = os.environ.get("BENCH_RATE"), SECONDS, ROUNDS
    load = ["-q", rate, "-c", "32"] if rate else ["-c", "16"]
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-cpu-"))
    procs = []
    try:
        mock_port, plain_url, sw_url, plain, switchyard, key = start_gateways(workdir, procs)
        cases = [Scenario("plain Envoy", plain_url, "gpt-4o-mini", False, plain),
                 Scenario("Switchyard passthrough", sw_url, "bench-openai", False, switchyard),
                 Scenario("Switchyard translated", sw_url, "bench-anthropic", False, switchyard),
                 Scenario(VIRTUAL_KEY, sw_url, "bench-anthropic", False, switchyard, key=key),
                 Scenario("plain Envoy (stream)", plain_url, "gpt-4o-mini", True, plain),
                 Scenario("Switchyard passthrough (stream)", sw_url, "bench-openai", True, switchyard),
                 Scenario("Switchyard translated (stream)", sw_url, "bench-anthropic", True, switchyard)]
        bodies = {}
        for s in cases:
            path = workdir / f"{s.model}-{s.stream}.json"
            path.write_text(json.dumps(body(s.model, s.stream)))
            bodies[(s.model, s.stream)] = path
        for n in range(rounds):
            for s in (cases if n % 2 == 0 else cases[::-1]):
                s.results.append(measure(s, bodies[(s.model, s.stream)], load, seconds))
        print(f"Envoy CPU per request, --concurrency 1, {rate + ' rps' if rate else 'saturated, 16 connections'}, "
              f"{rounds} rounds of {seconds:g} s (median)")
        base = {False: None, True: None}
        translated = None
        width = max(34, *(len(s.name) for s in cases))
        for s in cases:
            cpu = median([r["cpu_us_per_request"] for r in s.results])
            errors = sum(r["errors"] for r in s.results)
            if s.name.startswith("plain"):
                base[s.stream] = cpu
            if s.name == "Switchyard translated":
                translated = cpu
            extra = "" if base[s.stream] is None or s.name.startswith("plain") else f"  (+{cpu - base[s.stream]:.1f} over plain"
            if extra and s.name == VIRTUAL_KEY and translated is not None:
                extra += f", {cpu - translated:+.1f} over translated; target ≤ {VIRTUAL_KEY_TARGET_US} µs"
            extra += ")" if extra else ""
            rps = median([r["rps"] for r in s.results])
            print(f"  {s.name:<{width}} {cpu:7.1f} µs {rps:9.0f} rps{extra}{'  errors: ' + str(errors) if errors else ''}")
    finally:
        for p in reversed(procs):
            p.stop()
    return 0


PROFILE_WASM = ROOT / "target" / "profile" / "wasm32-wasip1" / "release" / "switchyard.wasm"
IDLE_WASM = ROOT / "target" / "idle" / "wasm32-wasip1" / "release" / "switchyard.wasm"
PROFILE_LINE = re.compile(r"profile: (.*)$")
PROFILE_ENTRY = re.compile(r"([a-z_]+(?: [a-z_]+)*): ([0-9.]+) µs x([0-9]+)")
CALLBACKS = ["down headers", "down body", "up headers", "up body", "up resp headers", "up resp body",
             "down resp headers"]


def retry_policy_route(sw_doc: dict, cluster: str) -> dict:
    """A catch-all route to `cluster` with Switchyard's retry policy for chat requests."""
    chat = next(r for r in gatewayconf.routes(sw_doc)
                if gatewayconf.route_model(r) == "bench-openai" and not gatewayconf.is_stream_route(r))
    return {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "600s",
                                                 "retry_policy": chat["route"]["retry_policy"]}}


def profile_ladder(mock_port: int) -> list[tuple[str, dict, str]]:
    """Envoy configs that add Switchyard's parts one at a time: (name, config, model)."""
    with_retries = plain_config(mock_port)
    cluster = gatewayconf.routes(with_retries)[0]["route"]["cluster"]
    gatewayconf.routes(with_retries)[:] = [retry_policy_route(switchyard_config(mock_port), cluster)]
    idle = switchyard_config(mock_port)
    gatewayconf.routes(idle)[:] = [retry_policy_route(idle, cluster)]
    gatewayconf.set_wasm_path(idle, IDLE_WASM)
    return [("plain Envoy", plain_config(mock_port), "gpt-4o-mini"),
            ("+ Switchyard's retry policy", with_retries, "gpt-4o-mini"),
            ("+ idle Wasm filters", idle, "gpt-4o-mini"),
            ("Switchyard passthrough", switchyard_config(mock_port), "bench-openai")]


def vm_breakdown(log: Path) -> dict[str, tuple[float, float]]:
    """Per request, from the profile build's log: name -> (µs per call, calls per request).
    The first report is warm-up and is skipped."""
    reports = [m.group(1) for m in map(PROFILE_LINE.search, log.read_text().splitlines()) if m][1:]
    totals: dict[str, list[float]] = {}
    requests = 0
    for line in reports:
        entries = {name: (float(us), int(n)) for name, us, n in PROFILE_ENTRY.findall(line)}
        requests += entries.get("down headers", (0, 0))[1]
        for name, (us, n) in entries.items():
            t = totals.setdefault(name, [0.0, 0])
            t[0] += us * n
            t[1] += n
    if not requests:
        raise RuntimeError(f"no profile reports in {log}: too few requests for one report (5,000)")
    return {name: (spent / n if n else 0.0, n / requests) for name, (spent, n) in totals.items()}


def profile_main() -> int:
    """`make bench-profile`: where Switchyard's CPU per request goes. A ladder of Envoy
    configs at --concurrency 1, interleaved over rounds (plain Envoy, + the retry
    policy, + idle Wasm filters, Switchyard), then the time inside the VM per callback
    and per host call, from a build with `--features profile`."""
    global ENVOY_WORKERS
    ENVOY_WORKERS = 1
    for tool in (OHA, ENVOY, BIN / "mock-provider", gatewayconf.WASM, PROFILE_WASM, IDLE_WASM):
        if not Path(tool).exists():
            raise SystemExit(f"missing {tool}: run `make bench-profile`, which builds everything first")
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-profile-"))
    procs = []
    try:
        mock, mock_port = start_mock(workdir)
        procs.append(mock)
        cases, admins = [], {}
        for n, (name, doc, model) in enumerate(profile_ladder(mock_port)):
            envoy = start_envoy(doc, workdir, f"ladder{n}")
            procs.append(envoy)
            admins[name] = envoy.admin_url
            cases.append(Scenario(name, envoy.url, model, False, envoy.proc))
        bodies = {}
        for s in cases:
            path = workdir / f"{s.model}.json"
            path.write_text(json.dumps(body(s.model, False)))
            bodies[s.model] = path
        for n in range(ROUNDS):
            for s in (cases if n % 2 == 0 else cases[::-1]):
                s.results.append(measure(s, bodies[s.model], ["-c", "16"], SECONDS))
        # Memory after the load: the process, and Envoy's heap (tcmalloc) inside it.
        memory = {s.name: {"rss_kib": memory_kib(s.proc.pid, "VmRSS"),
                           **{k: int(v) for k, v in httpx.get(admins[s.name] + "/memory", timeout=10).json().items()}}
                  for s in cases}
        profiled_doc = switchyard_config(mock_port)
        gatewayconf.set_wasm_path(profiled_doc, PROFILE_WASM)
        profiled = start_envoy(profiled_doc, workdir, "profiled")
        procs.append(profiled)
        measure(Scenario("profiled", profiled.url, "bench-openai", False, profiled.proc), bodies["bench-openai"], ["-c", "16"],
                max(SECONDS, 10))
        profiled.stop()
        breakdown = vm_breakdown(workdir / "profiled.log")
    finally:
        for p in reversed(procs):
            p.stop()

    lines = [f"Envoy CPU per request, --concurrency 1, 16 connections, saturated; {ROUNDS} interleaved rounds of "
             f"{SECONDS:g} s (median; min in brackets)", ""]
    previous = None
    for s in cases:
        cpu = [r["cpu_us_per_request"] for r in s.results]
        mid = median(cpu)
        step = "" if previous is None else f"  {mid - previous:+7.1f}"
        errors = sum(r["errors"] for r in s.results)
        lines.append(f"  {s.name:<30} {mid:7.1f} µs ({min(cpu):.1f}){step}{'  errors: ' + str(errors) if errors else ''}")
        previous = mid
    lines += ["", "Memory after the load (MiB): process RSS; Envoy's heap: allocated, and physical (with free",
              "pages and per-CPU caches); the rest of the RSS is code pages and V8's own mappings", ""]
    base = memory[cases[0].name]
    for s in cases:
        m = memory[s.name]
        grown = "" if s is cases[0] else f"  (RSS {(m['rss_kib'] - base['rss_kib']) / 1024:+.1f})"
        lines.append(f"  {s.name:<30} RSS {m['rss_kib'] / 1024:6.1f}  heap allocated {m['allocated'] / 2**20:5.1f}, "
                     f"physical {m['total_physical_bytes'] / 2**20:5.1f}{grown}")
    lines += ["", "Inside the VM, per request (profile build; wall time, inflated by the timer's own host calls):", ""]
    in_callbacks = sum(us * calls for name, (us, calls) in breakdown.items() if name in CALLBACKS)
    for name in CALLBACKS:
        if name in breakdown:
            us, calls = breakdown[name]
            lines.append(f"  callback {name:<22} {us * calls:6.1f} µs  ({calls:.1f} calls × {us:.1f} µs)")
    in_host = 0.0
    for name, (us, calls) in sorted(breakdown.items(), key=lambda kv: -kv[1][0] * kv[1][1]):
        if name not in CALLBACKS:
            in_host += us * calls
            lines.append(f"  host call {name:<21} {us * calls:6.1f} µs  ({calls:.1f} calls × {us:.1f} µs)")
    lines += ["", f"  in callbacks {in_callbacks:.1f} µs: host calls {in_host:.1f} µs, the filter's own work "
              f"{in_callbacks - in_host:.1f} µs"]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile.txt").write_text(text)
    print(text)
    print(f"written to {RESULTS / 'profile.txt'}; logs in {workdir}")
    return 0


def main() -> int:
    for tool in (OHA, ENVOY, BIN / "mock-provider", BIN / "ttft", gatewayconf.WASM):
        if not Path(tool).exists():
            raise SystemExit(f"missing {tool}: run `make bench`, which builds everything first")
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    procs: list = []  # anything with stop(): launcher.Process, .Envoy, .Sidecar
    notes: list[str] = []
    try:
        mock_port, plain_url, sw_url, plain, switchyard, key = start_gateways(workdir, procs)
        litellm_url = None
        if os.environ.get("BENCH_SKIP_LITELLM") != "1" and LITELLM.exists():
            try:
                litellm, litellm_url = start_litellm(mock_port, workdir)
                procs.append(litellm)
            except (TimeoutError, OSError) as e:
                notes.append(f"LiteLLM could not be started ({e}); see {workdir}/litellm.log")
        elif not LITELLM.exists():
            notes.append("LiteLLM is not installed (its virtualenv could not be created); its rows are missing.")

        scenarios: dict[str, Scenario] = {}
        for stream in (False, True):
            suffix = " (stream)" if stream else ""
            scenarios["direct" + suffix] = Scenario("direct" + suffix, f"http://127.0.0.1:{mock_port}", "gpt-4o-mini", stream)
            scenarios["plain Envoy" + suffix] = Scenario("plain Envoy" + suffix, plain_url, "gpt-4o-mini", stream, plain)
            scenarios["Switchyard passthrough" + suffix] = Scenario("Switchyard passthrough" + suffix, sw_url, "bench-openai", stream, switchyard)
            scenarios["Switchyard translated" + suffix] = Scenario("Switchyard translated" + suffix, sw_url, "bench-anthropic", stream, switchyard)
            if not stream:
                scenarios[VIRTUAL_KEY] = Scenario(VIRTUAL_KEY, sw_url, "bench-anthropic", False, switchyard, key=key)
            if litellm_url:
                scenarios["LiteLLM" + suffix] = Scenario("LiteLLM" + suffix, litellm_url, "bench-openai", stream, litellm)
        bodies = {}
        for s in scenarios.values():
            path = workdir / f"{s.model}-{'stream' if s.stream else 'plain'}.json"
            path.write_text(json.dumps(body(s.model, s.stream)))
            bodies[(s.model, s.stream)] = path
        # Sanity: every scenario answers 200 before anything is timed.
        for s in scenarios.values():
            r = httpx.post(s.url + "/v1/chat/completions", content=bodies[(s.model, s.stream)].read_bytes(),
                           headers={"content-type": "application/json", "authorization": f"Bearer {s.key}"}, timeout=30)
            if r.status_code != 200:
                raise SystemExit(f"{s.name}: {r.status_code} {r.text[:500]}")

        litellm_capacity: dict = {}
        for n in range(ROUNDS):
            print(f"round {n + 1}/{ROUNDS}", flush=True)
            order = list(scenarios.values())
            if n % 2:
                order.reverse()  # alternate, so drift does not favour one side
            run_round(order, bodies, litellm_capacity)

        memory = {"plain Envoy": memory_kib(plain.pid, "VmHWM"), "Switchyard Envoy": memory_kib(switchyard.pid, "VmHWM")}
        if litellm_url:
            memory["LiteLLM (all workers)"] = memory_kib(litellm.pid, "VmHWM")
        soak = None
        if SOAK_SECONDS > 0:
            translated = scenarios["Switchyard translated"]
            soak = soak_run(translated, bodies[(translated.model, False)], SOAK_SECONDS)

        core_json = workdir / "core.json"
        subprocess.run(["cargo", "bench", "--locked", "--bench", "core"], cwd=ROOT, check=True,
                       env={**os.environ, "BENCH_JSON": str(core_json)}, stdout=subprocess.DEVNULL)
        core = json.loads(core_json.read_text())
        info = machine()
        text = report(scenarios, core, memory, soak, info, notes)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.md").write_text(text)
        (RESULTS / "latest.json").write_text(json.dumps({
            "machine": info, "memory_kib": memory, "soak": soak, "core": core, "notes": notes,
            "scenarios": {name: s.results for name, s in scenarios.items()}}, indent=1, default=str))
        update_readme(text)
        print("\n" + text)
        print(f"written to {RESULTS / 'latest.md'} (raw numbers in latest.json); logs in {workdir}")
    finally:
        for p in reversed(procs):
            p.stop()
    return 0


def rerender() -> int:
    """Rebuilds latest.md (and the README table) from latest.json, e.g. after the
    report's format changed, without measuring again."""
    data = json.loads((RESULTS / "latest.json").read_text())
    scenarios = {}
    for name, results in data["scenarios"].items():
        s = Scenario(name, "", "", name.endswith("(stream)"))
        # JSON turned the integer keys (connections, rates) into strings.
        s.results = [{k: ({int(kk): vv for kk, vv in v.items()} if k in ("saturation", "rates") else v)
                      for k, v in r.items()} for r in results]
        scenarios[name] = s
    text = report(scenarios, data["core"], data["memory_kib"], data.get("soak"), data["machine"], data.get("notes", []))
    (RESULTS / "latest.md").write_text(text)
    update_readme(text)
    print(text)
    return 0


if __name__ == "__main__":
    if "--rerender" in sys.argv:
        sys.exit(rerender())
    if "--profile" in sys.argv:
        sys.exit(profile_main())
    sys.exit(cpu_main() if "--cpu" in sys.argv else main())
