"""Runs the real Envoy with the built switchyard.wasm for integration tests.

Envoy binds port 0 for both the listener and admin; the actual ports are read back
from the admin API, so parallel runs never collide. The configuration is the shipped
`envoy/gateway.yaml` with its model groups replaced by the test's, so the listener,
filters and error mappings under test are the ones users run.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import httpx

import gatewayconf
import launcher
from launcher import ENVOY  # noqa: F401  (tests import it from here)


class Gateway:
    def __init__(self, groups: list[gatewayconf.ModelGroup], env: dict[str, str] | None = None,
                 master_key_env: str | None = None, extra_env_keys: list[str] = (), concurrency: int = 2,
                 upstream_config: dict | None = None, sidecar: launcher.Sidecar | None = None,
                 virtual_keys: dict | None = None):
        """`sidecar`: point the gateway's sidecar cluster at it; `virtual_keys`: require a key
        (the master key from `master_key_env`, default SWITCHYARD_MASTER_KEY, or a virtual
        key), with these virtual_keys settings."""
        self.workdir = Path(tempfile.mkdtemp(prefix="switchyard-test-"))
        doc = gatewayconf.load()
        gatewayconf.replace_models(doc, groups, extra_env_keys=list(extra_env_keys) + ([master_key_env] if master_key_env else []))
        if upstream_config:
            gatewayconf.set_upstream_config(doc, **upstream_config)
        gatewayconf.set_ports(doc, 0, 0)
        gatewayconf.set_wasm_path(doc)
        if sidecar is not None:
            gatewayconf.point_sidecar(doc, sidecar.host, sidecar.port)
        if virtual_keys is not None:
            gatewayconf.enable_virtual_keys(doc, master_key_env or "SWITCHYARD_MASTER_KEY", **virtual_keys)
        elif master_key_env:
            gatewayconf.downstream_config(doc)["master_key_env"] = master_key_env
        self.envoy = launcher.Envoy(doc, self.workdir, env or {}, concurrency=concurrency)
        self.proc = self.envoy.proc.popen
        self.admin_url = self.envoy.admin_url
        self.url = self.envoy.url
        self.client = httpx.Client(base_url=self.url, timeout=30)

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
        return self.envoy.log()

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
        self.envoy.stop()


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
