"""Ganymede's authenticated launcher mode over a real sshd (127.0.0.2): the per-kernel launch key
reaches the launcher on stdin only, a payload forged with EG's (public) RSA key for a starting
kernel is refused, the comm port ignores unsealed commands, and GANYMEDE_LAUNCHER_AUTH=required
refuses launchers that only speak EG's version-1 envelope."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from conftest import KernelTracker, KernelWS, assert_json_error, execute_ok, wait_until
from remote_support import (DISTRIBUTED, REMOTE_SPECS, assert_no_launcher_left, launcher_argv, launcher_pids,
                            start_gateway, write_spec)

from remote_support import kernels, ssh_env  # noqa: F401,E402  (shared fixtures)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """Where the slow launcher wrapper writes its arguments, one file per kernel id."""
    return tmp_path_factory.mktemp("auth-argv")


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory, record):
    root = tmp_path_factory.mktemp("auth-specs")
    # Our launcher in the authenticated mode, behind a wrapper that records its arguments and
    # waits, so the test can race it with a forged payload for the same kernel id.
    wrapper = ["sh", "-c", f'printf "%s\\n" "$@" > {record}/"$2"; sleep 3; exec python3 "$0" "$@"',
               *launcher_argv("--launch-key-stdin")[1:]]
    write_spec(root, "slow_auth", wrapper, DISTRIBUTED, config={"launcher_auth": "aes-gcm"})
    # EG's protocol (version 1) only.
    write_spec(root, "v1_only", launcher_argv(), DISTRIBUTED)
    # Declares the authenticated mode, but its launcher does not read the key.
    write_spec(root, "auth_without_flag", launcher_argv(), DISTRIBUTED, config={"launcher_auth": "aes-gcm"})
    return root


def _gateway(tmp_path_factory, ssh_env, specs_dir, name, extra_env=None):
    logdir = tmp_path_factory.mktemp(f"{name}-logs")
    env = ssh_env.ssh_gateway_env(logdir)
    env.update(extra_env or {})
    g = start_gateway(tmp_path_factory.mktemp(name), name, env, [REMOTE_SPECS, specs_dir])
    g.logdir = logdir
    return g


@pytest.fixture(scope="module")
def gw(tmp_path_factory, ssh_env, specs_dir):
    g = _gateway(tmp_path_factory, ssh_env, specs_dir, "auth_gw")
    yield g
    g.stop()


def _listening_ports(pid: int) -> list[int]:
    """TCP ports the process listens on (/proc/PID/fd socket inodes matched in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.append(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _python_launcher(kernel_id: str) -> int:
    """The launcher's own process (not the ssh session or the shell that mention its command line)."""
    def argv(p):
        return Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
    pids = [p for p in launcher_pids(kernel_id)
            if os.path.basename(argv(p)[0]).startswith(b"python") and argv(p)[1].endswith(b"launch_ipykernel.py")]
    assert len(pids) == 1, pids
    return pids[0]


def test_key_reaches_the_launcher_on_stdin_only(gw, kernels):
    m = kernels.create("python_distributed")
    pid = _python_launcher(m["id"])
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"--launch-key-stdin" in cmd
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"GANYMEDE" not in environ and b"LAUNCH_KEY" not in environ
    # Nothing key-shaped (32 bytes in base64) in any argv on the machine mentioning the kernel:
    # the ssh session's command line and the remote shell's included.
    key_shaped = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])")
    mentioning = launcher_pids(m["id"])
    assert len(mentioning) >= 2, mentioning  # the local ssh session and the launcher at least
    for p in mentioning:
        found = key_shaped.search(Path(f"/proc/{p}/cmdline").read_bytes())
        assert not found, f"a 32-byte base64 value in the argv of {p}: {found.group()!r}"
    with KernelWS(gw, m["id"]) as ws:
        res = execute_ok(ws, "import os, sys\nprint(sorted(k for k in os.environ if 'KEY' in k), sys.stdin.read() if sys.stdin else '')")
        assert "[]" in res.stdout, res.stdout


