"""The sidecar suite's harness: the real `switchyard-sidecar` binary as a process
(`Sidecar`), LiteLLM 1.106.2's pydantic models in the LiteLLM virtualenv (`Validator`), and
small helpers the tests share (a module of its own: `conftest` is a name every suite uses).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SWITCHYARD_SIDECAR_BIN", ROOT / "target" / "release" / "switchyard-sidecar")).resolve()
LITELLM_PY = Path(os.environ.get("LITELLM_VENV", ROOT / ".venv-litellm")) / "bin" / "python"
MASTER = "sk-master-test-0123456789"
SECRET = "internal-test-secret-0123456789"


class Sidecar:
    """One sidecar process; `stop()` (SIGTERM, then SIGKILL after 10 s) always runs."""

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str] | None = None):
        self.database_url = database_url
        self.workdir = workdir
        self.log_path = workdir / f"sidecar-{uuid.uuid4().hex[:8]}.log"
        full = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url, "SWITCHYARD_SIDECAR_ADDR": "127.0.0.1:0",
                "SWITCHYARD_MASTER_KEY": MASTER, "SWITCHYARD_INTERNAL_SECRET": SECRET, "SWITCHYARD_LOG": "debug"}
        full.update(env or {})
        full = {k: v for k, v in full.items() if v is not None}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(BIN)], stdout=subprocess.DEVNULL, stderr=self._log, env=full, cwd=workdir)
        try:
            self.url = "http://" + self._wait_listening()
        except BaseException:
            self.kill()
            raise
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
        self.internal = httpx.Client(base_url=self.url, headers={"x-switchyard-internal": SECRET}, timeout=30)

    def _wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if line.get("fields", {}).get("message") == "listening":
                    return line["fields"]["addr"]
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log_path.read_text()}")
            time.sleep(0.02)
        raise TimeoutError(f"sidecar did not start: {self.log_path.read_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict]:
        out = []
        for raw in self.log_text().splitlines():
            if raw.strip():
                out.append(json.loads(raw))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        for c in ("client", "internal"):
            if hasattr(self, c):
                getattr(self, c).close()
        self._log.close()

    # Admin calls, with the master key.
    def post(self, path: str, body=None, **kw) -> httpx.Response:
        return self.client.post(path, json=body, **kw)

    def get(self, path: str, **params) -> httpx.Response:
        return self.client.get(path, params=params)


class Validator:
    """LiteLLM's pydantic models, in a process of the LiteLLM virtualenv."""

    def __init__(self):
        if not LITELLM_PY.exists():
            raise RuntimeError(f"{LITELLM_PY} is missing: run `make litellm-venv` (make test does)")
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
        self.proc = subprocess.Popen([str(LITELLM_PY), str(Path(__file__).with_name("litellm_validator.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.lock = threading.Lock()
        first = self.proc.stdout.readline()
        assert json.loads(first) == {"ready": True}, first

    def check(self, model: str, data) -> None:
        with self.lock:
            self.proc.stdin.write(json.dumps({"model": model, "data": data}) + "\n")
            self.proc.stdin.flush()
            out = json.loads(self.proc.stdout.readline())
        assert out["ok"], f"LiteLLM's {model} refuses the response: {out.get('error')}\n{json.dumps(data)[:2000]}"

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sha(key: str) -> str:
    """LiteLLM's hash_token."""
    return hashlib.sha256(key.encode()).hexdigest()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error(status: int, message_part: str | None, param: str | None, type_: str = "bad_request_error"):
    """A checker for an exact OpenAI-shaped refusal."""
    def check(resp: httpx.Response):
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["code"] == str(status) and body["error"]["type"] == type_ and body["error"]["param"] == param, body
        if message_part:
            assert message_part in body["error"]["message"], body
    return check
