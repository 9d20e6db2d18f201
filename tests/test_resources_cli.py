"""Resource profiles from the YAML config file, through the binary."""

from __future__ import annotations

from conftest import Gateway, wait_until


def test_profiles_from_config_file(tmp_path):
    cfg = tmp_path / "profiles.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: 0.5, memory: 512Mi}\n  gpu: {cpus: 1, memory: 1Gi, gpus: 1}\n"
                   "allow_custom_resources: false\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    try:
        res = gw.request("GET", "api/resources").json()
        assert res["profiles"]["small"] == {"cpus": 0.5, "memory_bytes": 512 << 20}
        assert res["allow_custom"] is False
        r = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_RESOURCE_PROFILE": "small"}}, timeout=90)
        assert r.status_code == 201, r.text
        assert r.json()["resources"]["request"] == {"cpus": 0.5, "memory_bytes": 512 << 20}
        custom = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_CPUS": "1"}}, timeout=30)
        assert custom.status_code == 403 and "profiles" in custom.json()["message"]
        unknown = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_RESOURCE_PROFILE": "xl"}}, timeout=30)
        assert unknown.status_code == 400 and "known: gpu, small" in unknown.json()["message"]
        no_gpu = gw.request("POST", "api/kernels", json={"name": "python3", "env": {"KERNEL_RESOURCE_PROFILE": "gpu"}}, timeout=30)
        assert no_gpu.status_code == 503 and "GPUs" in no_gpu.json()["message"]  # no (fake) nvidia-smi on PATH here
        used = gw.request("GET", "api/resources").json()["hosts"]["localhost"]["in_use"]
        assert used["cpus"] == 0.5 and used["memory_bytes"] == 512 << 20
        samples = dict(line.rsplit(" ", 1) for line in gw.request("GET", "metrics").text.splitlines()
                       if line.startswith("ganymede_resource_"))
        assert float(samples['ganymede_resource_allocated{resource="cpus"}']) == 0.5, samples
        assert float(samples['ganymede_resource_allocated{resource="memory_bytes"}']) == 512 << 20
        assert float(samples['ganymede_resource_allocated{resource="gpus"}']) == 0
        total = gw.request("GET", "api/resources").json()["hosts"]["localhost"]["capacity"]
        assert float(samples['ganymede_resource_capacity{resource="cpus"}']) == total["cpus"]
        assert float(samples['ganymede_resource_capacity{resource="memory_bytes"}']) == total["memory_bytes"]
    finally:
        gw.stop()