def test_unsealed_comm_commands_are_ignored(gw, kernels):
    m = kernels.create("python_distributed")
    pid = _python_launcher(m["id"])
    ports = _listening_ports(pid)
    assert len(ports) >= 6, ports  # five kernel ports and the comm port
    # An attacker on the network sends EG's plain commands to every port the launcher has open.
    for port in ports:
        for command in (b'{"signum": 9}', b'{"shutdown": 1}'):
            try:
                with socket.create_connection(("127.0.0.2", port), timeout=2) as s:
                    s.sendall(command)
            except OSError:
                pass
    time.sleep(1)
    assert os.path.exists(f"/proc/{pid}"), "an unsealed {'signum': 9} killed the kernel"
    with KernelWS(gw, m["id"]) as ws:
        execute_ok(ws, "x = 1")
        # The gateway's own (sealed) interrupt still works: the comm port was not shut down.
        msg_id = ws.send_execute("import time; time.sleep(60)")
        time.sleep(1.5)
        assert gw.post(f"api/kernels/{m['id']}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()
    log = (gw.logdir / f"kernel-{m['id']}.log").read_text()
    assert "unauthenticated request refused" in log, log[-2000:]


def test_forged_payload_racing_the_launcher_is_refused(gw, record, kernels):
    """Whoever knows a starting kernel's id and the gateway's public key (both on the launcher's
    command line) sends connection info for a kernel of their own before the real launcher."""
    import threading

    from Cryptodome.Cipher import AES, PKCS1_v1_5
    from Cryptodome.PublicKey import RSA
    from Cryptodome.Util.Padding import pad

    before = set(os.listdir(record))
    result: dict = {}
    starter = threading.Thread(target=lambda: result.update(r=gw.post("api/kernels", json={"name": "slow_auth"}, timeout=90)))
    starter.start()
    wait_until(lambda: set(os.listdir(record)) - before, 30, interval=0.05, what="the launcher wrapper to start")
    kid = (set(os.listdir(record)) - before).pop()
    args = (record / kid).read_text().split("\n")
    address = args[args.index("--response-address") + 1]
    public_key = args[args.index("--public-key") + 1]
    attacker = socket.socket()
    attacker.bind(("127.0.0.1", 0))
    attacker.listen(8)
    port = attacker.getsockname()[1]
    forged = {"shell_port": port, "iopub_port": port, "stdin_port": port, "control_port": port, "hb_port": port,
              "ip": "127.0.0.1", "key": "attacker", "transport": "tcp", "signature_scheme": "hmac-sha256",
              "kernel_name": "", "pid": 1, "pgid": 1, "kernel_id": kid}
    aes_key = os.urandom(16)
    wrapped = PKCS1_v1_5.new(RSA.importKey(base64.b64decode(public_key))).encrypt(aes_key)
    sealed = AES.new(aes_key, AES.MODE_ECB).encrypt(pad(json.dumps(forged).encode(), 16))
    payload = base64.b64encode(json.dumps({"version": 1, "key": base64.b64encode(wrapped).decode(),
                                           "conn_info": base64.b64encode(sealed).decode()}).encode())
    host, _, p = address.rpartition(":")
    with socket.create_connection((host, int(p)), timeout=5) as s:
        s.sendall(payload)
    starter.join(90)
    attacker.close()
    r = result["r"]
    assert r.status_code == 201, r.text
    kernels.ids.append(r.json()["id"])
    assert r.json()["id"] == kid
    with KernelWS(gw, kid) as ws:
        res = execute_ok(ws, "import os; print(os.getpid())")
    assert int(res.stdout.strip()) == _python_launcher(kid), "the kernel in use is not the one our launcher started"
    assert "rejected launcher payload" in gw.log_path.read_text(errors="replace") and "authenticated mode" in gw.log_path.read_text(errors="replace")


def test_a_launcher_that_does_not_read_the_key_fails_clearly(gw, kernels):
    r = gw.post("api/kernels", json={"name": "auth_without_flag"}, timeout=90)
    assert_json_error(r, [500, 503])
    assert r.status_code != 201
    # The gateway names why: the payload it got was EG's unauthenticated one.
    assert "authenticated mode" in gw.log_path.read_text(errors="replace")


def test_required_mode_refuses_version_1_launchers(tmp_path_factory, ssh_env, specs_dir):
    g = _gateway(tmp_path_factory, ssh_env, specs_dir, "areq", {"GANYMEDE_LAUNCHER_AUTH": "required"})
    t = KernelTracker(g)
    try:
        r = g.post("api/kernels", json={"name": "v1_only"}, timeout=90)
        assert_json_error(r, [400, 500, 503])
        assert "launcher_auth" in r.json()["message"], r.text
        assert not [p for p in launcher_pids("v1_only")]
        m = t.create("python_distributed")
        with KernelWS(g, m["id"]) as ws:
            execute_ok(ws, "print(1)")
    finally:
        ids = list(t.ids)
        t.cleanup()
        g.stop()
        for kid in ids:
            assert_no_launcher_left(kid)


def test_bad_launcher_auth_setting_is_refused_at_startup(tmp_path):
    import subprocess

    from conftest import base_env, ganymede_bin
    env = base_env()
    env["GANYMEDE_LAUNCHER_AUTH"] = "sometimes"
    p = subprocess.run([ganymede_bin(), "--port", "0"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert "GANYMEDE_LAUNCHER_AUTH must be one of optional, required" in p.stderr + p.stdout
