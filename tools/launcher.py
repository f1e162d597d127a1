"""Starts what a gateway needs, the same way for `make run`, the tests and the benchmark:
the sidecar, the bundled demo provider and Envoy with the built filter, each on loopback,
each stopped (with anything it started) by `stop()`.

Ports are ephemeral unless given: the sidecar and the demo provider report theirs when
they are ready; Envoy writes its admin address to a file, and the listener's is read
back from the admin API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx

import gatewayconf

ROOT = gatewayconf.ROOT
ENVOY = ROOT / ".venv" / "bin" / "envoy"
SIDECAR = ROOT / "target" / "release" / "switchyard-sidecar"


class Process:
    """A child process in a session of its own, its output in `log_path` (or inherited)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path | None, cwd: Path | None = None,
                 stdout=None, new_session: bool = True):
        self.log_path = log_path
        self.new_session = new_session
        self._log = open(log_path, "wb") if log_path else None
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, start_new_session=new_session,
                                      stdout=stdout if stdout is not None else (self._log or None),
                                      stderr=subprocess.STDOUT if self._log else None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        if self._log and not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def signal(self, sig: int) -> None:
        if self.alive():
            if self.new_session:
                os.killpg(self.pid, sig)
            else:
                self.popen.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait()
        if self._log:
            self._log.close()
        return self.popen.returncode


def wait_for(probe: Callable[[], object], what: str, proc: Process | None = None, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.log()[-4000:]}")
        try:
            value = probe()
            if value:
                return value
        except (OSError, ValueError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready:\n{proc.log()[-4000:] if proc else ''}")


class Sidecar:
    """`switchyard-sidecar`: SQLite in `workdir` unless `database_url` names another store."""

    def __init__(self, workdir: Path, env: dict[str, str], database_url: str | None = None,
                 addr: str = "127.0.0.1:0", binary: Path = SIDECAR, new_session: bool = True):
        if not binary.is_file():
            raise FileNotFoundError(f"{binary} is missing: build it with `make sidecar`")
        full = {"PATH": os.environ.get("PATH", ""), **env, "SWITCHYARD_SIDECAR_ADDR": addr,
                "DATABASE_URL": database_url or f"sqlite://{workdir / 'switchyard.db'}"}
        self.proc = Process([str(binary)], full, workdir / "sidecar.log", cwd=workdir, new_session=new_session)
        self.addr = wait_for(self._listening, "the sidecar", self.proc)
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)

    def _listening(self) -> str | None:
        for line in self.proc.log().splitlines():
            if line.startswith("{"):
                fields = json.loads(line).get("fields", {})
                if fields.get("message") == "listening":
                    return fields["addr"]
        return None

    def stop(self) -> int:
        return self.proc.stop()


class DemoProvider:
    """The offline `demo` model's provider (Anthropic's format, tools/mockproviders/demo.py)."""

    def __init__(self, env: dict[str, str], api_key_env: str = "DEMO_PROVIDER_API_KEY", new_session: bool = True):
        self.proc = Process([sys.executable, "-m", "mockproviders.demo", "--port", "0", "--api-key-env", api_key_env],
                            env, None, cwd=ROOT / "tools", stdout=subprocess.PIPE, new_session=new_session)
        line = self.proc.popen.stdout.readline().decode()
        # "demo provider listening on 127.0.0.1:PORT"
        if "listening on" not in line:
            self.proc.stop()
            raise RuntimeError(f"the demo provider did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> int:
        return self.proc.stop()


class Envoy:
    """Envoy with the configuration `doc` (checked by the lint first)."""

    def __init__(self, doc: dict, workdir: Path, env: dict[str, str], concurrency: int = 2,
                 log_level: str = "info", wasm_log_level: str = "debug", flush_ms: int = 50,
                 name: str = "envoy", lint: bool = True, new_session: bool = True):
        if lint:
            problems = gatewayconf.lint(doc)
            if problems:
                raise ValueError("the gateway configuration is inconsistent:\n  " + "\n  ".join(problems))
        self.config_path = gatewayconf.write(doc, workdir / f"{name}.json")
        admin_file = workdir / f"{name}.admin"
        self.proc = Process(
            [str(ENVOY), "-c", str(self.config_path), "--concurrency", str(concurrency), "--disable-hot-restart",
             "--admin-address-path", str(admin_file), "--log-level", log_level,
             "--component-log-level", f"wasm:{wasm_log_level}",
             # Access and outlier-event logs reach the file soon, not after Envoy's 10 s.
             "--file-flush-interval-msec", str(flush_ms)],
            {"PATH": os.environ.get("PATH", ""), **env}, workdir / f"{name}.log", new_session=new_session)
        self.admin_url = "http://" + wait_for(lambda: admin_file.read_text().strip(), "envoy", self.proc)
        wait_for(lambda: httpx.get(self.admin_url + "/ready", timeout=2).text.strip() == "LIVE", "envoy", self.proc)
        self.url = "http://" + self._listener_address()

    def _listener_address(self) -> str:
        listeners = httpx.get(self.admin_url + "/listeners?format=json", timeout=2).json()
        socket = listeners["listener_statuses"][0]["local_address"]["socket_address"]
        return f"{socket['address']}:{socket['port_value']}"

    def log(self) -> str:
        return self.proc.log()

    def stop(self) -> int:
        return self.proc.stop()
