"""Ganymede's Python kernel launcher for remote kernels (SSH hosts, Slurm jobs).

Speaks Enterprise Gateway's launcher protocol, version 1 (EG's
etc/kernel-launchers/python/scripts/launch_ipykernel.py), so it works with EG as well:

1. pick five kernel ports and a comm port (inside --port-range when one is given) and write a
   connection file with a fresh key;
2. send base64(JSON{"version": 1, "key": b64(RSA-PKCS1v1.5(aes_key)), "conn_info":
   b64(AES-128-ECB-PKCS7(connection info + pid, pgid, comm_port, kernel_id))}) to
   --response-address, one connection closed after the write;
3. serve the comm port: {"signum": n} signals this process (0 only checks it is alive),
   {"shutdown": 1} stops listening;
4. run the IPython kernel in this process, so the pid reported is the kernel's.

With --launch-key-stdin (kernelspecs that declare "launcher_auth": "aes-gcm"), Ganymede's
authenticated mode replaces steps 2 and 3: the first line of stdin is a per-kernel 256-bit key
(base64) that the gateway gave only to this launcher; the connection info goes out as
base64(JSON{"version": 2, "kernel_id": id, "nonce": b64(12 bytes), "conn_info":
b64(AES-256-GCM(json) || tag)}) with additional data "ganymede-launcher-v2:<id>", and the comm
port obeys only {"version": 2, "nonce", "sealed"} commands sealed with the same key (additional
data "ganymede-comm-v2:<id>") whose sealed "ts" (ms since 1970) is newer than the last one and
within 5 minutes of this host's clock; anything else is ignored and logged. The key is never put
in the environment or argv, so the kernel's code and `ps` do not see it.

Unlike EG's launcher, the comm listener is a thread rather than a child process, so nothing of
the launcher outlives the kernel. Needs ipykernel and pycryptodomex.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import logging
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid

from Cryptodome.Cipher import AES, PKCS1_v1_5
from Cryptodome.PublicKey import RSA
from Cryptodome.Random import get_random_bytes
from Cryptodome.Util.Padding import pad

LAUNCHER_VERSION = 1
MAX_PORT_RETRIES = int(os.getenv("EG_MAX_PORT_RANGE_RETRIES", "5"))

logging.basicConfig(format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s", level=logging.INFO)
log = logging.getLogger("ganymede-launcher")


def parse_port_range(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 0
    try:
        lo, hi = (int(p) for p in text.split(".."))
    except ValueError:
        raise SystemExit(f"invalid --port-range {text!r}: expected <lo>..<hi>")
    if (lo, hi) != (0, 0) and not (1024 <= lo < hi <= 65535):
        raise SystemExit(f"invalid --port-range {text!r}")
    return lo, hi


def bind_socket(lo: int, hi: int, ip: str) -> socket.socket:
    for _ in range(MAX_PORT_RETRIES + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((ip, 0 if hi == 0 else random.randint(lo, hi)))
            return s
        except OSError:
            s.close()
    raise SystemExit(f"no free port in {lo}..{hi} after {MAX_PORT_RETRIES} retries")


def encrypt(plaintext: bytes, public_key_b64: str) -> bytes:
    aes_key = get_random_bytes(16)
    conn_info = AES.new(aes_key, AES.MODE_ECB).encrypt(pad(plaintext, 16))
    rsa_key = RSA.importKey(base64.b64decode(public_key_b64.encode()))
    wrapped = PKCS1_v1_5.new(rsa_key).encrypt(aes_key)
    envelope = {
        "version": LAUNCHER_VERSION,
        "key": base64.b64encode(wrapped).decode(),
        "conn_info": base64.b64encode(conn_info).decode(),
    }
    return base64.b64encode(json.dumps(envelope).encode())


def seal_v2(plaintext: bytes, key: bytes, kernel_id: str) -> bytes:
    nonce = get_random_bytes(12)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(f"ganymede-launcher-v2:{kernel_id}".encode())
    sealed, tag = cipher.encrypt_and_digest(plaintext)
    envelope = {
        "version": 2, "kernel_id": kernel_id,
        "nonce": base64.b64encode(nonce).decode(), "conn_info": base64.b64encode(sealed + tag).decode(),
    }
    return base64.b64encode(json.dumps(envelope).encode())


class CommAuth:
    """Opens the gateway's sealed comm-port commands and refuses replays."""

    MAX_SKEW_MS = 5 * 60 * 1000

    def __init__(self, key: bytes, kernel_id: str):
        self.key = key
        self.context = f"ganymede-comm-v2:{kernel_id}".encode()
        self.last_ts = 0

    def open(self, request: object) -> dict | None:
        if not isinstance(request, dict) or request.get("version") != 2:
            log.warning("comm port: unauthenticated request refused")
            return None
        try:
            nonce = base64.b64decode(request["nonce"], validate=True)
            sealed = base64.b64decode(request["sealed"], validate=True)
            cipher = AES.new(self.key, AES.MODE_GCM, nonce=nonce)
            cipher.update(self.context)
            body = json.loads(cipher.decrypt_and_verify(sealed[:-16], sealed[-16:]))
            ts = int(body["ts"])
        except (KeyError, TypeError, ValueError) as e:
            log.warning("comm port: request failed authentication: %s", e)
            return None
        now = int(time.time() * 1000)
        if ts <= self.last_ts or abs(now - ts) > self.MAX_SKEW_MS:
            log.warning("comm port: replayed or stale request refused")
            return None
        self.last_ts = ts
        return body


