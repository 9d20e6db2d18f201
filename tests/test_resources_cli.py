"""Resource profiles from the YAML config file, through the binary."""

from __future__ import annotations

from contextlib import contextmanager

from conftest import Gateway, KernelTracker, wait_until


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


@contextmanager
def configured_gateway(tmp_path, config: str, env: dict | None = None):
    """A gateway reading `config` as its YAML file, and a tracker that deletes its kernels."""
    cfg = tmp_path / "ganymede.yaml"
    cfg.write_text(config)
    gw = Gateway(tmp_path / "gw", args=["--config", str(cfg)], env=env).start()
    tracker = KernelTracker(gw)
    try:
        yield gw, tracker
    finally:
        tracker.cleanup()
        gw.stop()


def test_max_resources_per_user(tmp_path):
    with configured_gateway(tmp_path, "resource_profiles:\n  small: {cpus: 0.5, memory: 128Mi}\n"
                                      "max_resources_per_user: {cpus: 1, memory: 1Gi}\n") as (gw, kernels):
        def start(user, expect=201, **env):
            return kernels.create("python3", env={"KERNEL_USERNAME": user, **env}, expect=expect)
        first = start("alice", KERNEL_RESOURCE_PROFILE="small")
        start("alice", KERNEL_RESOURCE_PROFILE="small")
        third = start("alice", 403, KERNEL_RESOURCE_PROFILE="small")
        assert third["message"] == ("A max resources per user limit has been set to 1 of CPUs and user 'alice' holds 1 "
                                    "in running kernels; this kernel asks for 0.5 more."), third
        big = start("bob", 403, KERNEL_MEMORY="2Gi")
        assert "2 GiB more" in big["message"], big
        start("bob", KERNEL_RESOURCE_PROFILE="small")  # another user's kernels do not count
        kernels.delete(first["id"])
        start("alice", KERNEL_RESOURCE_PROFILE="small")  # released on delete


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
    with configured_gateway(tmp_path, "gpu_sharing: 2\n", env={"PATH": f"{fake}:{base_env()['PATH']}"}) as (gw, kernels):
        def start(n, expect=201):
            return kernels.create("python3", env={"KERNEL_GPUS": str(n)}, expect=expect)
        started = [start(1) for _ in range(4)]
        devices = [d for m in started for d in m["resources"]["gpus"]]
        assert sorted(devices) == [0, 0, 1, 1], devices  # least used device first, two kernels each
        full = start(1, 503)
        assert "shared by up to 2" in full["message"], full
        assert gw.request("GET", "api/resources").json()["gpu_sharing"] == 2
        kernels.delete(started[0]["id"])
        kernels.delete(started[1]["id"])
        both = start(2)  # one kernel never gets the same device twice
        assert sorted(both["resources"]["gpus"]) == [0, 1]
        with KernelWS(gw, both["id"]) as ws:
            res = execute_ok(ws, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
            assert sorted(res.stdout.strip().split(",")) == ["0", "1"]


def test_queued_start_waits_for_a_release(tmp_path):
    import threading
    import time
    with configured_gateway(tmp_path, "queue_resource_requests: true\n") as (gw, kernels):
        total = gw.request("GET", "api/resources").json()["hosts"]["localhost"]["capacity"]["cpus"]
        half = str(total / 2)
        first = kernels.create("python3", env={"KERNEL_CPUS": half})
        kernels.create("python3", env={"KERNEL_CPUS": half})
        # Short launch timeout: refused after waiting, saying so.
        began = time.monotonic()
        refused = kernels.create("python3", env={"KERNEL_CPUS": half, "KERNEL_LAUNCH_TIMEOUT": "2"}, expect=503)
        assert "in the queue" in refused["message"], refused
        assert time.monotonic() - began >= 1.9
        # A queued start is admitted as soon as a kernel ends.
        result = {}
        waiter = threading.Thread(target=lambda: result.update(r=gw.request(
            "POST", "api/kernels", timeout=120, json={"name": "python3", "env": {"KERNEL_CPUS": half}})))
        waiter.start()
        wait_until(lambda: gw.request("GET", "api/resources").json()["queued"] == 1, 20, what="the start to queue")
        kernels.delete(first["id"])
        waiter.join(90)
        assert result["r"].status_code == 201, result["r"].text
        kernels.adopt(result["r"].json()["id"])
        assert gw.request("GET", "api/resources").json()["queued"] == 0
