"""Remote kernels over SSH: a real sshd on 127.0.0.2 (key login, started by
scripts/remote-test-env.sh), kernels started through EG's launcher protocol by our launcher and
by EG's own, EG's TestPythonKernelDistributed itests, and every failure path leaving nothing
behind."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import (KernelTracker, KernelWS, alive, assert_json_error, base_env, cmdline, descendants_of, execute_ok,
                      wait_until)
from remote_support import (DISTRIBUTED, REMOTE_SPECS, RemoteEnv, assert_no_launcher_left, assert_state_kept_and_interruptible,
                            blackhole_listener, eg_launcher, launcher_argv, launcher_pids, start_gateway, write_spec)

from remote_support import kernels, ssh_env  # noqa: F401,E402  (shared fixtures)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory, ssh_env):
    """Extra kernelspecs for failure cases and EG's own launcher."""
    root = tmp_path_factory.mktemp("ssh-specs")
    write_spec(root, "crash", ["python3", "-c", "import sys; print('launcher exploded'); sys.exit(3)"], DISTRIBUTED)
    write_spec(root, "silent", ["python3", "-c", "import time; time.sleep(300)", "{kernel_id}", "launch"], DISTRIBUTED)
    from Cryptodome.PublicKey import RSA
    other = base64.b64encode(RSA.generate(2048).publickey().export_key("DER")).decode()
    write_spec(root, "wrongkey", ["python3", launcher_argv()[1], "--kernel-id", "{kernel_id}", "--response-address",
                                  "{response_address}", "--public-key", other], DISTRIBUTED)
    write_spec(root, "no_restart", launcher_argv(), DISTRIBUTED, metadata={"auto_restart": False})
    eg = eg_launcher(tmp_path_factory.getbasetemp())
    write_spec(root, "eg_launcher", ["python3", str(eg), "--RemoteProcessProxy.kernel-id", "{kernel_id}",
                                     "--RemoteProcessProxy.response-address", "{response_address}",
                                     "--RemoteProcessProxy.public-key", "{public_key}",
                                     "--RemoteProcessProxy.port-range", "{port_range}",
                                     "--RemoteProcessProxy.spark-context-initialization-mode", "none"], DISTRIBUTED)
    return root


@pytest.fixture(scope="module")
def gw(tmp_path_factory, ssh_env, specs_dir):
    logdir = tmp_path_factory.mktemp("ssh-kernel-logs")
    g = start_gateway(tmp_path_factory.mktemp("ssh-gw"), "ssh_gateway", ssh_env.ssh_gateway_env(logdir),
                      [REMOTE_SPECS, specs_dir])
    g.logdir = logdir
    yield g
    g.stop()


def sshd_pid(env: RemoteEnv) -> int:
    return int((env.dir / "ssh" / "sshd.pid").read_text())


def test_kernel_runs_under_sshd(gw, ssh_env, kernels):
    m = kernels.create("python_distributed")
    assert m["provisioner"]["kind"] == "ssh" and m["provisioner"]["host"] == ssh_env.vars["REMOTE_SSH_HOST"], m
    pid = int(m["provisioner"]["pid"])
    # The kernel is a process of the SSH server's session, not a child of the gateway.
    assert pid in descendants_of(sshd_pid(ssh_env)), cmdline(pid)
    assert pid not in descendants_of(gw.proc.pid)
    with KernelWS(gw, m["id"]) as ws:
        res = execute_ok(ws, "import os; print(os.getpid(), os.environ['KERNEL_ID'], 'JPY_PARENT_PID' in os.environ)")
        assert res.stdout.split() == [str(pid), m["id"], "False"], res.stdout
    log = gw.logdir / f"kernel-{m['id']}.log"
    assert log.exists(), "per-kernel log file on the remote host"
    assert "connection info sent" in log.read_text()


