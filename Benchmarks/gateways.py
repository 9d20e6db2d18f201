"""The targets of the side-by-side run: Ganymede, the three Python peers and a direct jupyter_client connection.

Each gateway is started on 127.0.0.1 with a port found by binding port 0, stopped by PID (SIGTERM, then SIGKILL),
and any kernel it leaves behind (jupyverse leaves its kernels running on SIGTERM) is killed by PID too.
All targets launch the same kernelspec: the bench venv's ipykernel.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid

import psutil
import requests
import zmq
from jupyter_client import KernelManager
from jupyter_client.session import Session

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS = os.path.join(HERE, ".venv-bench")
RUN_DIR = os.path.join(HERE, ".run")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind port 0 and read it back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kernelspec_root() -> str:
    """A JUPYTER_PATH-style directory whose kernels/python3 runs the driver venv's ipykernel."""
    root = os.path.join(RUN_DIR, "jupyter")
    spec_dir = os.path.join(root, "kernels", "python3")
    os.makedirs(spec_dir, exist_ok=True)
    py = os.path.join(VENVS, "drv", "bin", "python")
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "Python 3 (bench)", "language": "python",
                   "metadata": {"debugger": False}}, f)
    return root


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process from /proc/<pid>/stat (children excluded: kernels are not counted)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of a process, summed over its threads (/proc/<pid>/task/*/status)."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def kernel_pid(gateway_pid: int) -> int | None:
    """The ipykernel process a gateway started (its direct child), or None."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline") as f:
                    if "ipykernel" not in f.read():
                        continue
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(gateway_pid):
                        return int(p)
            except OSError:
                pass
    return None


def percentile_nearest_rank(xs: list[float], p: float) -> float:
    """The diagnostics' percentile: the sample nearest rank p (bench.py's `pct` interpolates between samples)."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def rss_mb(pid: int) -> float:
    """VmRSS from /proc/<pid>/status, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def memory_mb(pid: int) -> dict:
    """RSS split the way /proc/<pid>/smaps_rollup splits it, in MB: `anon` (the process's own heap and
    stacks), `file` (mapped code and data of the binary and its libraries: shared, clean and reclaimable),
    and `pss` (RSS with each shared page divided among the processes mapping it)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Anonymous"):
                    out[key] = int(rest.split()[0]) * 1024 / 1e6
    except OSError:
        return {}
    if "Rss" not in out:
        return {}
    return {"rss": out["Rss"], "pss": out.get("Pss", float("nan")), "anon": out.get("Anonymous", float("nan")),
            "file": out["Rss"] - out.get("Anonymous", 0.0)}


class Gateway:
    """A gateway process serving the Jupyter kernels REST API and channels WebSocket."""

    name = "gateway"
    # What the start-up wait and the responsiveness probe GET (jupyverse has no `/api`).
    health_path = "/api"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.log = None
        self.known_kernel_pids: set[int] = set()

    # -- process -----------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["JUPYTER_PATH"] = kernelspec_root()
        env["JUPYTER_RUNTIME_DIR"] = os.path.join(RUN_DIR, "runtime", self.name)
        env["JUPYTER_DATA_DIR"] = os.path.join(RUN_DIR, "data", self.name)
        env["JUPYTER_CONFIG_DIR"] = os.path.join(RUN_DIR, "config", self.name)
        env["HOME"] = os.path.join(RUN_DIR, "home", self.name)
        for k in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "HOME"):
            os.makedirs(env[k], exist_ok=True)
        return env

    def start(self, timeout: float = 60) -> None:
        os.makedirs(os.path.join(RUN_DIR, "logs"), exist_ok=True)
        self.log = open(os.path.join(RUN_DIR, "logs", f"{self.name}.log"), "w")
        self.proc = subprocess.Popen(self.command(), env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=os.path.join(RUN_DIR, "home", self.name))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if self.http.get(self.base + self.health_path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /api within {timeout}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def note_kernels(self) -> None:
        """Remember the gateway's kernel processes so they can be killed by PID if the gateway leaves them."""
        try:
            for c in psutil.Process(self.pid).children(recursive=True):
                self.known_kernel_pids.add(c.pid)
        except psutil.Error:
            pass

    def stop(self) -> list[int]:
        """SIGTERM, wait, SIGKILL; then kill by PID any kernel the gateway left running. Returns the leftovers."""
        if self.proc is None:
            return []
        self.note_kernels()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        leftovers = []
        time.sleep(0.5)
        for kpid in self.known_kernel_pids:
            try:
                p = psutil.Process(kpid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(kpid)
                    p.kill()
            except psutil.Error:
                pass
        if self.log:
            self.log.close()
        return leftovers

    # -- REST ------------------------------------------------------------------
    def create_kernel(self) -> str:
        r = self.http.post(self.base + "/api/kernels", json={"name": "python3"}, timeout=120)
        r.raise_for_status()
        return r.json()["id"]

    def delete_kernel(self, kid: str) -> None:
        r = self.http.delete(self.base + f"/api/kernels/{kid}", timeout=120)
        if r.status_code not in (200, 204):
            raise RuntimeError(f"{self.name}: DELETE {kid} -> {r.status_code} {r.text[:200]}")

    def restart_kernel(self, kid: str) -> None:
        r = self.http.post(self.base + f"/api/kernels/{kid}/restart", json={}, timeout=120)
        r.raise_for_status()

    def ws_url(self, kid: str, session: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/kernels/{kid}/channels?session_id={session}"


class Ganymede(Gateway):
    name = "Ganymede"

    def __init__(self, binary: str, prespawn: int = 0, label: str = "") -> None:
        if prespawn:
            # A separate instance with its own log and runtime directory (pool_start).
            self.name = f"Ganymede (pool {prespawn})"
        elif label:
            # A second build side by side (--binary-b): an A/B comparison of two commits.
            self.name = f"Ganymede ({label})"
        super().__init__()
        self.binary = binary
        self.prespawn = prespawn

    def env(self) -> dict[str, str]:
        env = super().env()
        # Ganymede refuses KERNEL_USERNAME=root by default (EG's unauthorized_users); the gateway's own user is
        # the kernels' user here, and the bench may run as root.
        if os.geteuid() == 0:
            env.setdefault("EG_UNAUTHORIZED_USERS", "")
        if self.prespawn:
            # As Kernel Gateway is configured: the pool holds kernels of the default kernelspec (python3 here).
            env["KG_PRESPAWN_COUNT"] = str(self.prespawn)
            env["KG_DEFAULT_KERNEL_NAME"] = "python3"
        return env

    def list_kernels(self) -> list[dict]:
        r = self.http.get(self.base + "/api/kernels", timeout=30)
        r.raise_for_status()
        return r.json()

    def command(self) -> list[str]:
        return [self.binary, "--ip", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                "--kernelspec-dir", os.path.join(kernelspec_root(), "kernels"),
                "--runtime-dir", os.path.join(RUN_DIR, "runtime", self.name)]


class EnterpriseGateway(Gateway):
    name = "EG 3.3"

    def command(self) -> list[str]:
        return [os.path.join(VENVS, "eg", "bin", "jupyter-enterprisegateway"), "--ip=127.0.0.1",
                f"--port={self.port}", "--port_retries=0", "--EnterpriseGatewayApp.list_kernels=True"]

    def create_kernel(self) -> str:
        # EG refuses KERNEL_USERNAME=root by default (unauthorized_users); the bench runs as root.
        r = self.http.post(self.base + "/api/kernels",
                           json={"name": "python3", "env": {"KERNEL_USERNAME": "bench"}}, timeout=120)
        r.raise_for_status()
        return r.json()["id"]


class KernelGateway(Gateway):
    name = "KG 3.0"

    def command(self) -> list[str]:
        return [os.path.join(VENVS, "kg", "bin", "jupyter-kernelgateway"), "--ip=127.0.0.1",
                f"--port={self.port}", "--port_retries=0", "--KernelGatewayApp.list_kernels=True"]


class Jupyverse(Gateway):
    """jupyverse with fps-kernels and fps-noauth: kernels are created through POST /api/sessions only."""

    name = "jupyverse 0.14"
    health_path = "/api/status"

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, str] = {}

    def command(self) -> list[str]:
        # Only the kernels API: the lab front end needs jupyterlab (not installed) and the rest is unused.
        return [os.path.join(VENVS, "jv", "bin", "jupyverse"), "--host", "127.0.0.1", "--port", str(self.port),
                "--disable", "lab", "--disable", "page_config", "--disable", "terminals", "--disable", "nbconvert",
                "--timeout", "120"]

    def create_kernel(self) -> str:
        name = uuid.uuid4().hex
        r = self.http.post(self.base + "/api/sessions", json={
            "kernel": {"name": "python3"}, "name": name, "path": f"{name}.ipynb", "type": "notebook"}, timeout=120)
        r.raise_for_status()
        body = r.json()
        kid = body["kernel"]["id"]
        self.sessions[kid] = body["id"]
        return kid

    def delete_kernel(self, kid: str) -> None:
        sid = self.sessions.pop(kid, None)
        url = f"/api/sessions/{sid}" if sid else f"/api/kernels/{kid}"
        r = self.http.delete(self.base + url, timeout=120)
        if r.status_code not in (200, 204):
            raise RuntimeError(f"{self.name}: DELETE {url} -> {r.status_code} {r.text[:200]}")


class DirectKernel:
    """A kernel started and driven by jupyter_client with no gateway: raw shell and iopub sockets."""

    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.ctx = zmq.Context.instance()

    def start(self) -> None:
        self.km.start_kernel()
        info = self.km.get_connection_info(session=True)
        self.session: Session = self.km.session
        self.shell = self.km.connect_shell()
        self.iopub = self.km.connect_iopub()
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)
        # Nudge like jupyter_server: kernel_info until a reply and an iopub message arrive.
        deadline = time.time() + 60
        while time.time() < deadline:
            msg = self.session.send(self.shell, "kernel_info_request", {})
            got_reply, got_iopub = False, False
            t_end = time.time() + 1
            while time.time() < t_end and not (got_reply and got_iopub):
                for sock, _ in self.poller.poll(100):
                    m = self.recv(sock)
                    if sock is self.shell and m["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                        got_reply = True
                    if sock is self.iopub:
                        got_iopub = True
            if got_reply and got_iopub:
                self.drain()
                return
        raise RuntimeError("direct kernel did not answer kernel_info")

    def recv(self, sock):
        idents, msg = self.session.feed_identities(sock.recv_multipart(copy=False), copy=False)
        return self.session.deserialize(msg, content=True, copy=False)

    def drain(self, quiet: float = 0.2) -> None:
        while self.poller.poll(int(quiet * 1000)):
            for sock, _ in self.poller.poll(0):
                sock.recv_multipart()

    def stop(self) -> None:
        self.shell.close(0)
        self.iopub.close(0)
        self.km.shutdown_kernel(now=False)

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid
