"""`make run`: the gateway in the foreground.

Starts the bundled demo provider on a free loopback port, adapts `envoy/gateway.yaml`
(ports from GATEWAY_PORT / ADMIN_PORT, the built .wasm, the demo endpoint), checks it,
and runs Envoy. Ctrl-C or SIGTERM stops both processes; if either exits, so does the
other.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gatewayconf

ROOT = gatewayconf.ROOT
ENVOY = ROOT / ".venv" / "bin" / "envoy"


def start_demo_provider(env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockproviders.demo", "--port", "0", "--api-key-env", "DEMO_PROVIDER_API_KEY"],
        cwd=ROOT / "tools", env=env, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    # "demo provider listening on 127.0.0.1:PORT"
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the demo provider did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def main() -> int:
    gateway_port = int(os.environ.get("GATEWAY_PORT", "10000"))
    admin_port = int(os.environ.get("ADMIN_PORT", "9901"))
    env = dict(os.environ)
    # The demo provider checks its key like a real one; a fresh one per run is enough.
    env.setdefault("DEMO_PROVIDER_API_KEY", "demo-" + secrets.token_hex(16))

    demo, demo_port = start_demo_provider(env)
    doc = gatewayconf.load()
    gatewayconf.set_ports(doc, gateway_port, admin_port)
    gatewayconf.set_wasm_path(doc)
    gatewayconf.point_endpoint(doc, "model.demo", "127.0.0.1", demo_port)
    problems = gatewayconf.lint(doc)
    if problems:
        demo.terminate()
        raise SystemExit("envoy/gateway.yaml is inconsistent:\n  " + "\n  ".join(problems))
    config = gatewayconf.write(doc, Path(tempfile.mkdtemp(prefix="switchyard-")) / "gateway.json")

    envoy = subprocess.Popen(
        [str(ENVOY), "-c", str(config), "--concurrency", os.environ.get("ENVOY_CONCURRENCY", "2"),
         "--disable-hot-restart", "--log-level", "warning", "--component-log-level", "wasm:info",
         # Access-log and cooldown lines appear within a second, not Envoy's default 10 s.
         "--file-flush-interval-msec", "1000"],
        env=env,
    )
    print(f"Switchyard: OpenAI-compatible API on http://127.0.0.1:{gateway_port}/v1 "
          f"(Envoy admin on 127.0.0.1:{admin_port}, demo provider on 127.0.0.1:{demo_port})\n"
          f"Try:  curl -s localhost:{gateway_port}/v1/chat/completions "
          """-d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'""", flush=True)

    def stop(*_):
        for proc in (envoy, demo):
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        # Whichever child exits first ends the run.
        while envoy.poll() is None and demo.poll() is None:
            time.sleep(0.2)
    finally:
        stop()
        for proc in (envoy, demo):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return envoy.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
