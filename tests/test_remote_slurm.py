"""Kernels as Slurm jobs: a real single-node Slurm (munged, slurmctld, slurmd; started by
scripts/remote-test-env.sh), EG's TestPythonKernelDistributed itests with a Slurm kernelspec,
failures with Slurm's own reasons, and no job left behind (checked with squeue)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from pathlib import Path

import pytest

from conftest import free_port, KernelTracker, KernelWS, assert_json_error, execute_ok, wait_until
from remote_support import (REMOTE_SPECS, SLURM, RemoteEnv, assert_no_launcher_left, assert_state_kept_and_interruptible,
                            launcher_argv, start_gateway, write_spec)
from test_remote_ssh import run_eg_itests

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    env = RemoteEnv(tmp_path_factory.mktemp("slurm-env"), "slurm").start()
    yield env
    env.stop()


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-specs")
    write_spec(root, "slurm_crash", ["python3", "-c", "import sys; print('launcher exploded'); sys.exit(3)"], SLURM)
    write_spec(root, "slurm_later", launcher_argv(), SLURM, config={"sbatch_args": ["--begin=now+3600"]})
    write_spec(root, "slurm_nopartition", launcher_argv(), SLURM, config={"partition": "no-such-partition"})
    write_spec(root, "slurm_no_restart", launcher_argv(), SLURM, metadata={"auto_restart": False})
    return root


@pytest.fixture(scope="module")
def gw(tmp_path_factory, slurm_env, specs_dir):
    logdir = tmp_path_factory.mktemp("slurm-kernel-logs")
    g = start_gateway(tmp_path_factory.mktemp("slurm-gw"), "slurm_gateway", slurm_env.slurm_gateway_env(logdir),
                      [REMOTE_SPECS, specs_dir])
    yield g
    g.stop()


@pytest.fixture
def kernels(gw, slurm_env):
    t = KernelTracker(gw)
    yield t
    ids = list(t.ids)
    t.cleanup()
    for kid in ids:
        wait_until(lambda: not slurm_env.active_jobs(kid), 20, interval=0.2, what=f"job of {kid} to end")
        assert_no_launcher_left(kid)


def test_kernel_runs_as_a_slurm_job(gw, slurm_env, kernels):
    m = kernels.create("python_slurm")
    job = m["provisioner"]["slurm_job_id"]
    assert m["provisioner"]["kind"] == "slurm"
    assert slurm_env.active_jobs(m["id"]) == [f"{job} RUNNING"]
    with KernelWS(gw, m["id"]) as ws:
        res = execute_ok(ws, "import os; print(os.environ['SLURM_JOB_ID'], os.environ['KERNEL_ID'])")
        assert res.stdout.split() == [job, m["id"]]
    assert "slurm_job_id" in gw.log_tail(300) and job in gw.log_tail(300)
    assert gw.delete(f"api/kernels/{m['id']}").status_code == 204
    kernels.ids.remove(m["id"])
    wait_until(lambda: not slurm_env.active_jobs(m["id"]), 20, interval=0.2, what="job to end after DELETE")
    assert_no_launcher_left(m["id"])


def test_readiness_asks_the_slurm_controller(gw):
    # (The bundled SSH kernelspec's default host, localhost:22, has no sshd here: that check fails.)
    checks = {c["name"]: c for c in gw.get("api/health/ready", timeout=10).json()["checks"]}
    assert checks["slurm"] == {"name": "slurm", "ok": True, "detail": "slurmctld answers", "required": True}, checks


def test_readiness_fails_when_the_controller_is_away(tmp_path_factory, slurm_env):
    env = slurm_env.slurm_gateway_env(tmp_path_factory.mktemp("slurm-away-logs"))
    conf = tmp_path_factory.mktemp("slurm-away") / "slurm.conf"
    # A controller on a port where nothing listens: what squeue meets when slurmctld is down.
    text = Path(slurm_env.vars["SLURM_CONF"]).read_text()
    conf.write_text("\n".join(f"SlurmctldPort={free_port()}" if l.startswith("SlurmctldPort") else l for l in text.splitlines()))
    env["SLURM_CONF"] = str(conf)
    g = start_gateway(tmp_path_factory.mktemp("slurm-away-gw"), "slurm_away", env, [REMOTE_SPECS])
    try:
        r = g.get("api/health/ready", timeout=15)
        assert r.status_code == 503, r.text
        check = {c["name"]: c for c in r.json()["checks"]}["slurm"]
        assert check["ok"] is False and check["detail"], check
    finally:
        g.stop()


def test_interrupt_through_the_comm_port(gw, kernels):
    m = kernels.create("python_slurm")
    with KernelWS(gw, m["id"]) as ws:
        execute_ok(ws, "x = 1")
        msg_id = ws.send_execute("import time; time.sleep(60)")
        time.sleep(1.5)
        assert gw.post(f"api/kernels/{m['id']}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()
        assert execute_ok(ws, "print(x)").stdout.strip() == "1"


def test_failed_job_is_a_clear_error(gw, slurm_env, kernels):
    kid = str(uuid.uuid4())
    r = gw.post("api/kernels", json={"name": "slurm_crash", "env": {"KERNEL_ID": kid, "PATH": os.environ["PATH"]}},
                timeout=90)
    body = assert_json_error(r, [500])
    assert "FAILED" in body["message"] and "launcher exploded" in body["message"], body
    assert not slurm_env.active_jobs(kid)


def test_pending_too_long_reports_the_slurm_reason(gw, slurm_env, kernels):
    kid = str(uuid.uuid4())
    r = gw.post("api/kernels", json={"name": "slurm_later", "env": {"KERNEL_ID": kid, "KERNEL_LAUNCH_TIMEOUT": "4",
                                                                   "PATH": os.environ["PATH"]}}, timeout=90)
    body = assert_json_error(r, [500])
    assert "PENDING" in body["message"] and "BeginTime" in body["message"], body
    wait_until(lambda: not slurm_env.active_jobs(kid), 15, interval=0.2, what="pending job to be cancelled")


def test_rejected_submission_is_a_clear_error(gw, slurm_env):
    r = gw.post("api/kernels", json={"name": "slurm_nopartition"}, timeout=60)
    body = assert_json_error(r, [500])
    assert "sbatch refused" in body["message"] and "partition" in body["message"].lower(), body


def test_partition_from_the_request(gw, slurm_env, kernels):
    r = gw.post("api/kernels", json={"name": "python_slurm", "env": {"KERNEL_SLURM_PARTITION": "nope",
                                                                    "PATH": os.environ["PATH"]}}, timeout=60)
    body = assert_json_error(r, [500])
    assert "partition" in body["message"].lower(), body


def test_cancelled_job_is_relaunched(gw, slurm_env, kernels):
    m = kernels.create("python_slurm")
    job = m["provisioner"]["slurm_job_id"]
    subprocess.run(["scancel", job], env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]), check=True)

    def relaunched():
        k = gw.get(f"api/kernels/{m['id']}").json()
        new = k.get("provisioner", {}).get("slurm_job_id")
        return k if new and new != job and k["execution_state"] in ("idle", "busy", "starting") else None

    wait_until(relaunched, 60, interval=0.3, what="a new job after scancel")
    with KernelWS(gw, m["id"]) as ws:
        assert execute_ok(ws, "print(2)").stdout.strip() == "2"


def test_cancelled_job_without_restart_is_dead_with_reason(gw, slurm_env, kernels):
    m = kernels.create("slurm_no_restart")
    subprocess.run(["scancel", m["provisioner"]["slurm_job_id"]],
                   env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]), check=True)
    k = wait_until(lambda: (lambda k: k if k["execution_state"] == "dead" else None)(gw.get(f"api/kernels/{m['id']}").json()),
                   30, interval=0.2, what="the cancelled kernel to be dead")
    assert "CANCELLED" in k.get("reason", ""), k


@pytest.mark.timeout(400)
def test_eg_itests_python_distributed_on_slurm(gw, tmp_path):
    """EG's TestPythonKernelDistributed, unmodified, with the Slurm kernelspec."""
    run_eg_itests(gw, "python_slurm", tmp_path)