def test_interrupt_and_restart_through_the_comm_port(gw, kernels):
    m = kernels.create("python_distributed")
    with KernelWS(gw, m["id"]) as ws:
        execute_ok(ws, "x = 41")
        msg_id = ws.send_execute("import time; time.sleep(60)")
        time.sleep(1.5)
        assert gw.post(f"api/kernels/{m['id']}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()
        assert execute_ok(ws, "print(x + 1)").stdout.strip() == "42"
    old_pid = m["provisioner"]["pid"]
    r = gw.post(f"api/kernels/{m['id']}/restart")
    assert r.status_code == 200, r.text
    new = gw.get(f"api/kernels/{m['id']}").json()
    assert new["provisioner"]["pid"] != old_pid
    assert not any(str(p) == old_pid for p in launcher_pids(m["id"])), "the old launcher is gone"
    with KernelWS(gw, m["id"]) as ws:
        res = ws.execute("print(x)")
        assert res.error and res.error["ename"] == "NameError"


def test_environment_reaches_the_remote_kernel_exactly(gw, kernels, tmp_path):
    marker = tmp_path / "pwned"
    value = f"it's a \"test\"; touch {marker} && echo | cat"
    m = kernels.create("python_distributed", env={"KERNEL_TRICKY": value, "PATH": os.environ["PATH"]})
    with KernelWS(gw, m["id"]) as ws:
        res = execute_ok(ws, "import os, json; print(json.dumps(os.environ['KERNEL_TRICKY']))")
        assert json.loads(res.stdout) == value
    assert not marker.exists()


def test_one_ssh_connection_serves_many_launches(gw, kernels):
    a = kernels.create("python_distributed")
    b = kernels.create("python_distributed")
    masters = [p for p in descendants_of(gw.proc.pid) if "ssh" in cmdline(p) and " -M " in f" {cmdline(p)} "]
    assert len(masters) == 1, [cmdline(p) for p in masters]
    assert a["provisioner"]["pid"] != b["provisioner"]["pid"]


def test_eg_own_launcher(gw, kernels):
    """EG 3.3.0's launch_ipykernel.py, from its PyPI sdist, against Ganymede's listener."""
    m = kernels.create("eg_launcher")
    with KernelWS(gw, m["id"]) as ws:
        assert execute_ok(ws, "print(6 * 7)").stdout.strip() == "42"
        msg_id = ws.send_execute("import time; time.sleep(60)")
        time.sleep(1.5)
        assert gw.post(f"api/kernels/{m['id']}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()


def test_launcher_crash_is_a_clear_error(gw, kernels):
    r = gw.post("api/kernels", json={"name": "crash"}, timeout=60)
    body = assert_json_error(r, [500])
    assert "exited" in body["message"] and "launcher exploded" in body["message"], body
    assert gw.get("api/kernels").json() == [] or all(k["name"] != "crash" for k in gw.get("api/kernels").json())


def test_launch_timeout_kills_the_remote_process(gw, kernels):
    kid = str(uuid.uuid4())
    r = gw.post("api/kernels", json={"name": "silent", "env": {"KERNEL_ID": kid, "KERNEL_LAUNCH_TIMEOUT": "3",
                                                              "PATH": os.environ["PATH"]}}, timeout=60)
    body = assert_json_error(r, [500])
    assert "launch timeout" in body["message"], body
    assert_no_launcher_left(kid)


def test_payload_for_another_key_is_rejected(gw, kernels):
    kid = str(uuid.uuid4())
    r = gw.post("api/kernels", json={"name": "wrongkey", "env": {"KERNEL_ID": kid, "KERNEL_LAUNCH_TIMEOUT": "4",
                                                                "PATH": os.environ["PATH"]}}, timeout=60)
    assert_json_error(r, [500])
    assert "rejected launcher payload" in gw.log_tail(400)
    assert_no_launcher_left(kid)


def test_forged_and_garbage_payloads_are_rejected(gw, kernels):
    m = kernels.create("python_distributed")
    pid = int(m["provisioner"]["pid"])
    argv = cmdline(pid).split()
    address = argv[argv.index("--response-address") + 1]
    public_key = argv[argv.index("--public-key") + 1]
    host, port = address.rsplit(":", 1)
    sys.path.insert(0, str(REMOTE_SPECS / "python_distributed" / "scripts"))
    import launch_ipykernel as launcher
    forged = json.dumps({"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
                         "ip": "127.0.0.1", "key": "x", "kernel_id": str(uuid.uuid4())}).encode()
    for payload in [launcher.encrypt(forged, public_key), b"garbage", b"A" * 70000, b""]:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            try:
                s.sendall(payload)
            except OSError:
                pass
    wait_until(lambda: gw.log_tail(400).count("rejected launcher payload") >= 3, 10, what="rejections logged")
    with KernelWS(gw, m["id"]) as ws:
        assert execute_ok(ws, "print('still fine')").stdout.strip() == "still fine"


def test_lost_remote_kernel_is_restarted(gw, ssh_env, kernels):
    m = kernels.create("python_distributed")
    old = int(m["provisioner"]["pid"])
    os.kill(old, signal.SIGKILL)

    def restarted():
        k = gw.get(f"api/kernels/{m['id']}").json()
        pid = k.get("provisioner", {}).get("pid")
        return k if pid and pid != str(old) and k["execution_state"] in ("idle", "busy", "starting") else None

    k = wait_until(restarted, 60, interval=0.2, what="the lost kernel to be relaunched")
    with KernelWS(gw, m["id"]) as ws:
        assert execute_ok(ws, "print(1)").stdout.strip() == "1"
    assert "kernel died" in gw.log_tail(400)
    assert k["provisioner"]["host"] == ssh_env.vars["REMOTE_SSH_HOST"]


def test_lost_remote_kernel_without_restart_is_dead_with_reason(gw, kernels):
    m = kernels.create("no_restart")
    os.kill(int(m["provisioner"]["pid"]), signal.SIGKILL)
    k = wait_until(lambda: (lambda k: k if k["execution_state"] == "dead" else None)(gw.get(f"api/kernels/{m['id']}").json()),
                   30, interval=0.2, what="the lost kernel to be dead")
    assert k.get("reason"), k
    assert_no_launcher_left(m["id"])


@pytest.mark.timeout(400)
def test_eg_itests_python_distributed_over_ssh(gw, tmp_path):
    """EG's shipped TestPythonKernelDistributed, unmodified, with an SSH kernelspec."""
    run_eg_itests(gw, "python_distributed", tmp_path)


def run_eg_itests(gw, spec: str, tmp_path):
    env = base_env()
    env.update({
        "GATEWAY_HOST": f"127.0.0.1:{gw.port}",
        "KERNEL_USERNAME": "bob",
        "ITEST_HOSTNAME_PREFIX": socket.gethostname()[:1] or "a",
        "PYTHON_KERNEL_DISTRIBUTED_NAME": spec,
        "REQUEST_TIMEOUT": "90",
    })
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", "enterprise_gateway.itests",
         "-k", "TestPythonKernelDistributed", "-o", "addopts=", "--timeout=300"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=380,
    )
    tail = p.stdout[-4000:] + "\n" + p.stderr[-2000:]
    assert p.returncode == 0, tail
    assert "5 passed" in p.stdout, tail


# --------------------------------------------------------------------------- other gateways


@pytest.fixture(scope="module")
def extra_gateways(tmp_path_factory):
    started = []
    yield started
    for g in started:
        g.stop(check=False)


def one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, name, **overrides):
    logdir = tmp_path_factory.mktemp(f"{name}-logs")
    g = start_gateway(tmp_path_factory.mktemp(name), name, ssh_env.ssh_gateway_env(logdir, **overrides), [REMOTE_SPECS])
    extra_gateways.append(g)
    return g