def test_bad_profiles_stop_the_gateway_with_a_reason(tmp_path):
    import subprocess

    from conftest import REPO, base_env, ganymede_bin

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: lots}\n")
    p = subprocess.run([ganymede_bin(), "--port", "0", "--config", str(cfg)], cwd=str(REPO), env=base_env(),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "resource_profiles" in p.stdout + p.stderr


def test_max_resources_per_user(tmp_path):
    cfg = tmp_path / "limits.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: 0.5, memory: 128Mi}\n"
                   "max_resources_per_user: {cpus: 1, memory: 1Gi}\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    ids = []
    try:
        def start(user, **env):
            return gw.request("POST", "api/kernels", timeout=90,
                              json={"name": "python3", "env": {"KERNEL_USERNAME": user, **env}})
        for _ in range(2):
            r = start("alice", KERNEL_RESOURCE_PROFILE="small")
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        third = start("alice", KERNEL_RESOURCE_PROFILE="small")
        assert third.status_code == 403, third.text
        assert third.json()["message"] == ("A max resources per user limit has been set to 1 of CPUs and user 'alice' holds 1 "
                                           "in running kernels; this kernel asks for 0.5 more."), third.text
        big = start("bob", KERNEL_MEMORY="2Gi")
        assert big.status_code == 403 and "2 GiB more" in big.json()["message"], big.text
        r = start("bob", KERNEL_RESOURCE_PROFILE="small")  # another user's kernels do not count
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        assert gw.request("DELETE", f"api/kernels/{ids.pop(0)}", timeout=60).status_code == 204
        r = start("alice", KERNEL_RESOURCE_PROFILE="small")  # released on delete
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    finally:
        for kid in ids:
            gw.request("DELETE", f"api/kernels/{kid}", timeout=60)
        gw.stop()


def test_unknown_profile_field_stops_the_gateway(tmp_path):
    import subprocess
    from conftest import base_env, ganymede_bin
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: 1, memroy: 1Gi}\n")
    p = subprocess.run([ganymede_bin(), "--port", "0", "--config", str(cfg)], env=base_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "unknown field(s) memroy" in p.stderr, p.stderr


def _fake_nvidia_smi(directory, gpus: int):
    """No GPU is attached to this machine: a stand-in answering nvidia-smi's inventory query."""
    directory.mkdir(parents=True, exist_ok=True)
    smi = directory / "nvidia-smi"
    lines = "".join(f"{i}, GPU-fake-{i}, Fake GPU {i}\\n" for i in range(gpus))
    smi.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    smi.chmod(0o755)
    return directory


def test_gpu_sharing(tmp_path):
    from conftest import KernelWS, base_env, execute_ok
    fake = _fake_nvidia_smi(tmp_path / "bin", 2)
    cfg = tmp_path / "gpus.yaml"
    cfg.write_text("gpu_sharing: 2\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)], env={"PATH": f"{fake}:{base_env()['PATH']}"}).start()
    ids = []
    try:
        def start(n):
            return gw.request("POST", "api/kernels", timeout=90, json={"name": "python3", "env": {"KERNEL_GPUS": str(n)}})
        devices = []
        for _ in range(4):
            r = start(1)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            devices += r.json()["resources"]["gpus"]
        assert sorted(devices) == [0, 0, 1, 1], devices  # least used device first, two kernels each
        full = start(1)
        assert full.status_code == 503 and "shared by up to 2" in full.json()["message"], full.text
        assert gw.request("GET", "api/resources").json()["gpu_sharing"] == 2
        assert gw.request("DELETE", f"api/kernels/{ids.pop(0)}", timeout=60).status_code == 204
        assert gw.request("DELETE", f"api/kernels/{ids.pop(0)}", timeout=60).status_code == 204
        both = start(2)  # one kernel never gets the same device twice
        assert both.status_code == 201, both.text
        ids.append(both.json()["id"])
        assert sorted(both.json()["resources"]["gpus"]) == [0, 1]
        with KernelWS(gw, both.json()["id"]) as ws:
            res = execute_ok(ws, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
            assert sorted(res.stdout.strip().split(",")) == ["0", "1"]
    finally:
        for kid in ids:
            gw.request("DELETE", f"api/kernels/{kid}", timeout=60)
        gw.stop()


def test_queued_start_waits_for_a_release(tmp_path):
    import threading
    import time
    cfg = tmp_path / "queue.yaml"
    cfg.write_text("queue_resource_requests: true\n")
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)]).start()
    ids = []
    try:
        total = gw.request("GET", "api/resources").json()["hosts"]["localhost"]["capacity"]["cpus"]
        half = str(total / 2)
        for _ in range(2):
            r = gw.request("POST", "api/kernels", timeout=90, json={"name": "python3", "env": {"KERNEL_CPUS": half}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        # Short launch timeout: refused after waiting, saying so.
        began = time.monotonic()
        r = gw.request("POST", "api/kernels", timeout=90,
                       json={"name": "python3", "env": {"KERNEL_CPUS": half, "KERNEL_LAUNCH_TIMEOUT": "2"}})
        assert r.status_code == 503 and "in the queue" in r.json()["message"], r.text
        assert time.monotonic() - began >= 1.9
        # A queued start is admitted as soon as a kernel ends.
        result = {}
        waiter = threading.Thread(target=lambda: result.update(r=gw.request(
            "POST", "api/kernels", timeout=120, json={"name": "python3", "env": {"KERNEL_CPUS": half}})))
        waiter.start()
        wait_until(lambda: gw.request("GET", "api/resources").json()["queued"] == 1, 20, what="the start to queue")
        assert gw.request("DELETE", f"api/kernels/{ids.pop(0)}", timeout=60).status_code == 204
        waiter.join(90)
        assert result["r"].status_code == 201, result["r"].text
        ids.append(result["r"].json()["id"])
        assert gw.request("GET", "api/resources").json()["queued"] == 0
    finally:
        for kid in ids:
            gw.request("DELETE", f"api/kernels/{kid}", timeout=60)
        gw.stop()
