"""Session persistence: SIGKILL the gateway, start another on the same root, keep working."""

from __future__ import annotations

import os
import signal

from conftest import Gateway, KernelWS, alive, execute_ok, wait_until


def _kernel_pid(gw: Gateway) -> int:
    gw.record_children()
    pids = [p for p in gw.known_children if alive(p)]
    assert len(pids) == 1, pids
    return pids[0]


def test_sigkill_and_restart_reattaches(tmp_path):
    root = tmp_path / "sessions"
    args = ["--session-persistence", "true", "--persistence-root", str(root)]
    first = Gateway(tmp_path / "a", args=args, name="first").start()
    r = first.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_USERNAME": "erin"}}, timeout=90)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    pid = _kernel_pid(first)
    with KernelWS(first, kid) as ws:
        execute_ok(ws, "x = 6 * 7")
    assert (root / f"{kid}.json").exists()

    first.kill_leaving_kernels()
    assert alive(pid), "a persisted kernel survives its gateway's SIGKILL"

    second = Gateway(tmp_path / "b", args=args, name="second").start()
    try:
        wait_until(lambda: second.request("GET", f"api/kernels/{kid}").status_code == 200, 30, what="re-attach")
        model = second.request("GET", f"api/kernels/{kid}").json()
        assert model["id"] == kid
        kernels = second.request("GET", "api/kernels").json()
        assert [k["id"] for k in kernels] == [kid]
        with KernelWS(second, kid) as ws:
            res = ws.execute("print(x)", timeout=60)
            assert "42" in res.stdout, res.summary()
        assert second.request("DELETE", f"api/kernels/{kid}", timeout=60).status_code == 204
        wait_until(lambda: not alive(pid), 30, what="kernel to stop after DELETE")
        assert not (root / f"{kid}.json").exists()
    finally:
        second.stop()
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_with_persistence_off_still_stops_kernels(tmp_path):
    gw = Gateway(tmp_path, name="plain").start()
    r = gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90)
    assert r.status_code == 201
    pid = _kernel_pid(gw)
    gw.stop()  # checks that no kernel outlived it
    assert not alive(pid)