def test_gateway_stop_cancels_jobs(tmp_path_factory, slurm_env):
    logdir = tmp_path_factory.mktemp("slurm-stop-logs")
    g = start_gateway(tmp_path_factory.mktemp("slurm-stop"), "slurm_stop_gateway", slurm_env.slurm_gateway_env(logdir),
                      [REMOTE_SPECS])
    kid = KernelTracker(g).create("python_slurm")["id"]
    assert slurm_env.active_jobs(kid)
    g.stop()
    wait_until(lambda: not slurm_env.active_jobs(kid), 15, interval=0.2, what="the job to end with the gateway")
    assert_no_launcher_left(kid, timeout=5)


def test_sigkill_and_restart_reattaches_slurm_job(tmp_path_factory, slurm_env):
    """Session persistence with a Slurm kernel: the job keeps running while no gateway does, the
    next gateway finds it by job id (state kept, interrupt through the comm port), and DELETE
    cancels it. A persisted job that ended meanwhile is reported as lost."""
    root = tmp_path_factory.mktemp("slurm-sessions")
    env = slurm_env.slurm_gateway_env(tmp_path_factory.mktemp("slurm-reattach-logs"))
    args = ["--session-persistence", "true", "--persistence-root", str(root)]
    first = start_gateway(tmp_path_factory.mktemp("slurm-ra-a"), "slurm_first", env, [REMOTE_SPECS], args)
    second = None
    ids = []
    try:
        for _ in range(2):
            r = first.post("api/kernels", json={"name": "python_slurm"}, timeout=90)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        kid, doomed = ids
        job = first.get(f"api/kernels/{kid}").json()["provisioner"]["slurm_job_id"]
        with KernelWS(first, kid) as ws:
            execute_ok(ws, "x = 6 * 7")
        first.kill_leaving_kernels()
        assert slurm_env.active_jobs(kid) == [f"{job} RUNNING"], "the job outlives its gateway"
        # One job ends while no gateway watches.
        (doomed_job,) = [j.split()[0] for j in slurm_env.active_jobs(doomed)]
        subprocess.run(["scancel", doomed_job], env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]), check=True)
        wait_until(lambda: not slurm_env.active_jobs(doomed), 20, interval=0.2, what="cancelled job to end")

        second = start_gateway(tmp_path_factory.mktemp("slurm-ra-b"), "slurm_second", env, [REMOTE_SPECS], args)
        wait_until(lambda: second.get(f"api/kernels/{kid}").status_code == 200, 60, what="re-attach")
        assert second.get(f"api/kernels/{kid}").json()["provisioner"]["slurm_job_id"] == job
        lost = second.get(f"api/kernels/{doomed}")
        body = assert_json_error(lost, [404])
        assert "while no gateway was running" in body["message"] and doomed_job in body["message"], body
        assert_state_kept_and_interruptible(second, kid)
        assert second.delete(f"api/kernels/{kid}", timeout=60).status_code == 204
        wait_until(lambda: not slurm_env.active_jobs(kid), 20, interval=0.2, what="job to end after DELETE")
        assert not list(root.glob("*.json"))
    finally:
        if second is not None:
            second.stop()
        first.stop(check=False)
        for k in ids:
            for j in slurm_env.active_jobs(k):
                subprocess.run(["scancel", j.split()[0]], env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]))
            assert_no_launcher_left(k)