def send_connection_info(address: str, payload: bytes) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"invalid --response-address {address!r}: expected <ip>:<port>")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(payload)


def serve_comm_port(sock: socket.socket, auth: CommAuth | None = None) -> None:
    """Answers the gateway's comm-port requests until {"shutdown": 1}."""
    sock.listen(4)
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if len(data) > 65536:
                        break
                request = json.loads(data.decode("utf-8") or "null")
            except (OSError, ValueError, UnicodeDecodeError) as e:
                log.warning("ignored comm-port request: %s", e)
                continue
        if auth is not None:
            request = auth.open(request)
        if not isinstance(request, dict):
            continue
        if request.get("signum") is not None:
            try:
                signum = int(request["signum"])
                os.kill(os.getpid(), signum)
                if signum != 0:
                    log.info("comm port: signal %d", signum)
            except (ValueError, OSError) as e:
                log.warning("comm port: cannot signal: %s", e)
        if request.get("shutdown"):
            log.info("comm port: shutdown")
            sock.close()
            return


def read_launch_key() -> bytes:
    """The first line of stdin; stdin is then /dev/null, so the kernel cannot read it again."""
    line = sys.stdin.buffer.readline(1024).strip()
    try:
        key = base64.b64decode(line, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SystemExit("--launch-key-stdin: no 32-byte base64 launch key on stdin "
                         "(does the kernelspec declare \"launcher_auth\": \"aes-gcm\"?)")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return key


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel-id", "--RemoteProcessProxy.kernel-id", dest="kernel_id")
    p.add_argument("--response-address", "--RemoteProcessProxy.response-address", dest="response_address")
    p.add_argument("--public-key", "--RemoteProcessProxy.public-key", dest="public_key")
    p.add_argument("--port-range", "--RemoteProcessProxy.port-range", dest="port_range")
    p.add_argument("--kernel-class-name", dest="kernel_class_name", default="ipykernel.ipkernel.IPythonKernel")
    p.add_argument("--ip", default="0.0.0.0", help="address the kernel binds (default all interfaces)")
    # Accepted for EG kernelspecs; Spark/Dask initialisation is not done by this launcher.
    p.add_argument("--spark-context-initialization-mode", "--RemoteProcessProxy.spark-context-initialization-mode")
    p.add_argument("--cluster-type", "--RemoteProcessProxy.cluster-type")
    p.add_argument("--launch-key-stdin", action="store_true",
                   help="read Ganymede's per-kernel launch key from stdin and use the authenticated mode")
    p.add_argument("connection_file", nargs="?")
    args = p.parse_args(argv)
    if not args.kernel_id or not args.response_address or not args.public_key:
        raise SystemExit("--kernel-id, --response-address and --public-key are required")
    launch_key = read_launch_key() if args.launch_key_stdin else None

    lo, hi = parse_port_range(args.port_range)
    kernel_sockets = [bind_socket(lo, hi, args.ip) for _ in range(5)]
    ports = [s.getsockname()[1] for s in kernel_sockets]
    comm = bind_socket(lo, hi, args.ip)

    info = {
        "shell_port": ports[0], "iopub_port": ports[1], "stdin_port": ports[2], "hb_port": ports[3],
        "control_port": ports[4], "ip": args.ip, "key": str(uuid.uuid4()), "transport": "tcp",
        "signature_scheme": "hmac-sha256", "kernel_name": "",
    }
    fd, conn_file = tempfile.mkstemp(prefix=f"kernel-{args.kernel_id}-", suffix=".json")
    with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600
        json.dump(info, f)

    report = dict(info, pid=os.getpid(), pgid=os.getpgid(0), comm_port=comm.getsockname()[1], kernel_id=args.kernel_id)
    for s in kernel_sockets:
        s.close()  # the kernel binds them next
    auth = CommAuth(launch_key, args.kernel_id) if launch_key else None
    threading.Thread(target=serve_comm_port, args=(comm, auth), daemon=True, name="comm-port").start()
    plain = json.dumps(report).encode()
    payload = seal_v2(plain, launch_key, args.kernel_id) if launch_key else encrypt(plain, args.public_key)
    send_connection_info(args.response_address, payload)
    log.info("kernel %s: connection info sent to %s", args.kernel_id, args.response_address)

    def remove_connection_file(*_):
        try:
            os.unlink(conn_file)
        except OSError:
            pass

    def on_sigterm(signum, _frame):
        # The key must not outlive the kernel on the remote host.
        remove_connection_file()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    atexit.register(remove_connection_file)
    # A kernel that ends on its own (not by a signal) says so in the launcher's log: ipykernel sends
    # its own stderr to iopub, so nothing else would be left to tell a clean exit from a kill.
    atexit.register(lambda: log.info("kernel %s: exiting", args.kernel_id))
    signal.signal(signal.SIGTERM, on_sigterm)

    from ipykernel.kernelapp import IPKernelApp

    # The default SIGINT handler raises KeyboardInterrupt in the kernel, which is what an
    # interrupt through the comm port must do.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    IPKernelApp.launch_instance(argv=["-f", conn_file, f"--ip={args.ip}"], kernel_class=args.kernel_class_name)


if __name__ == "__main__":
    main(sys.argv[1:])