def test_refused_ssh_is_a_clear_error(tmp_path_factory, extra_gateways, ssh_env):
    closed = blackhole_listener(ssh_env.vars["REMOTE_SSH_HOST"])
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connection refused
    g = one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, "refused", EG_SSH_PORT=str(port))
    r = g.post("api/kernels", json={"name": "python_distributed"}, timeout=60)
    body = assert_json_error(r, [500])
    assert "refused" in body["message"].lower(), body
    ready = g.get("api/health/ready", timeout=10)
    assert ready.status_code == 503, ready.text
    checks = {c["name"]: c for c in ready.json()["checks"]}
    host = ssh_env.vars["REMOTE_SSH_HOST"]
    assert checks[f"ssh:{host}"]["ok"] is False and "unreachable" in checks[f"ssh:{host}"]["detail"], checks
    assert checks["ssh"] == {"name": "ssh", "ok": False, "detail": "0 of 1 SSH host(s) reachable", "required": True}
    assert checks["response_listener"]["ok"] is True, checks


def test_readiness_covers_listener_and_ssh_hosts(gw, ssh_env):
    r = gw.get("api/health/ready", timeout=10)
    checks = {c["name"]: c for c in r.json()["checks"]}
    # The bundled Slurm kernelspec is loaded too, and this host has no Slurm configuration:
    # the probe says so without asking DNS for a controller.
    assert checks["slurm"]["ok"] is False and "no slurm.conf" in checks["slurm"]["detail"], checks
    assert r.status_code == 503
    assert checks["ssh"]["ok"] is True, checks
    assert checks[f"ssh:{ssh_env.vars['REMOTE_SSH_HOST']}"]["ok"] is True, checks
    assert checks["response_listener"]["ok"] and "127.0.0.1:" in checks["response_listener"]["detail"], checks


