"""Runs the real Envoy with the built switchyard.wasm for integration tests.

Envoy binds port 0 for both the listener and admin; the actual ports are read back
from the admin API, so parallel runs never collide. The configuration is the shipped
`envoy/gateway.yaml` with its model groups replaced by the test's, so the listener,
filters and error mappings under test are the ones users run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

import gatewayconf

ENVOY = gatewayconf.ROOT / ".venv" / "bin" / "envoy"


class Gateway:
    def __init__(self, groups: list[gatewayconf.ModelGroup], env: dict[str, str] | None = None,
                 master_key_env: str | None = None, extra_env_keys: list[str] = (), concurrency: int = 2,
                 upstream_config: dict | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix="switchyard-test-"))
        doc = gatewayconf.load()
        gatewayconf.replace_models(doc, groups, extra_env_keys=list(extra_env_keys) + ([master_key_env] if master_key_env else []))
        if upstream_config:
            gatewayconf.set_upstream_config(doc, **upstream_config)
        gatewayconf.set_ports(doc, 0, 0)
        gatewayconf.set_wasm_path(doc)
        if master_key_env:
            gatewayconf.downstream_config(doc)["master_key_env"] = master_key_env
        problems = gatewayconf.lint(doc)
        assert not problems, problems
        self.config_path = gatewayconf.write(doc, self.workdir / "gateway.json")
        self.log_path = self.workdir / "envoy.log"
        admin_file = self.workdir / "admin.address"
        self._log = open(self.log_path, "wb")
        full_env = {"PATH": os.environ.get("PATH", "")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(ENVOY), "-c", str(self.config_path), "--concurrency", str(concurrency), "--disable-hot-restart",
             "--admin-address-path", str(admin_file), "--log-level", "info", "--component-log-level", "wasm:debug",
             # Access and outlier-event logs reach the file within 50 ms, not Envoy's 10 s.
             "--file-flush-interval-msec", "50"],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
        )
        try:
            self.admin_url = "http://" + self._wait_for(lambda: admin_file.read_text().strip() or None)
            self._wait_for(lambda: self._ready())
            self.url = "http://" + self._listener_address()
        except Exception:
            self.stop()
            raise
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def _wait_for(self, probe, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                value = probe()
                if value:
                    return value
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"envoy did not become ready:\n{self.log()[-4000:]}")

    def _ready(self) -> bool:
        return httpx.get(self.admin_url + "/ready", timeout=2).text.strip() == "LIVE"

    def _listener_address(self) -> str:
        listeners = httpx.get(self.admin_url + "/listeners?format=json", timeout=2).json()
        socket = listeners["listener_statuses"][0]["local_address"]["socket_address"]
        return f"{socket['address']}:{socket['port_value']}"

    # --- use ------------------------------------------------------------------------------------

    def chat(self, body, headers: dict | None = None, **kwargs) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post("/v1/chat/completions", content=content,
                                headers={"content-type": "application/json", **(headers or {})}, **kwargs)

    def stats(self, prefix: str = "") -> dict[str, int]:
        text = httpx.get(self.admin_url + "/stats", params={"filter": prefix} if prefix else None, timeout=5).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_records(self, predicate, timeout: float = 5.0) -> list[dict]:
        """The JSON lines of the log (access log, outlier events) that satisfy `predicate`,
        waiting up to `timeout` for at least one."""
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for line in self.log().splitlines():
                if line.startswith("{"):
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if predicate(record):
                        found.append(record)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        if getattr(self, "client", None):
            self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def openai_error(response: httpx.Response) -> dict:
    """Asserts the OpenAI error envelope and returns its `error` object."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
