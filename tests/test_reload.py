"""SIGHUP re-reads the configuration: kernelspecs, limits and user lists, without dropping anything."""

from __future__ import annotations

import json
import signal

from conftest import Gateway, KernelWS, execute_ok, wait_until


def _spec(dirpath, name):
    d = dirpath / name
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Reloaded {name}", "language": "python"}))


def test_sighup_reloads_specs_limits_and_users(tmp_path):
    extra_dir = tmp_path / "extra_specs"
    _spec(extra_dir, "reloaded_spec")
    cfg = tmp_path / "ganymede.yaml"
    cfg.write_text("max_kernels: 1\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    try:
        r = gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90)
        assert r.status_code == 201, r.text
        first = r.json()["id"]
        assert gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90).status_code == 403
        assert "reloaded_spec" not in gw.request("GET", "api/kernelspecs").json()["kernelspecs"]

        with KernelWS(gw, first) as ws:
            execute_ok(ws, "y = 'kept'")
            cfg.write_text(f"max_kernels: 2\nkernelspec_dirs: {extra_dir}\n")
            gw.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reloaded_spec" in gw.request("GET", "api/kernelspecs").json()["kernelspecs"], 15,
                       what="kernelspecs reloaded")
            r2 = gw.request("POST", "api/kernels", json={"name": "reloaded_spec"}, timeout=90)
            assert r2.status_code == 201, r2.text
            assert gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90).status_code == 403
            # The open WebSocket and the kernel's state survived the reload.
            res = execute_ok(ws, "print(y)")
            assert "kept" in res.stdout
        assert gw.proc.poll() is None, "SIGHUP must not stop the gateway"

        # A broken config file is reported and the old settings stay.
        cfg.write_text("max_kernels: [not, a, number\n")
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "not reloaded" in gw.log_tail(50), 15, what="reload error logged")
        assert gw.proc.poll() is None
        assert "reloaded_spec" in gw.request("GET", "api/kernelspecs").json()["kernelspecs"]
    finally:
        gw.stop()


def test_sighup_reloads_user_lists(tmp_path):
    cfg = tmp_path / "users.yaml"
    cfg.write_text("authorized_users: alice\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    try:
        # The harness sets EG_UNAUTHORIZED_USERS= for root; authorized_users comes from the file.
        body = {"name": "python3", "env": {"KERNEL_USERNAME": "bob"}}
        assert gw.request("POST", "api/kernels", json=body, timeout=90).status_code == 403
        assert "python3" not in gw.request("GET", "api/kernelspecs?user=bob").json()["kernelspecs"]
        cfg.write_text("authorized_users: alice,bob\n")
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "python3" in gw.request("GET", "api/kernelspecs?user=bob").json()["kernelspecs"], 15,
                   what="user lists reloaded")
        r = gw.request("POST", "api/kernels", json=body, timeout=90)
        assert r.status_code == 201, r.text
    finally:
        gw.stop()


def test_sighup_reloads_resource_profiles(tmp_path):
    cfg = tmp_path / "profiles.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: 0.5, memory: 256Mi}\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    try:
        assert list(gw.request("GET", "api/resources").json()["profiles"]) == ["small"]
        cfg.write_text("resource_profiles:\n  small: {cpus: 0.5, memory: 256Mi}\n  medium: {cpus: 1, memory: 512Mi}\n"
                       "allow_custom_resources: false\n")
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "medium" in gw.request("GET", "api/resources").json()["profiles"], 15, what="profiles reloaded")
        assert gw.request("GET", "api/resources").json()["allow_custom"] is False
        r = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_RESOURCE_PROFILE": "medium"}}, timeout=90)
        assert r.status_code == 201, r.text
        assert r.json()["resources"]["request"] == {"cpus": 1, "memory_bytes": 512 << 20}
        custom = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_CPUS": "1"}}, timeout=30)
        assert custom.status_code == 403, custom.text
    finally:
        gw.stop()
