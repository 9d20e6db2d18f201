"""Command line and process behaviour of the ganymede binary."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from conftest import REPO, Gateway, KernelTracker, KernelWS, alive, base_env, descendants_of, execute_ok, \
    ganymede_bin, wait_until


def _run(args, timeout=30):
    return subprocess.run([ganymede_bin(), *args], cwd=str(REPO), env=base_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_help():
    p = _run(["--help"])
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    for flag in ("--ip", "--port", "--auth-token", "--kernelspec-dir", "--base-url"):
        assert flag in out, f"--help does not mention {flag}"


def test_unknown_flag_fails():
    p = _run(["--no-such-flag"])
    assert p.returncode != 0
    assert (p.stdout + p.stderr).strip(), "an unknown flag should be reported"


def test_port_in_use_fails(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = _run(["--ip", "127.0.0.1", "--port", str(port)], timeout=30)
    assert p.returncode != 0, "started on a port that is already taken"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_kernels_down(tmp_path, sig):
    gw = Gateway(tmp_path, name=f"sig{int(sig)}").start()
    try:
        t = KernelTracker(gw)
        kid = t.create()["id"]
        with KernelWS(gw, kid) as ws:
            execute_ok(ws, "1", timeout=90)
        kids = descendants_of(gw.proc.pid)
        assert kids, "the kernel is not a child of the gateway"
        gw.expected_exit = True
        gw.proc.send_signal(sig)
        gw.proc.wait(timeout=20)
        wait_until(lambda: not any(alive(p) for p in kids), 10, what="kernels to exit after the gateway")
    finally:
        gw.stop()
