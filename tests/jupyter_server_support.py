"""A real jupyter_server in gateway mode (`--gateway-url`), as JupyterLab users run it, for the
end-to-end tests: its own token, its own HOME and Jupyter paths, stopped by PID."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import base_env, free_port


class JupyterServer:
    """`jupyter server --gateway-url=URL [--GatewayClient.auth_token=T]` sending KERNEL_USERNAME."""

    def __init__(self, workdir: Path, gateway_url: str, kernel_username: str, gateway_token: str | None = None):
        self.token = "server-token-" + uuid.uuid4().hex[:8]
        self.headers = {"Authorization": f"token {self.token}"}
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "jupyter_server.log"
        for d in ("root", "home"):
            (workdir / d).mkdir()
        env = base_env()
        env.update({
            "HOME": str(workdir / "home"),
            "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
            "JUPYTER_DATA_DIR": str(workdir / "data"),
            "JUPYTER_CONFIG_DIR": str(workdir / "config"),
            "JUPYTER_PATH": "",
            "JUPYTER_CONFIG_PATH": "",
            "JUPYTER_PLATFORM_DIRS": "1",
            "KERNEL_USERNAME": kernel_username,
        })
        cmd = [sys.executable, "-m", "jupyter_server", f"--gateway-url={gateway_url}"]
        if gateway_token:
            cmd.append(f"--GatewayClient.auth_token={gateway_token}")
        cmd += [
            f"--IdentityProvider.token={self.token}", "--allow-root",
            f"--port={self.port}", "--port-retries=0", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={workdir / 'root'}",
        ]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"jupyter server exited with {self.proc.returncode}:\n{self.log_tail()}", pytrace=False)
            try:
                if requests.get(self.url("api/status"), headers=self.headers, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"jupyter server did not start within 90s:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 90)
        return requests.request(method, self.url(path), headers=self.headers, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_bytes().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
