"""Resource profiles from the YAML config file, through the binary."""

from __future__ import annotations

from conftest import Gateway


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
