"""Operations settings of the binary: TLS from the command line and env, metrics and probes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, Gateway, base_env, free_port, ganymede_bin


def _run(args, env=None, timeout=30):
    e = base_env()
    e.update(env or {})
    return subprocess.run([ganymede_bin(), *args], cwd=str(REPO), env=e, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    script = f"""
    set -e
    cd '{d}'
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=alice 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext 2>/dev/null
    """
    subprocess.run(["sh", "-c", script], check=True)
    return d


class TLSGateway:
    """The binary serving HTTPS; stopped by PID."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str] | None = None):
        self.port = free_port()
        e = base_env()
        e["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
        e.update(env or {})
        self.log = open(tmp / "tls-gateway.log", "ab")
        self.proc = subprocess.Popen([ganymede_bin(), "--ip", "127.0.0.1", "--port", str(self.port), *args], cwd=str(REPO),
                                     env=e, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def wait(self, **kw):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gateway exited with {self.proc.returncode}"
            try:
                return requests.get(self.url("api/health"), timeout=2, **kw)
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("gateway did not answer over HTTPS")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def test_https_from_flags_and_kernel_over_it(tmp_path, pki):
    gw = TLSGateway(tmp_path, ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"),
                               "--auth-token", "tls-token"])
    try:
        ca = str(pki / "ca.pem")
        assert gw.wait(verify=ca).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(gw.url("api"), timeout=5)  # system trust store does not know the test CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{gw.port}/api", timeout=5)  # no plain HTTP on the TLS port
        h = {"Authorization": "token tls-token"}
        assert requests.get(gw.url("api/kernels"), verify=ca, timeout=10).status_code == 401
        r = requests.post(gw.url("api/kernels"), json={"name": "python3"}, headers=h, verify=ca, timeout=90)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        m = requests.get(gw.url("metrics"), headers=h, verify=ca, timeout=10)
        assert m.status_code == 200
        assert 'ganymede_kernel_starts_total{kernelspec="python3",provisioner="LocalProvisioner"} 1' in m.text
        assert requests.delete(gw.url(f"api/kernels/{kid}"), headers=h, verify=ca, timeout=60).status_code == 204
    finally:
        gw.stop()


def test_mutual_tls_from_env(tmp_path, pki):
    gw = TLSGateway(tmp_path, [], env={"EG_CERTFILE": str(pki / "server.pem"), "EG_KEYFILE": str(pki / "server.key"),
                                       "EG_CLIENT_CA": str(pki / "ca.pem")})
    try:
        ca = str(pki / "ca.pem")
        cert = (str(pki / "client.pem"), str(pki / "client.key"))
        assert gw.wait(verify=ca, cert=cert).status_code == 200
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(gw.url("api"), verify=ca, timeout=5)  # no client certificate
        assert requests.get(gw.url("api"), verify=ca, cert=cert, timeout=5).status_code == 200
    finally:
        gw.stop()


@pytest.mark.parametrize("args,needle", [
    (["--certfile", "/nonexistent/cert.pem", "--keyfile", "/nonexistent/key.pem"], "cannot read the certificate file"),
    (["--certfile", "/nonexistent/cert.pem"], "go together"),
    (["--client-ca", "/nonexistent/ca.pem"], "--client-ca needs"),
])
def test_bad_tls_settings_fail_clearly(args, needle):
    p = _run(["--port", "0", *args])
    assert p.returncode != 0
    assert needle in p.stdout + p.stderr


def test_key_that_is_not_a_key(pki):
    p = _run(["--port", "0", "--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "ca.pem")])
    assert p.returncode != 0
    assert "private key" in p.stdout + p.stderr


def test_probes_public_metrics_protected(tmp_path):
    gw = Gateway(tmp_path, token="probe-token", env={"EG_AUTH_TOKEN": "probe-token"}).start()
    try:
        assert requests.get(gw.url("api/health"), timeout=5).status_code == 200
        ready = requests.get(gw.url("api/health/ready"), timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert requests.get(gw.url("metrics"), timeout=5).status_code == 401
        m = requests.get(gw.url("metrics"), headers=gw.auth_headers(), timeout=5)
        assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain")
        assert "ganymede_websocket_connections" in m.text
        # The memory gauges read the process itself: resident bytes from /proc, the heap from glibc.
        values = {line.split()[0]: float(line.split()[1]) for line in m.text.splitlines()
                  if line.startswith(("ganymede_process_resident_bytes", "ganymede_heap_"))}
        assert values["ganymede_process_resident_bytes"] > 1e6, values
        assert values["ganymede_heap_in_use_bytes"] > 1e5, values
        assert values["ganymede_heap_free_bytes"] >= 0, values
    finally:
        gw.stop()


def test_json_logs_carry_kernel_and_user_and_never_the_token(tmp_path):
    import json

    token = "log-token-9f8e7d"
    gw = Gateway(tmp_path, token=token, args=["--log-format", "json", "--log-level", "debug"],
                 env={"EG_AUTH_TOKEN": token, "MY_API_SECRET": "do-not-print-me"}).start()
    try:
        r = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_USERNAME": "carol"}}, timeout=90)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        requests.get(gw.url(f"api/kernels?token={token}"), timeout=5)
        requests.get(gw.url("api/kernels?token=wrong-token"), timeout=5)
        assert gw.request("DELETE", f"api/kernels/{kid}", timeout=60).status_code == 204
    finally:
        gw.stop()
    text = gw.log_path.read_text()
    assert token not in text and "do-not-print-me" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records, "no JSON log lines"
    starts = [r for r in records if r.get("message") == "starting kernel"]
    assert starts and starts[0]["kernel_id"] == kid and starts[0]["user"] == "carol"
    assert all({"time", "level", "message"} <= r.keys() for r in records)
    created = [r for r in records if r.get("message") == "kernel created"]
    assert created and created[0]["kernel_id"] == kid and created[0].get("hb.request.id"), created
