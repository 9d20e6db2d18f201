"""Remote kernel start latency: Ganymede vs Enterprise Gateway 3.3.0, same host, same launcher.

Both gateways launch the same kernelspec argv (Ganymede's kernelspecs/remote/python_distributed
launcher; EG's copy lacks `--launch-key-stdin`, Ganymede's launch-key handshake, which EG does not
speak) over SSH to the test sshd on 127.0.0.2 (scripts/remote-test-env.sh), EG through its
DistributedProcessProxy (paramiko), Ganymede through OpenSSH with a control master. One sample =
POST /api/kernels, then a kernel_info_request over the channels WebSocket until its reply
(EG's POST returns before the kernel answers; Ganymede's after): "POST -> kernel ready".
Then DELETE. Gateways alternate sample by sample so machine noise hits both alike.

    python Benchmarks/remote_start/bench.py [--rounds 15] [--binary PATH] [--eg-python PATH] [--out results.json]

Needs: root (the test sshd), a Python with ipykernel and pycryptodomex to run it (it is also the kernel's
Python: .venv from scripts/setup.sh, or Benchmarks/.venv-bench/drv with pycryptodomex added, as
`REMOTE=1 Benchmarks/run.sh` does), the ganymede binary (--binary, GANYMEDE_BIN, or .build/debug), and EG
3.3.0: --eg-python, else Benchmarks/.venv-bench/eg (run.sh's EG venv), else .venv-eg (created on first run:
pip install jupyter_enterprise_gateway==3.3.0 pycryptodomex ipykernel).

Writes the samples and medians to --out (default Benchmarks/remote_start/results.json), which
Benchmarks/report.py reads for the "Remote start <= 1/3 of EG's" target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import websocket

REPO = Path(__file__).resolve().parents[2]
EG_VENV = REPO / ".venv-eg"
BENCH_EG_PYTHON = REPO / "Benchmarks" / ".venv-bench" / "eg" / "bin" / "python"
SPEC = REPO / "kernelspecs" / "remote" / "python_distributed"


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_eg_venv():
    py = EG_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EG_VENV)], check=True)
    if subprocess.run([str(py), "-c", "import enterprise_gateway, Cryptodome, ipykernel"], capture_output=True).returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "jupyter_enterprise_gateway==3.3.0", "pycryptodomex",
                        "ipykernel"], check=True)
    return py


def wait_http(url, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up")


def kernel_ready(port: int, kid: str, timeout=60):
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels", timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "bench",
                                       "session": uuid.uuid4().hex, "date": "", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", "buffers": []}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = json.loads(ws.recv())
            if m.get("parent_header", {}).get("msg_id") == msg_id and m["header"]["msg_type"] == "kernel_info_reply":
                return
        raise TimeoutError("no kernel_info_reply")
    finally:
        ws.close()


def sample(port: int, name: str) -> float:
    t0 = time.perf_counter()
    r = requests.post(f"http://127.0.0.1:{port}/api/kernels", json={"name": name, "env": {
        "KERNEL_USERNAME": "bench", "PATH": os.environ["PATH"]}}, timeout=120)
    r.raise_for_status()
    kid = r.json()["id"]
    kernel_ready(port, kid)
    elapsed = time.perf_counter() - t0
    requests.delete(f"http://127.0.0.1:{port}/api/kernels/{kid}", timeout=60)
    return elapsed


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--binary", default=os.environ.get("GANYMEDE_BIN", str(REPO / ".build" / "debug" / "ganymede")))
    ap.add_argument("--eg-python", default=None, help="a Python with jupyter_enterprise_gateway 3.3.0")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results.json"))
    ap.add_argument("--label", default="", help="free text stored with the results (e.g. which build this is)")
    args = ap.parse_args()
    ganymede = os.path.abspath(args.binary)
    if args.eg_python:
        eg_python = Path(args.eg_python)
    elif BENCH_EG_PYTHON.exists():
        eg_python = BENCH_EG_PYTHON
    else:
        eg_python = ensure_eg_venv()
    try:
        import Cryptodome  # noqa: F401  (the launcher encrypts the connection info with it)
        import ipykernel  # noqa: F401
    except ImportError as e:
        sys.exit(f"{sys.executable} is also the remote kernel's Python and needs ipykernel and pycryptodomex: {e}")
    if not os.access(ganymede, os.X_OK):
        sys.exit(f"no Ganymede binary at {ganymede}")
    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="remote-bench-"))
    envdir = work / "env"
    procs = []
    try:
        subprocess.run(["bash", str(REPO / "scripts" / "remote-test-env.sh"), "start", "ssh"], check=True,
                       env=dict(os.environ, GANYMEDE_REMOTE_ENV_DIR=str(envdir)), capture_output=True)
        v = dict(line.split("=", 1) for line in (envdir / "env").read_text().splitlines())
        host, sshport = v["REMOTE_SSH_HOST"], v["REMOTE_SSH_PORT"]
        # One kernelspec dir for both, same argv.
        specs = work / "specs"
        shutil.copytree(SPEC, specs / "python_distributed")
        kj = json.loads((specs / "python_distributed" / "kernel.json").read_text())
        kj["argv"] = [a.replace("{resource_dir}", str(specs / "python_distributed")) for a in kj["argv"]]
        kj["argv"][0] = sys.executable  # this Python (checked above: ipykernel and pycryptodomex)
        (specs / "python_distributed" / "kernel.json").write_text(json.dumps(kj))
        # EG's copy: the same launcher and argv, minus Ganymede's launch-key handshake (`--launch-key-stdin`,
        # metadata launcher_auth "aes-gcm"), which EG does not speak; EG uses its own RSA public-key exchange.
        eg_specs = work / "eg-specs"
        shutil.copytree(specs, eg_specs)
        ekj = json.loads(json.dumps(kj))
        ekj["argv"] = [a.replace(str(specs), str(eg_specs)) for a in ekj["argv"] if a != "--launch-key-stdin"]
        ekj.get("metadata", {}).get("process_proxy", {}).get("config", {}).pop("launcher_auth", None)
        (eg_specs / "python_distributed" / "kernel.json").write_text(json.dumps(ekj))
        logs = work / "logs"
        logs.mkdir()
        base = {k: val for k, val in os.environ.items() if not k.startswith(("EG_", "KG_", "GANYMEDE_"))}
        # Ganymede
        gport = free_port()
        genv = dict(base, EG_RESPONSE_IP="127.0.0.1", EG_RESPONSE_PORT=str(free_port()), EG_REMOTE_HOSTS=host,
                    EG_REMOTE_USER="root", EG_SSH_PORT=sshport, EG_KERNEL_LOG_DIR=str(logs),
                    JUPYTER_RUNTIME_DIR=str(work / "g-runtime"),
                    GANYMEDE_SSH_OPTIONS=f"-i {v['REMOTE_SSH_KEY']} -o UserKnownHostsFile={v['REMOTE_SSH_KNOWN_HOSTS']} "
                                         "-o StrictHostKeyChecking=yes -o LogLevel=ERROR")
        g = subprocess.Popen([ganymede, "--port", str(gport), "--kernelspec-dir", str(specs), "--log-level", "warning"],
                             env=genv, stdout=open(work / "ganymede.log", "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(g)
        # EG: paramiko reads ~/.ssh, so it gets a private HOME with the test key and host key.
        home = work / "eg-home"
        (home / ".ssh").mkdir(parents=True)
        shutil.copy(v["REMOTE_SSH_KEY"], home / ".ssh" / "id_ed25519")
        shutil.copy(v["REMOTE_SSH_KNOWN_HOSTS"], home / ".ssh" / "known_hosts")
        eport = free_port()
        eenv = dict(base, HOME=str(home), EG_RESPONSE_IP="127.0.0.1", EG_RESPONSE_PORT=str(free_port()),
                    EG_REMOTE_HOSTS=host, EG_REMOTE_USER="root", EG_SSH_PORT=sshport, EG_KERNEL_LOG_DIR=str(logs),
                    JUPYTER_PATH=str(work), JUPYTER_RUNTIME_DIR=str(work / "e-runtime"))
        (work / "kernels").symlink_to(eg_specs)
        e = subprocess.Popen([str(eg_python), "-m", "enterprise_gateway", f"--port={eport}", "--ip=127.0.0.1",
                              ],
                             env=eenv, stdout=open(work / "eg.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(e)
        wait_http(f"http://127.0.0.1:{gport}/api", g)
        wait_http(f"http://127.0.0.1:{eport}/api", e)
        # Warm-up: the first remote start pays one-time costs (RSA key pair, SSH master, imports).
        sample(gport, "python_distributed")
        sample(eport, "python_distributed")
        gs, es = [], []
        for _ in range(args.rounds):
            gs.append(sample(gport, "python_distributed"))
            es.append(sample(eport, "python_distributed"))
        gm, em = statistics.median(gs), statistics.median(es)
        print(f"rounds: {args.rounds} (interleaved, after one warm-up start each)")
        print(f"ganymede  POST->ready  median {gm * 1000:7.1f} ms  mean {statistics.mean(gs) * 1000:7.1f} ms  "
              f"min {min(gs) * 1000:7.1f}  max {max(gs) * 1000:7.1f}")
        print(f"EG 3.3.0  POST->ready  median {em * 1000:7.1f} ms  mean {statistics.mean(es) * 1000:7.1f} ms  "
              f"min {min(es) * 1000:7.1f}  max {max(es) * 1000:7.1f}")
        print(f"ratio EG/ganymede (median): {em / gm:.2f}x")
        result = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": git("rev-parse", "--short", "HEAD"),
            "sources_dirty": bool(git("status", "--porcelain", "--", "Sources")),
            "binary": ganymede, "build": os.path.basename(os.path.dirname(ganymede)), "label": args.label,
            "rounds": args.rounds,
            "load_at_start": load_at_start, "load_at_end": os.getloadavg(), "cores": os.cpu_count(),
            "measure": "POST /api/kernels -> kernel_info_reply over the channels WebSocket, remote kernel over SSH "
                       "(127.0.0.2), interleaved, after one warm-up start each",
            "ganymede_s": gs, "eg_s": es,
            "ganymede_median_ms": gm * 1000, "eg_median_ms": em * 1000, "ganymede_over_eg": gm / em,
        }
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        subprocess.run(["bash", str(REPO / "scripts" / "remote-test-env.sh"), "stop"],
                       env=dict(os.environ, GANYMEDE_REMOTE_ENV_DIR=str(envdir)), capture_output=True)
        print(f"logs in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
