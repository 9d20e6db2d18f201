"""Shared pieces of the remote-kernel tests: the sshd/Slurm test environment (started by
scripts/remote-test-env.sh, stopped by PID), gateways configured for it, and checks that no
remote kernel process or Slurm job is left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, Gateway, KernelTracker, free_port, wait_until

REMOTE_SPECS = REPO / "kernelspecs" / "remote"
ENV_SCRIPT = REPO / "scripts" / "remote-test-env.sh"


class RemoteEnv:
    def __init__(self, directory: Path, what: str):
        self.dir = directory
        self.what = what
        self.vars: dict[str, str] = {}

    def start(self) -> "RemoteEnv":
        env = dict(os.environ, GANYMEDE_REMOTE_ENV_DIR=str(self.dir))
        p = subprocess.run(["bash", str(ENV_SCRIPT), "start", self.what], env=env, capture_output=True, text=True,
                           timeout=600)
        if p.returncode != 0:
            self.stop()  # whatever did start (munged, slurmctld) must not outlive the failed setup
            pytest.fail(f"remote-test-env.sh start {self.what} failed:\n{p.stdout}\n{p.stderr}", pytrace=False)
        for line in (self.dir / "env").read_text().splitlines():
            k, _, v = line.partition("=")
            self.vars[k] = v
        return self

    def stop(self):
        env = dict(os.environ, GANYMEDE_REMOTE_ENV_DIR=str(self.dir))
        subprocess.run(["bash", str(ENV_SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)

    # ---- SSH
    def ssh_options(self, key: str | None = None) -> str:
        return (f"-i {key or self.vars['REMOTE_SSH_KEY']} -o UserKnownHostsFile={self.vars['REMOTE_SSH_KNOWN_HOSTS']}"
                " -o StrictHostKeyChecking=yes -o LogLevel=ERROR")

    def ssh_gateway_env(self, logdir: Path, **overrides: str) -> dict[str, str]:
        env = {
            "EG_RESPONSE_IP": "127.0.0.1",
            "EG_RESPONSE_PORT": str(free_port()),
            "EG_REMOTE_HOSTS": self.vars["REMOTE_SSH_HOST"],
            "EG_REMOTE_USER": "root",
            "EG_SSH_PORT": self.vars["REMOTE_SSH_PORT"],
            "GANYMEDE_SSH_OPTIONS": self.ssh_options(),
            "EG_KERNEL_LOG_DIR": str(logdir),
        }
        env.update(overrides)
        return env

    # ---- Slurm
    def slurm_gateway_env(self, logdir: Path, **overrides: str) -> dict[str, str]:
        env = {
            "EG_RESPONSE_IP": "127.0.0.1",
            "EG_RESPONSE_PORT": str(free_port()),
            "SLURM_CONF": self.vars["SLURM_CONF"],
            "EG_KERNEL_LOG_DIR": str(logdir),
            "GANYMEDE_SLURM_POLL_INTERVAL": "1",
        }
        env.update(overrides)
        return env

    def squeue(self, *args: str) -> str:
        return subprocess.run(["squeue", "-h", *args], env=dict(os.environ, SLURM_CONF=self.vars["SLURM_CONF"]),
                              capture_output=True, text=True, timeout=30).stdout

    def active_jobs(self, kernel_id: str) -> list[str]:
        out = self.squeue("-t", "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING", "-n", f"ganymede-{kernel_id}", "-o", "%i %T")
        return [line for line in out.splitlines() if line.strip()]


def launcher_pids(kernel_id: str) -> list[int]:
    """Processes anywhere on this machine whose command line names the kernel id (remote launchers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if kernel_id in cmd and "launch" in cmd and int(entry) != os.getpid():
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X"):
                pids.append(int(entry))
    return pids


def assert_no_launcher_left(kernel_id: str, timeout: float = 15):
    try:
        wait_until(lambda: not launcher_pids(kernel_id), timeout, interval=0.1, what=f"launcher of {kernel_id} to exit")
    except TimeoutError:
        left = launcher_pids(kernel_id)
        for p in left:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        pytest.fail(f"remote kernel processes left behind for {kernel_id}: {left}", pytrace=False)


def write_spec(root: Path, name: str, argv: list[str], class_name: str, config: dict | None = None,
               env: dict | None = None, metadata: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"display_name": name, "language": "python", "argv": argv,
            "metadata": {"process_proxy": {"class_name": class_name, "config": config or {}}, **(metadata or {})}}
    if env:
        spec["env"] = env
    (d / "kernel.json").write_text(json.dumps(spec))
    return d


DISTRIBUTED = "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy"
SLURM = "ganymede.SlurmProvisioner"
LAUNCHER = str(REMOTE_SPECS / "python_distributed" / "scripts" / "launch_ipykernel.py")


def launcher_argv(*extra: str) -> list[str]:
    return ["python3", LAUNCHER, "--kernel-id", "{kernel_id}", "--response-address", "{response_address}",
            "--public-key", "{public_key}", "--port-range", "{port_range}", *extra]


def blackhole_listener(host: str) -> socket.socket:
    """A TCP port that accepts connections and never says a word (an SSH server that hangs)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(16)
    return s


def eg_launcher(tmp_root: Path) -> Path:
    """EG 3.3.0's own launch_ipykernel.py, fetched from the PyPI source distribution at test time."""
    target = tmp_root / "eg-launcher" / "launch_ipykernel.py"
    if target.exists():
        return target
    dl = tmp_root / "eg-sdist"
    dl.mkdir(parents=True, exist_ok=True)
    import sys
    p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q", "-d", str(dl),
                        "jupyter_enterprise_gateway==3.3.0"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(f"pip download of EG's sdist failed: {p.stderr[-2000:]}", pytrace=False)
    import tarfile
    sdist = next(dl.glob("jupyter_enterprise_gateway-3.3.0.tar.gz"))
    with tarfile.open(sdist) as tf:
        member = tf.getmember("jupyter_enterprise_gateway-3.3.0/etc/kernel-launchers/python/scripts/launch_ipykernel.py")
        data = tf.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def start_gateway(workdir: Path, name: str, env: dict[str, str], spec_dirs: list[Path], extra_args: list[str] = ()) -> Gateway:
    args = []
    for d in spec_dirs:
        args += ["--kernelspec-dir", str(d)]
    return Gateway(workdir / name, args=[*args, *extra_args], env=env, name=name).start()


def assert_state_kept_and_interruptible(gw: Gateway, kernel_id: str):
    """After a re-attach: `x` set before is still there, and an interrupt (through the launcher's
    comm port) stops a running cell."""
    from conftest import KernelWS
    with KernelWS(gw, kernel_id) as ws:
        res = ws.execute("print(x)", timeout=60)
        assert "42" in res.stdout, res.summary()
        # Interrupt only once the cell is running: a SIGINT that reaches ipykernel between taking
        # the request and running the code is raised in its event loop and ends the kernel.
        msg_id = ws.send_execute("import time; print('sleeping', flush=True); time.sleep(60)")
        ws.collect(lambda m: m.get("parent_header", {}).get("msg_id") == msg_id,
                   lambda kept: any(m["header"]["msg_type"] == "stream" for m in kept), timeout=30,
                   what="the cell to start")
        assert gw.post(f"api/kernels/{kernel_id}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()


# ---- fixtures shared by the SSH test modules (import them by name into the module)

@pytest.fixture(scope="module")
def ssh_env(tmp_path_factory):
    """The sshd on 127.0.0.2 for one test module."""
    env = RemoteEnv(tmp_path_factory.mktemp("ssh-env"), "ssh").start()
    yield env
    env.stop()


@pytest.fixture
def kernels(gw):
    """Remote kernels started through the module's `gw`: deleted after the test, and checked
    to leave no launcher process behind."""
    t = KernelTracker(gw)
    yield t
    ids = list(t.ids)
    t.cleanup()
    for kid in ids:
        assert_no_launcher_left(kid)