def test_wrong_ssh_key_is_a_clear_error(tmp_path_factory, extra_gateways, ssh_env):
    g = one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, "badkey",
                        GANYMEDE_SSH_OPTIONS=ssh_env.ssh_options(ssh_env.vars["REMOTE_SSH_BADKEY"]))
    r = g.post("api/kernels", json={"name": "python_distributed"}, timeout=60)
    body = assert_json_error(r, [500])
    assert "permission denied" in body["message"].lower(), body


def test_unreachable_host_is_a_clear_error(tmp_path_factory, extra_gateways, ssh_env):
    hole = blackhole_listener(ssh_env.vars["REMOTE_SSH_HOST"])
    try:
        g = one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, "unreachable",
                            EG_SSH_PORT=str(hole.getsockname()[1]), GANYMEDE_SSH_CONNECT_TIMEOUT="2")
        t0 = time.monotonic()
        r = g.post("api/kernels", json={"name": "python_distributed"}, timeout=60)
        body = assert_json_error(r, [500])
        assert time.monotonic() - t0 < 20
        assert "ssh" in body["message"].lower() and ("timed out" in body["message"].lower()
                                                     or "did not authenticate" in body["message"]), body
    finally:
        hole.close()


def test_host_selection(tmp_path_factory, extra_gateways, ssh_env):
    host = ssh_env.vars["REMOTE_SSH_HOST"]
    g = one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, "hosts",
                        EG_REMOTE_HOSTS=f"{host},127.0.0.4", EG_LOAD_BALANCING_ALGORITHM="least-connection")
    t = KernelTracker(g)
    try:
        # KERNEL_REMOTE_HOST wins over the algorithm.
        m = t.create("python_distributed", env={"KERNEL_REMOTE_HOST": host, "PATH": os.environ["PATH"]})
        assert m["provisioner"]["host"] == host
        # least-connection now prefers the other host, where nothing listens: a clear error, not a hang.
        r = g.post("api/kernels", json={"name": "python_distributed"}, timeout=60)
        assert_json_error(r, [500])
    finally:
        t.cleanup()


@pytest.mark.parametrize("host", ["-oProxyCommand=touch {marker}", "host name", "a;b", "$(id)", ".x", "-p1"])
def test_remote_host_that_is_not_a_host_name_is_refused(gw, tmp_path, host):
    marker = tmp_path / "pwned"
    r = gw.post("api/kernels", json={"name": "python_distributed",
                                     "env": {"KERNEL_REMOTE_HOST": host.format(marker=marker)}}, timeout=60)
    body = assert_json_error(r, [400])
    assert "KERNEL_REMOTE_HOST" in body["message"], body
    assert not marker.exists()


def test_tunnelled_kernel_ports(tmp_path_factory, extra_gateways, ssh_env):
    g = one_off_gateway(tmp_path_factory, extra_gateways, ssh_env, "tunnel", EG_ENABLE_TUNNELING="true")
    t = KernelTracker(g)
    try:
        m = t.create("python_distributed")
        assert m["provisioner"].get("tunnel") == "true", m
        with KernelWS(g, m["id"]) as ws:
            execute_ok(ws, "y = 1")
            msg_id = ws.send_execute("import time; time.sleep(60)")
            time.sleep(1.5)
            assert g.post(f"api/kernels/{m['id']}/interrupt").status_code == 204
            res = ws.collect_execution(msg_id, timeout=30)
            assert res.error and res.error["ename"] == "KeyboardInterrupt"
    finally:
        t.cleanup()


