"""`make run`: the gateway in the foreground.

Starts the sidecar (keys, teams, users; SQLite in `.switchyard/` unless DATABASE_URL names
a PostgreSQL), the bundled demo provider, and Envoy with `envoy/gateway.yaml` adapted for
the run (ports from GATEWAY_PORT / ADMIN_PORT, the built .wasm, the demo endpoint, the
sidecar's port). With SWITCHYARD_MASTER_KEY (or LITELLM_MASTER_KEY) set, clients need the
master key or a virtual key made with the admin API; without one the gateway is open.
Ctrl-C or SIGTERM stops every process; if one exits, so do the others.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import gatewayconf
import launcher

DATA_DIR = gatewayconf.ROOT / ".switchyard"


def main() -> int:
    gateway_port = int(os.environ.get("GATEWAY_PORT", "10000"))
    admin_port = int(os.environ.get("ADMIN_PORT", "9901"))
    env = dict(os.environ)
    # The demo provider checks its key like a real one; a fresh one per run is enough.
    env.setdefault("DEMO_PROVIDER_API_KEY", "demo-" + secrets.token_hex(16))
    # The filter and the sidecar share this for the sidecar's internal API.
    env.setdefault("SWITCHYARD_INTERNAL_SECRET", secrets.token_hex(24))
    master_key = env.get("SWITCHYARD_MASTER_KEY") or env.get("LITELLM_MASTER_KEY")
    if master_key:
        env["SWITCHYARD_MASTER_KEY"] = master_key
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-"))
    DATA_DIR.mkdir(exist_ok=True)
    sidecar_env = {k: v for k, v in env.items()
                   if k in ("SWITCHYARD_MASTER_KEY", "SWITCHYARD_INTERNAL_SECRET", "SWITCHYARD_LOG", "DATABASE_URL")}
    started: list = []

    def stop(*_):
        for part in reversed(started):
            part.proc.signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        # One process group with `make run`: Ctrl-C in the terminal reaches every process.
        sidecar = launcher.Sidecar(DATA_DIR, sidecar_env, database_url=env.get("DATABASE_URL"), new_session=False)
        started.append(sidecar)
        demo = launcher.DemoProvider(env, new_session=False)
        started.append(demo)
        doc = gatewayconf.load()
        gatewayconf.set_ports(doc, gateway_port, admin_port)
        gatewayconf.set_wasm_path(doc)
        gatewayconf.point_endpoint(doc, "model.demo", "127.0.0.1", demo.port)
        gatewayconf.point_sidecar(doc, sidecar.host, sidecar.port)
        if master_key:
            gatewayconf.enable_virtual_keys(doc)
        envoy = launcher.Envoy(doc, workdir, env, concurrency=int(os.environ.get("ENVOY_CONCURRENCY", "2")),
                               log_level="warning", wasm_log_level="info", flush_ms=1000, name="gateway",
                               new_session=False)
        started.append(envoy)
    except (ValueError, RuntimeError, TimeoutError, FileNotFoundError) as e:
        stop()
        for part in started:
            part.stop()
        raise SystemExit(str(e))
    auth = f" -H 'Authorization: Bearer {master_key}'" if master_key else ""
    print(f"Switchyard: OpenAI-compatible API on {envoy.url}/v1 (Envoy admin on {envoy.admin_url}; "
          f"demo provider on 127.0.0.1:{demo.port}; sidecar on {sidecar.addr}, data in "
          f"{env.get('DATABASE_URL') and 'DATABASE_URL' or DATA_DIR})\n"
          f"Try:  curl -s {envoy.url}/v1/chat/completions{auth} "
          """-d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'""", flush=True)
    # Envoy's log goes to the terminal, as it always has.
    shown = 0
    try:
        # Whichever child exits first ends the run.
        while all(part.proc.alive() for part in started):
            text = envoy.log()
            if len(text) > shown:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
                shown = len(text)
            time.sleep(0.2)
    finally:
        stop()
        for part in started:
            part.stop()
    return envoy.proc.popen.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