def test_resource_profiles_become_slurm_options(tmp_path_factory, slurm_env):
    """A profile's CPUs, memory, GPUs and partition reach sbatch (checked with scontrol show job);
    Slurm, not the gateway host's ledger, admits the job."""
    cfg = tmp_path_factory.mktemp("slurm-profiles") / "profiles.yaml"
    cfg.write_text("resource_profiles:\n"
                   "  gpu_small: {cpus: 1, memory: 300Mi, gpus: 1, slurm_partition: gpu}\n"
                   "  tiny: {cpus: 0.5, memory: 100Mi}\n")
    env = slurm_env.slurm_gateway_env(tmp_path_factory.mktemp("slurm-profile-logs"))
    g = start_gateway(tmp_path_factory.mktemp("slurm-profile-gw"), "slurm_profiles", env, [REMOTE_SPECS],
                      ["--config", str(cfg)])
    t = KernelTracker(g)
    try:
        m = t.create("python_slurm", env={"KERNEL_RESOURCE_PROFILE": "gpu_small"})
        assert m["resources"]["request"] == {"cpus": 1, "memory_bytes": 300 << 20, "gpus": 1, "slurm_partition": "gpu"}, m
        job = m["provisioner"]["slurm_job_id"]
        shown = subprocess.run(["scontrol", "show", "job", job], env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]),
                               capture_output=True, text=True, check=True).stdout
        fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
        assert fields["Partition"] == "gpu", shown
        assert fields["MinMemoryNode"] == "300M", shown
        assert fields.get("CPUs/Task") == "1", shown
        assert "gpu:1" in (fields.get("TresPerNode", "") + fields.get("Gres", "")), shown
        with KernelWS(g, m["id"]) as ws:
            res = execute_ok(ws, "import os; print(os.environ['SLURM_MEM_PER_NODE'], os.environ['SLURM_CPUS_PER_TASK'])")
            assert res.stdout.split() == ["300", "1"], res.summary()

        tiny = t.create("python_slurm", env={"KERNEL_RESOURCE_PROFILE": "tiny"})
        shown = subprocess.run(["scontrol", "show", "job", tiny["provisioner"]["slurm_job_id"]],
                               env=dict(os.environ, SLURM_CONF=slurm_env.vars["SLURM_CONF"]),
                               capture_output=True, text=True, check=True).stdout
        fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
        assert fields["Partition"] == "debug" and fields["MinMemoryNode"] == "100M" and fields.get("CPUs/Task") == "1", shown
        # The gateway host's own capacity is untouched: Slurm admitted these.
        assert g.get("api/resources").json()["hosts"]["localhost"]["in_use"]["cpus"] == 0
    finally:
        ids = list(t.ids)
        t.cleanup()
        g.stop()
        for kid in ids:
            wait_until(lambda: not slurm_env.active_jobs(kid), 20, interval=0.2, what=f"job of {kid} to end")