def test_unknown_process_proxy_refuses_to_start(tmp_path, ssh_env):
    from conftest import ganymede_bin
    write_spec(tmp_path / "specs", "yarn_thing", ["python3"],
               "enterprise_gateway.services.processproxies.yarn.YarnClusterProcessProxy")
    p = subprocess.run([ganymede_bin(), "--port", "0", "--kernelspec-dir", str(tmp_path / "specs")],
                       env=base_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "yarn_thing" in p.stderr and "YarnClusterProcessProxy" in p.stderr, p.stderr


def test_gateway_stop_stops_remote_kernels(tmp_path_factory, ssh_env):
    """Kernels never outlive the gateway, remote ones included (they are not its descendants)."""
    logdir = tmp_path_factory.mktemp("stop-logs")
    g = start_gateway(tmp_path_factory.mktemp("stop"), "stop_gateway", ssh_env.ssh_gateway_env(logdir), [REMOTE_SPECS])
    ids = [KernelTracker(g).create("python_distributed")["id"] for _ in range(2)]
    assert all(launcher_pids(k) for k in ids)
    g.stop()
    for k in ids:
        assert_no_launcher_left(k, timeout=5)


@pytest.mark.parametrize("how", ["sigkill", "sigterm-tunnelled"])
def test_gateway_restart_reattaches_ssh_kernel(tmp_path_factory, extra_gateways, ssh_env, how):
    """Session persistence with a remote kernel: the launcher keeps running while no gateway does,
    the next gateway takes it over (state kept, interrupts through the comm port, its end noticed)
    and stops the `ssh` processes a SIGKILLed gateway left behind."""
    root = tmp_path_factory.mktemp("ssh-sessions")
    tunnel = {"EG_ENABLE_TUNNELING": "true"} if "tunnelled" in how else {}
    env = ssh_env.ssh_gateway_env(tmp_path_factory.mktemp("reattach-logs"), **tunnel)
    args = ["--session-persistence", "true", "--persistence-root", str(root)]
    first = start_gateway(tmp_path_factory.mktemp("reattach-a"), "reattach_first", env, [REMOTE_SPECS], args)
    extra_gateways.append(first)
    r = first.post("api/kernels", json={"name": "python_distributed", "env": {"KERNEL_USERNAME": "frank"}}, timeout=90)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    try:
        with KernelWS(first, kid) as ws:
            execute_ok(ws, "x = 6 * 7")
        # The launcher and its kernel (the local `ssh` client's command line names the kernel too).
        launchers = [p for p in launcher_pids(kid) if os.path.basename(cmdline(p).split()[0]) != "ssh"]
        assert launchers
        if how == "sigkill":
            helpers = first.kill_leaving_kernels()
            assert any("ssh" in cmdline(p) for p in helpers), helpers
        else:
            first.stop()  # SIGTERM: with persistence, kernels are left for the next gateway
            helpers = set()
        assert all(alive(p) for p in launchers), "the remote kernel outlives its gateway"

        second = start_gateway(tmp_path_factory.mktemp("reattach-b"), "reattach_second", env, [REMOTE_SPECS], args)
        extra_gateways.append(second)
        wait_until(lambda: second.get(f"api/kernels/{kid}").status_code == 200, 60, what="re-attach")
        model = second.get(f"api/kernels/{kid}").json()
        assert model["provisioner"]["kind"] == "ssh" and model["provisioner"]["host"] == ssh_env.vars["REMOTE_SSH_HOST"]
        assert_state_kept_and_interruptible(second, kid)
        # The earlier gateway's ssh session and control master are gone.
        wait_until(lambda: not any(alive(p) for p in helpers), 15, what="orphaned ssh processes to be stopped")
        # Its end is noticed without the original ssh session: the kernel is restarted.
        for p in launcher_pids(kid):
            os.kill(p, signal.SIGKILL)
        wait_until(lambda: launcher_pids(kid) and not set(launcher_pids(kid)) & set(launchers), 60,
                   what="a new launcher after the re-attached one was killed")
        with KernelWS(second, kid) as ws:
            execute_ok(ws, "1 + 1")
        assert second.delete(f"api/kernels/{kid}", timeout=60).status_code == 204
        assert not (root / f"{kid}.json").exists()
    finally:
        assert_no_launcher_left(kid)


def test_placement_by_free_capacity_and_limits_on_the_host(tmp_path_factory, extra_gateways, ssh_env):
    """Resource profiles on SSH hosts: each kernel goes to the host with the most free capacity,
    a kernel that fits nowhere is refused naming each host's shortfall, a release makes room, and
    the limits are applied on the host (the kernel's own cgroup there, as root)."""
    h1, h2 = ssh_env.vars["REMOTE_SSH_HOST"], ssh_env.vars["REMOTE_SSH_HOST2"]
    cfg = tmp_path_factory.mktemp("placement") / "ganymede.yaml"
    cfg.write_text(f"resource_profiles:\n  small: {{cpus: 1, memory: 256Mi}}\n"
                   f"remote_host_resources:\n  '{h1}': {{cpus: 1, memory: 2Gi}}\n  '{h2}': {{cpus: 2, memory: 2Gi}}\n")
    logdir = tmp_path_factory.mktemp("placement-logs")
    g = start_gateway(tmp_path_factory.mktemp("placement-gw"), "placement", ssh_env.ssh_gateway_env(logdir, EG_REMOTE_HOSTS=f"{h1},{h2}"),
                      [REMOTE_SPECS], ["--config", str(cfg)])
    extra_gateways.append(g)
    t = KernelTracker(g)
    try:
        placed = []
        for _ in range(3):
            m = t.create("python_distributed", env={"KERNEL_RESOURCE_PROFILE": "small"})
            placed.append(m["provisioner"]["host"])
        # h2 (2 free CPUs) first; then a tie on CPUs, broken by free memory (h1 has all its 2 GiB); then h2.
        assert placed == [h2, h1, h2], placed
        hosts = g.get("api/resources").json()["hosts"]
        assert hosts[h1]["in_use"]["cpus"] == 1 and hosts[h2]["in_use"]["cpus"] == 2, hosts
        full = g.post("api/kernels", json={"name": "python_distributed", "env": {"KERNEL_RESOURCE_PROFILE": "small"}}, timeout=60)
        body = assert_json_error(full, [503])
        assert "No SSH host has room" in body["message"] and h1 in body["message"] and h2 in body["message"], body

        kid = t.ids[0]
        with KernelWS(g, kid) as ws:
            res = execute_ok(ws, "print(open('/proc/self/cgroup').read())")
            assert f"ganymede/{kid}" in res.stdout, res.stdout
            quota = execute_ok(ws, f"print(open('/sys/fs/cgroup/cpu/ganymede/{kid}/cpu.cfs_quota_us').read())")
            assert quota.stdout.strip() == "100000"
            limit = execute_ok(ws, f"print(open('/sys/fs/cgroup/memory/ganymede/{kid}/memory.limit_in_bytes').read())")
            assert int(limit.stdout) == 256 << 20
        before = set(p for p in launcher_pids(kid) if os.path.basename(cmdline(p).split()[0]) != "ssh")
        with KernelWS(g, kid) as ws:
            ws.send_execute("x = bytearray(1024 ** 3); x[::4096] = b'1' * len(x[::4096])")
            # Killed by its memory limit on the host, and clients are told why; a new launcher takes over.
            status = ws.collect(lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting",
                                until=lambda kept: len(kept) > 0, timeout=60)
            assert status[0]["content"].get("reason") == "out of memory (limit 256 MiB)", status[0]["content"]
            wait_until(lambda: not set(launcher_pids(kid)) & before, 60, what="the over-limit kernel to be killed")

        assert g.delete(f"api/kernels/{t.ids[1]}", timeout=60).status_code == 204
        t.ids.remove(t.ids[1])
        m = t.create("python_distributed", env={"KERNEL_RESOURCE_PROFILE": "small"})
        assert m["provisioner"]["host"] == h1  # the room the deleted kernel left
    finally:
        ids = list(t.ids)
        t.cleanup()
        for kid in ids:
            assert_no_launcher_left(kid)
            wait_until(lambda: not os.path.exists(f"/sys/fs/cgroup/memory/ganymede/{kid}"), 15,
                       what="the kernel's cgroup on the host to be removed")


def test_free_capacity_balancing_without_profiles(tmp_path_factory, extra_gateways, ssh_env):
    h1, h2 = ssh_env.vars["REMOTE_SSH_HOST"], ssh_env.vars["REMOTE_SSH_HOST2"]
    logdir = tmp_path_factory.mktemp("freecap-logs")
    g = start_gateway(tmp_path_factory.mktemp("freecap-gw"), "freecap",
                      ssh_env.ssh_gateway_env(logdir, EG_REMOTE_HOSTS=f"{h1},{h2}", EG_LOAD_BALANCING_ALGORITHM="free-capacity"),
                      [REMOTE_SPECS])
    extra_gateways.append(g)
    t = KernelTracker(g)
    try:
        m = t.create("python_distributed")
        assert m["provisioner"]["host"] in (h1, h2)
        # Neither host's capacity was configured: both were asked over SSH.
        hosts = g.get("api/resources").json()["hosts"]
        assert hosts[h1]["capacity"]["cpus"] == os.cpu_count() and hosts[h2]["capacity"]["cpus"] == os.cpu_count(), hosts
    finally:
        ids = list(t.ids)
        t.cleanup()
        for kid in ids:
            assert_no_launcher_left(kid)
