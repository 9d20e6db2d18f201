#!/usr/bin/env python3
"""Load and chaos run for Ganymede (issue #11): many WebSockets over many kernels for a long
time while kernel processes are SIGKILLed and WebSockets dropped at random.

    .venv/bin/python scripts/chaos.py                       # the issue's run: 1,000 WebSockets,
                                                            # 20 kernels, 10 minutes
    .venv/bin/python scripts/chaos.py --websockets 60 --kernels 3 --duration 60   # a quick one

Only the standard library is used (the WebSocket client is a small asyncio one written here, so
that a client-side close can be done exactly as RFC 6455 says: send a close frame and keep
reading until the server's close frame). The kernels need ipykernel: `python3` on the kernel's
PATH is taken from --kernel-bindir (default: the repo's .venv/bin, as scripts/setup.sh makes it).

What it does
------------
* Starts its own gateway (--binary, else $GANYMEDE_BIN, else .build/debug/ganymede) on a free
  127.0.0.1 port with a temporary runtime directory, and stops it by PID at the end or on
  Ctrl-C (SIGTERM, then SIGKILL); then checks that no kernel process it ever saw survived.
* Starts --kernels python3 kernels and opens --websockets WebSockets spread evenly over them,
  each with its own `session_id` (legacy JSON framing). Client 0 of each kernel is its driver.
* Each driver runs, every ~--exec-interval seconds, a cell that writes --lines numbered lines
  `K<k>E<n> <i>` (one `sys.stdout.write` per line, --line-sleep between lines) and waits for
  its `execute_reply`. Every client of the kernel sees the iopub broadcast.
* Every ~--drop-interval seconds a random connected client (drivers included) drops its
  WebSocket with a clean close (close frame, then it reads everything the gateway still sends
  until the gateway's close frame), waits --reconnect-min..--reconnect-max seconds and
  reconnects with the SAME session_id.
* Every ~--kill-interval seconds a random kernel (one not killed in the last --kill-spacing
  seconds, so the restart limit of 5 in a row is never reached) gets SIGKILL; its PID comes
  from `GET /status.json` ("local pid N") and is checked to be a descendant of the gateway
  whose environment names that kernel's id.
* Samples the gateway's RSS (/proc/PID/status VmRSS) every --rss-interval seconds, and the
  latency of `GET /api/health` every 0.5 s from a separate process (so the client load of this
  process does not distort it).
* After --duration seconds: kills and drops stop, every client reconnects, the drivers finish
  their cell, every client waits for the last cell's output, the sockets are closed, the
  gateway is stopped and the checks below are made.

What the gateway promises, and what is checked (README, "WebSocket drops" / "kernel process
dies"): while all WebSockets of a session are closed, the kernel's iopub output and the replies
for that session are kept and replayed, in order and exactly once, to the next WebSocket with
the same session_id (bounds: 10,000 messages, 16 MiB, 600 s per session, 32 sessions per
kernel; this run stays far inside them: a client is away for at most --reconnect-max seconds).
A client closing cleanly receives everything the gateway wrote before the gateway saw its close
frame; everything after that must be replayed. Hence, for every client:

  1. no lost message: every iopub message whose parent is one of its kernel's driver cells and
     that any client of that kernel received, this client received too ("lost_messages");
     every cell that completed (the driver got its execute_reply) delivered to this client
     `status: busy`, `execute_input`, all --lines lines and `status: idle` ("lost_lines",
     "missing_status");
  2. exactly once and in order: no iopub message twice ("duplicated"), lines of a cell strictly
     0,1,2,... ("line_gaps", "line_dups"), and the messages in the same order as every other
     client of the kernel ("out_of_order");
  3. every driver request gets exactly one execute_reply, unless its kernel was killed while
     the request was pending ("lost_replies", "duplicate_replies");
  4. no replay overflow note ("[ganymede] N kernel message(s) were dropped") ever arrives.
Cells cut short by a kill are checked by 1 and 2 only (every client sees the same prefix).

Kills: every kill must be reported: each client that had an open WebSocket from the kill until
the gateway's broadcast receives iopub `status: restarting` for it exactly once; the gateway's
`ganymede_kernel_events_total{event="died"}` counts every kill; the kernel comes back (a new
PID, and a cell run after the kill completes). Clients that were away at the kill are counted
separately ("restarting_replayed_to_away" / "restarting_missed_by_away"): the gateway's own
status messages are broadcast to open WebSockets only (`KernelConnection.broadcast`), the
README promises replay of the kernel's output, so this is reported, not judged, unless
--strict-kill-replay is given.

Also judged: the gateway process is alive at the end of the load and answers /api/health; its
RSS grew less than --rss-growth-limit % from the end of warm-up (--warmup, default min(60 s,
half the duration)) to the end of the load (medians of the samples in the 10 s after warm-up
and the last 10 s of load); it exits on SIGTERM and no kernel outlives it; every client
reconnected after each drop.

A denser message stream makes the race between a client's close and the gateway's writes far
more likely (one stream message per line, 20 drops a second):

    scripts/chaos.py --websockets 20 --kernels 2 --duration 60 --lines 200 --line-sleep 0.005 \
        --flush-lines --exec-interval 0.5 --drop-interval 0.05 --kill-interval 0 \
        --gateway-arg=--log-level --gateway-arg=debug

(with debug logs the gateway's "replayed offline messages" / "websocket connected" / "websocket
closed" lines give each session's side; the JSON's t0_unix maps the run's times onto them).

Output: a human summary on stdout and the full result as JSON (--json-out, default
chaos-result.json in the run's work directory, which also keeps gateway.log). The exit code is
0 when every criterion passed, 1 when one failed, 2 for a setup error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONFIG_ENV_PREFIXES = ("EG_", "KG_", "GANYMEDE_", "JUPYTER_GATEWAY_")


# --------------------------------------------------------------------------- small helpers

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int):
    """(ppid, state) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[1]), rest[0]


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def descendants_of(pid: int) -> set[int]:
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                parent_of[int(entry)] = st[0]
    kids: dict[int, list[int]] = {}
    for p, pp in parent_of.items():
        kids.setdefault(pp, []).append(p)
    out: set[int] = set()
    frontier = [pid]
    while frontier:
        for c in kids.get(frontier.pop(), []):
            if c not in out:
                out.add(c)
                frontier.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def http_call(port: int, method: str, path: str, body: dict | None = None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- health probe (own process)

def health_probe_main(port: int, out: str, interval: float, max_seconds: float) -> None:
    """Runs in a child process: GET /api/health every `interval` s, one line per sample."""
    parent = os.getppid()
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end = time.monotonic() + max_seconds
    with open(out, "w", buffering=1) as f:
        while not stop and time.monotonic() < end and os.getppid() == parent:
            t0 = time.monotonic()
            status = 0
            try:
                status, _ = http_call(port, "GET", "/api/health", timeout=10)
            except Exception:
                status = -1
            dt = time.monotonic() - t0
            f.write(f"{time.time():.3f} {dt * 1000:.3f} {status}\n")
            time.sleep(max(0.0, interval - dt))


# --------------------------------------------------------------------------- WebSocket client

class HandshakeError(Exception):
    pass


class WSConn:
    """A minimal RFC 6455 client over asyncio streams (text/binary/ping/pong/close)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.close_sent = False

    @classmethod
    async def connect(cls, port: int, path: str, timeout: float) -> "WSConn":
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=1 << 24), timeout)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            if not lines[0].startswith("HTTP/1.1 101"):
                body = b""
                try:
                    body = await asyncio.wait_for(reader.read(2000), 2)
                except Exception:
                    pass
                raise HandshakeError(f"{lines[0]} {body[:300]!r}")
            hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            if hdrs.get("sec-websocket-accept") != accept:
                raise HandshakeError(f"bad Sec-WebSocket-Accept {hdrs.get('sec-websocket-accept')!r}")
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        if n:
            k = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        self.writer.write(head + mask + payload)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_close(self, code: int = 1000) -> None:
        if not self.close_sent:
            self.close_sent = True
            self.send_frame(0x8, struct.pack(">H", code))

    async def _frame(self):
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
        mask = await self.reader.readexactly(4) if b1 & 0x80 else None
        data = await self.reader.readexactly(n) if n else b""
        if mask:
            k = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        return bool(b0 & 0x80), b0 & 0x0F, data

    async def recv(self):
        """(opcode, data) of the next text/binary message or close frame; answers pings.
        Raises asyncio.IncompleteReadError / ConnectionError at EOF."""
        parts: list[bytes] = []
        first_op = None
        while True:
            fin, op, data = await self._frame()
            if op == 0x9:  # ping
                if not self.close_sent:
                    self.send_frame(0xA, data)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                return 0x8, data
            if op == 0x0:
                parts.append(data)
            else:
                first_op, parts = op, [data]
            if fin:
                return first_op, b"".join(parts)

    def abort(self) -> None:
        try:
            self.writer.transport.abort()
        except Exception:
            pass

    def close_transport(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- run state

ST_BUSY, ST_INPUT, ST_IDLE = 1, 2, 4


class Exec:
    __slots__ = ("n", "msg_id", "tag", "sent_t", "replies", "reply_status", "reply_t", "kill_pending", "unsent")

    def __init__(self, n, msg_id, tag):
        self.n, self.msg_id, self.tag = n, msg_id, tag
        self.sent_t = None
        self.replies = 0
        self.reply_status = None
        self.reply_t = None
        self.kill_pending = False  # its kernel was killed while the request was pending
        self.unsent = False


class Kernel:
    def __init__(self, index: int, kid: str):
        self.index = index
        self.id = kid
        self.clients: list[Client] = []
        self.execs: list[Exec] = []
        self.by_msg: dict[str, Exec] = {}
        self.ids: dict[str, int] = {}  # iopub msg_id -> small int, shared by the clients
        self.first_seen: list[tuple[float, int, str]] = []  # per id: (time, exec n, msg_type)
        self.kills: list[dict] = []
        self.last_kill = -1e9
        self.restarting = False
        self.pids_seen: set[int] = set()
        self.reply_waiter: asyncio.Future | None = None
        self.kill_event = asyncio.Event()


class Client:
    def __init__(self, index: int, kernel: Kernel, driver: bool):
        self.index = index
        self.kernel = kernel
        self.driver = driver
        self.session = uuid.uuid4().hex
        self.conn: WSConn | None = None
        self.open = False  # a WebSocket is open and not closing
        self.closing = False
        self.drop_now = asyncio.Event()
        self.connected_once = asyncio.Event()
        self.seq = array("i")
        self.lines: dict[int, int] = {}  # exec n -> next expected line
        self.partial: dict[int, str] = {}
        self.flags: dict[int, int] = {}
        self.line_gaps = 0
        self.line_dups = 0
        self.bad_lines = 0
        self.restarting: list[tuple[float, str, str]] = []  # (t, msg_id, reason)
        self.startings: list[float] = []
        self.dead: list[str] = []
        self.overflow_notes = 0
        self.other_msgs = 0
        self.delivered = 0
        self.connects = 0
        self.drops = 0
        self.server_closes = 0
        self.eofs = 0
        self.close_timeouts = 0
        self.connect_failures = 0
        self.connect_errors: list[str] = []
        self.intervals: list[list[float]] = []  # [open_t, close_t]
        self.reconnect_times: list[float] = []  # drop start -> next open


class Run:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.kernels: list[Kernel] = []
        self.clients: list[Client] = []
        self.stop_chaos = asyncio.Event()
        self.stop_exec = asyncio.Event()
        self.stop_all = asyncio.Event()
        self.rss: list[tuple[float, int]] = []
        self.t0 = time.monotonic()
        self.t0_unix = time.time()
        self.gw_descendants: set[int] = set()
        self.kill_errors: list[str] = []
        self.notes: list[str] = []
        self.events: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, msg: str) -> None:
        line = f"[chaos {self.now():7.1f}s] {msg}"
        print(line, flush=True)
        self.events.append(line)


# --------------------------------------------------------------------------- gateway

def start_gateway(run: Run, workdir: Path) -> None:
    a = run.args
    binary = a.binary
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise SystemExit(f"chaos: gateway binary {binary!r} not found or not executable (build it, or pass --binary)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_ENV_PREFIXES)}
    env["PATH"] = a.kernel_bindir + os.pathsep + env.get("PATH", "")
    runtime = workdir / "runtime"
    runtime.mkdir(exist_ok=True)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    if os.geteuid() == 0:
        env["EG_UNAUTHORIZED_USERS"] = ""  # EG's default refuses kernels running as root
    run.port = free_port()
    cmd = [binary, "--ip", "127.0.0.1", "--port", str(run.port), "--metrics-public", "true", *a.gateway_arg]
    log = open(workdir / "gateway.log", "ab")
    log.write(f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    run.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        if run.proc.poll() is not None:
            raise SystemExit(f"chaos: gateway exited at start with code {run.proc.returncode}; see {workdir / 'gateway.log'}")
        try:
            st, _ = http_call(run.port, "GET", "/api", timeout=2)
            if st == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"chaos: gateway did not answer within 60 s; see {workdir / 'gateway.log'}")
        time.sleep(0.1)


def stop_gateway(run: Run) -> dict:
    """SIGTERM, wait, SIGKILL; then check that no process it started outlives it."""
    res = {"sigterm_exit_code": None, "exited_on_sigterm": None, "orphans": []}
    if run.proc is None:
        return res
    try:
        run.gw_descendants |= descendants_of(run.proc.pid)
    except Exception:
        pass
    kids = set(run.gw_descendants)
    for k in run.kernels:
        kids |= k.pids_seen
    cmds = {p: cmdline(p) for p in kids}
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGTERM)
        try:
            run.proc.wait(timeout=30)
            res["exited_on_sigterm"] = True
        except subprocess.TimeoutExpired:
            res["exited_on_sigterm"] = False
            run.proc.kill()
            run.proc.wait(timeout=10)
    else:
        res["exited_on_sigterm"] = False
    res["sigterm_exit_code"] = run.proc.returncode
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in kids):
        time.sleep(0.1)
    for p in sorted(kids):
        if alive(p):
            res["orphans"].append(f"{p}: {cmds.get(p, '?')}")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    run.proc = None
    return res


async def rest(run: Run, method: str, path: str, body=None, timeout: float = 60):
    return await asyncio.to_thread(http_call, run.port, method, path, body, timeout)


async def status_json(run: Run) -> dict:
    st, body = await rest(run, "GET", "/status.json", timeout=30)
    if st != 200:
        raise RuntimeError(f"GET /status.json -> {st}")
    return json.loads(body)


async def metrics(run: Run) -> dict[str, float]:
    st, body = await rest(run, "GET", "/metrics", timeout=30)
    out: dict[str, float] = {}
    if st != 200:
        return out
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        try:
            name, value = line.rsplit(" ", 1)
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


def metric_sum(m: dict[str, float], prefix: str, contains: str = "") -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix) and contains in k)


# --------------------------------------------------------------------------- clients

def handle_message(run: Run, c: Client, data: bytes) -> None:
    m = json.loads(data)
    c.delivered += 1
    k = c.kernel
    ch = m.get("channel")
    hdr = m.get("header") or {}
    mt = hdr.get("msg_type")
    parent = (m.get("parent_header") or {}).get("msg_id")
    content = m.get("content") or {}
    if ch == "iopub":
        if mt == "status" and not parent:
            state = content.get("execution_state")
            if state == "restarting":
                c.restarting.append((run.now(), hdr.get("msg_id", ""), str(content.get("reason", ""))))
            elif state == "starting":
                c.startings.append(run.now())
            elif state == "dead":
                c.dead.append(str(content.get("reason", "")))
            return
        if mt == "stream" and "[ganymede]" in content.get("text", "") and "dropped" in content.get("text", ""):
            c.overflow_notes += 1
            return
        ex = k.by_msg.get(parent)
        if ex is None:
            c.other_msgs += 1
            return
        mid = hdr.get("msg_id", "")
        i = k.ids.get(mid)
        if i is None:
            i = len(k.ids)
            k.ids[mid] = i
            k.first_seen.append((run.now(), ex.n, mt))
        c.seq.append(i)
        n = ex.n
        if mt == "stream":
            if content.get("name") != "stdout":
                c.bad_lines += 1
                return
            text = c.partial.pop(n, "") + content.get("text", "")
            parts = text.split("\n")
            if parts[-1]:
                c.partial[n] = parts[-1]
            for line in parts[:-1]:
                tag, _, num = line.rpartition(" ")
                if tag != ex.tag or not num.isdigit():
                    c.bad_lines += 1
                    continue
                v = int(num)
                exp = c.lines.get(n, 0)
                if v == exp:
                    c.lines[n] = exp + 1
                elif v < exp:
                    c.line_dups += 1
                else:
                    c.line_gaps += v - exp
                    c.lines[n] = v + 1
        elif mt == "status":
            st = content.get("execution_state")
            if st == "busy":
                c.flags[n] = c.flags.get(n, 0) | ST_BUSY
            elif st == "idle":
                c.flags[n] = c.flags.get(n, 0) | ST_IDLE
        elif mt == "execute_input":
            c.flags[n] = c.flags.get(n, 0) | ST_INPUT
        return
    if ch == "shell" and mt == "execute_reply" and c.driver:
        ex = k.by_msg.get(parent)
        if ex is None:
            c.other_msgs += 1
            return
        ex.replies += 1
        if ex.reply_status is None:
            ex.reply_status = content.get("status")
            ex.reply_t = run.now()
        w = k.reply_waiter
        if w is not None and not w.done() and getattr(w, "exec_n", None) == ex.n:
            w.set_result(True)
        return
    c.other_msgs += 1


async def connect_client(run: Run, c: Client, first: bool) -> bool:
    """Opens c's WebSocket (retrying); False if the run stopped first."""
    path = f"/api/kernels/{c.kernel.id}/channels?session_id={c.session}"
    delay = 0.2
    while not run.stop_all.is_set():
        try:
            c.conn = await WSConn.connect(run.port, path, timeout=run.args.connect_timeout)
            c.connects += 1
            c.open = True
            c.closing = False
            c.intervals.append([run.now(), -1.0])
            return True
        except Exception as e:  # noqa: BLE001
            c.connect_failures += 1
            if len(c.connect_errors) < 5:
                c.connect_errors.append(f"{run.now():.1f}s {type(e).__name__}: {e}"[:300])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return False


async def client_task(run: Run, c: Client, sem: asyncio.Semaphore) -> None:
    first = True
    while not run.stop_all.is_set():
        if first:
            async with sem:
                ok = await connect_client(run, c, True)
        else:
            ok = await connect_client(run, c, False)
        if not ok:
            return
        if first:
            c.connected_once.set()
            first = False
        elif c.reconnect_times and c.reconnect_times[-1] < 0:
            c.reconnect_times[-1] = run.now() + c.reconnect_times[-1]
        conn = c.conn
        planned = False
        reader = asyncio.ensure_future(conn.recv())
        dropper = asyncio.ensure_future(c.drop_now.wait())
        close_deadline = None
        try:
            while True:
                wait_for = {reader} if planned else {reader, dropper}
                timeout = None if close_deadline is None else max(0.0, close_deadline - time.monotonic())
                done, _ = await asyncio.wait(wait_for, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # the gateway never answered our close frame
                    c.close_timeouts += 1
                    reader.cancel()
                    conn.abort()
                    break
                if dropper in done and not planned:
                    planned = True
                    c.drop_now.clear()
                    c.open = False
                    c.closing = True
                    c.intervals[-1][1] = run.now()
                    conn.send_close()
                    close_deadline = time.monotonic() + 15
                    if reader not in done:
                        continue
                if reader in done:
                    try:
                        op, data = reader.result()
                    except (asyncio.IncompleteReadError, ConnectionError, OSError):
                        if not planned:
                            c.eofs += 1
                        break
                    if op == 0x8:
                        if not planned:
                            c.server_closes += 1
                            conn.send_close()
                        break
                    if op == 0x1:
                        handle_message(run, c, data)
                    else:
                        c.other_msgs += 1
                    reader = asyncio.ensure_future(conn.recv())
        finally:
            if not dropper.done():
                dropper.cancel()
            if not reader.done():
                reader.cancel()
            if c.intervals[-1][1] < 0:
                c.intervals[-1][1] = run.now()
            c.open = False
            conn.close_transport()
            c.conn = None
        if run.stop_all.is_set():
            return
        if planned:
            c.drops += 1
            c.reconnect_times.append(-run.now())
            delay = run.rng.uniform(run.args.reconnect_min, run.args.reconnect_max)
            try:
                await asyncio.wait_for(run.stop_all.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
        else:
            c.reconnect_times.append(-run.now())
        c.closing = False


CELL = """import sys, time
for i in range({lines}):
    sys.stdout.write("{tag} %d\\n" % i)
    {flush}
    {sleep}
"""


async def driver_task(run: Run, k: Kernel) -> None:
    a = run.args
    c = k.clients[0]

    def recovered() -> bool:  # a cell sent after the kernel's last kill completed
        return not k.kills or any(e.reply_status == "ok" and e.sent_t is not None and e.sent_t > k.kills[-1]["t"]
                                  for e in k.execs)

    extra = 0
    while not run.stop_exec.is_set() or (not recovered() and extra < 3):
        if run.stop_exec.is_set():
            extra += 1
        while not c.open and not run.stop_all.is_set():
            await asyncio.sleep(0.05)
        if run.stop_all.is_set():
            return
        n = len(k.execs)
        msg_id = uuid.uuid4().hex
        ex = Exec(n, msg_id, f"K{k.index}E{n}")
        k.execs.append(ex)
        k.by_msg[msg_id] = ex
        code = CELL.format(lines=a.lines, tag=ex.tag, sleep=f"time.sleep({a.line_sleep})" if a.line_sleep > 0 else "pass",
                           flush="sys.stdout.flush()" if a.flush_lines else "pass")
        msg = {
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "chaos", "session": c.session,
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }
        fut = asyncio.get_running_loop().create_future()
        fut.exec_n = n  # type: ignore[attr-defined]
        k.reply_waiter = fut
        k.kill_event.clear()
        try:
            c.conn.send_text(json.dumps(msg))
            ex.sent_t = run.now()
        except Exception:  # noqa: BLE001
            ex.unsent = True
            continue
        killer = asyncio.ensure_future(k.kill_event.wait())
        done, _ = await asyncio.wait({fut, killer}, timeout=a.exec_timeout, return_when=asyncio.FIRST_COMPLETED)
        if killer in done and not fut.done():
            ex.kill_pending = True
            # The request died with the kernel (or is held and answered by the new one):
            # wait for the restart, then a little for a reply that may still come.
            while k.restarting and not run.stop_all.is_set():
                await asyncio.sleep(0.1)
            try:
                await asyncio.wait_for(asyncio.shield(fut), 3)
            except asyncio.TimeoutError:
                pass
        killer.cancel()
        k.reply_waiter = None
        if run.stop_exec.is_set():
            continue
        await asyncio.sleep(a.exec_interval * run.rng.uniform(0.5, 1.5))


async def dropper_task(run: Run) -> None:
    a = run.args
    if a.drop_interval <= 0:
        return
    while not run.stop_chaos.is_set():
        try:
            await asyncio.wait_for(run.stop_chaos.wait(), a.drop_interval * run.rng.uniform(0.5, 1.5))
            return
        except asyncio.TimeoutError:
            pass
        cands = [c for c in run.clients if c.open and not c.closing]
        if cands:
            run.rng.choice(cands).drop_now.set()


def find_kernel_pid(run: Run, k: Kernel, snapshot: dict) -> int | None:
    for entry in snapshot.get("kernels", []):
        if entry.get("id") == k.id:
            m = re.search(r"pid (\d+)", entry.get("process", ""))
            return int(m.group(1)) if m else None
    return None


def is_kernel_process(run: Run, pid: int, k: Kernel) -> bool:
    if run.proc is None or pid not in descendants_of(run.proc.pid):
        return False
    return environ_has(pid, f"KERNEL_ID={k.id}".encode()) or k.id in cmdline(pid)


async def killer_task(run: Run) -> None:
    a = run.args
    if a.kill_interval <= 0:
        return
    while not run.stop_chaos.is_set():
        try:
            await asyncio.wait_for(run.stop_chaos.wait(), a.kill_interval * run.rng.uniform(0.5, 1.5))
            return
        except asyncio.TimeoutError:
            pass
        now = run.now()
        cands = [k for k in run.kernels if not k.restarting and now - k.last_kill >= a.kill_spacing]
        if not cands:
            continue
        k = run.rng.choice(cands)
        try:
            snap = await status_json(run)
        except Exception as e:  # noqa: BLE001
            run.kill_errors.append(f"{now:.1f}s status.json: {e}")
            continue
        pid = find_kernel_pid(run, k, snap)
        if pid is None or not await asyncio.to_thread(is_kernel_process, run, pid, k):
            run.kill_errors.append(f"{now:.1f}s kernel {k.id}: no verified pid ({pid})")
            continue
        k.pids_seen.add(pid)
        kill = {"kernel": k.id, "kernel_index": k.index, "pid": pid, "t": run.now(), "new_pid": None,
                "restart_seconds": None}
        k.restarting = True
        k.last_kill = kill["t"]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            k.restarting = False
            run.kill_errors.append(f"{now:.1f}s kernel {k.id}: pid {pid} already gone")
            continue
        k.kills.append(kill)
        k.kill_event.set()
        run.log(f"SIGKILL kernel {k.index} ({k.id[:8]}) pid {pid}")
        asyncio.ensure_future(watch_restart(run, k, kill))


async def watch_restart(run: Run, k: Kernel, kill: dict) -> None:
    """Waits for the kernel's new process (a new pid in /status.json that is a live kernel)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not run.stop_all.is_set():
        await asyncio.sleep(0.25)
        try:
            snap = await status_json(run)
        except Exception:  # noqa: BLE001
            continue
        pid = find_kernel_pid(run, k, snap)
        state = next((e.get("execution_state") for e in snap.get("kernels", []) if e.get("id") == k.id), None)
        if pid and pid != kill["pid"] and alive(pid) and state in ("idle", "busy"):
            kill["new_pid"] = pid
            kill["restart_seconds"] = round(run.now() - kill["t"], 3)
            k.pids_seen.add(pid)
            break
    k.restarting = False


async def sampler_task(run: Run) -> None:
    n = 0
    while not run.stop_all.is_set():
        if run.proc is not None and run.proc.poll() is None:
            r = rss_kib(run.proc.pid)
            if r is not None:
                run.rss.append((run.now(), r))
            if n % 5 == 0:
                try:
                    run.gw_descendants |= await asyncio.to_thread(descendants_of, run.proc.pid)
                except Exception:  # noqa: BLE001
                    pass
        n += 1
        try:
            await asyncio.wait_for(run.stop_all.wait(), run.args.rss_interval)
        except asyncio.TimeoutError:
            pass


async def wait_connections(run: Run, k: Kernel, want: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, body = await rest(run, "GET", f"/api/kernels/{k.id}")
        if st == 200 and json.loads(body).get("connections", 0) >= want:
            return True
        await asyncio.sleep(0.25)
    return False


# --------------------------------------------------------------------------- main flow

async def chaos(run: Run, workdir: Path) -> dict:
    a = run.args
    res: dict = {}
    # kernels
    run.log(f"gateway pid {run.proc.pid} on 127.0.0.1:{run.port}; starting {a.kernels} kernels")
    sem = asyncio.Semaphore(4)

    async def create(i):
        async with sem:
            st, body = await rest(run, "POST", "/api/kernels", {"name": a.kernel_name}, timeout=120)
            if st != 201:
                raise SystemExit(f"chaos: POST /api/kernels -> {st} {body[:300]!r}")
            return Kernel(i, json.loads(body)["id"])

    run.kernels = list(await asyncio.gather(*(create(i) for i in range(a.kernels))))
    snap = await status_json(run)
    for k in run.kernels:
        pid = find_kernel_pid(run, k, snap)
        if pid:
            k.pids_seen.add(pid)
    # clients
    for i in range(a.websockets):
        k = run.kernels[i % a.kernels]
        c = Client(i, k, driver=not k.clients)
        k.clients.append(c)
        run.clients.append(c)
    run.log(f"{a.kernels} kernels up; opening {a.websockets} WebSockets")
    csem = asyncio.Semaphore(a.connect_concurrency)
    tasks = [asyncio.ensure_future(client_task(run, c, csem)) for c in run.clients]
    t_conn = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.connected_once.wait() for c in run.clients)), 300)
    for k in run.kernels:
        if not await wait_connections(run, k, len(k.clients), 60):
            raise SystemExit(f"chaos: kernel {k.id} never showed {len(k.clients)} connections")
    res["connect_all_seconds"] = round(time.monotonic() - t_conn, 2)
    run.log(f"all {a.websockets} WebSockets open in {res['connect_all_seconds']} s; load for {a.duration} s "
            f"(kills every ~{a.kill_interval} s, drops every ~{a.drop_interval} s, warm-up {a.warmup} s)")
    m_before = await metrics(run)
    load_t0 = run.now()
    res["load_started_at"] = round(load_t0, 2)
    probe_out = workdir / "health.log"
    probe = subprocess.Popen([sys.executable, __file__, "--_health-probe", str(run.port), str(probe_out),
                              str(a.health_interval), str(a.duration + 120)], stdin=subprocess.DEVNULL)
    drivers = [asyncio.ensure_future(driver_task(run, k)) for k in run.kernels]
    sampler = asyncio.ensure_future(sampler_task(run))
    chaos_tasks = [asyncio.ensure_future(dropper_task(run)), asyncio.ensure_future(killer_task(run))]
    gateway_died_at = None
    try:
        end = time.monotonic() + a.duration
        next_report = time.monotonic() + a.progress_interval
        while time.monotonic() < end:
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if run.proc.poll() is not None:
                gateway_died_at = run.now()
                run.log(f"GATEWAY EXITED with code {run.proc.returncode}")
                break
            if time.monotonic() >= next_report:
                next_report += a.progress_interval
                execs = sum(len(k.execs) for k in run.kernels)
                rss = run.rss[-1][1] // 1024 if run.rss else -1
                run.log(f"cells {execs}, kills {sum(len(k.kills) for k in run.kernels)}, "
                        f"drops {sum(c.drops for c in run.clients)}, open {sum(c.open for c in run.clients)}, "
                        f"delivered {sum(c.delivered for c in run.clients)}, gateway RSS {rss} MiB")
        load_t1 = run.now()
        res["load_ended_at"] = round(load_t1, 2)
        run.stop_chaos.set()
        await asyncio.gather(*chaos_tasks)
        health_at_end = None
        if gateway_died_at is None:
            try:
                st, _ = await rest(run, "GET", "/api/health", timeout=10)
                health_at_end = st
            except Exception as e:  # noqa: BLE001
                health_at_end = f"{type(e).__name__}: {e}"
        res["health_at_end"] = health_at_end
        res["gateway_died_at"] = gateway_died_at
        m_after = await metrics(run) if gateway_died_at is None else {}
        # wind down: restarts finish, everyone reconnects, drivers finish their cell
        run.log("load over: waiting for restarts, reconnects and the last cells")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and gateway_died_at is None:
            if not any(k.restarting for k in run.kernels) and all(c.open for c in run.clients):
                break
            await asyncio.sleep(0.2)
        run.stop_exec.set()
        try:
            await asyncio.wait_for(asyncio.gather(*drivers), a.exec_timeout + 30)
        except asyncio.TimeoutError:
            run.notes.append("drivers did not finish their last cell in time")
        # every client waits for the idle of every completed cell
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and gateway_died_at is None:
            pending = 0
            for k in run.kernels:
                done = [e.n for e in k.execs if e.reply_status is not None]
                for c in k.clients:
                    pending += sum(1 for n in done if not c.flags.get(n, 0) & ST_IDLE)
            if pending == 0:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        res["metrics_final"] = await metrics(run) if gateway_died_at is None and run.proc.poll() is None else {}
        res["metrics_at_load_end"] = m_after
        res["metrics_before"] = m_before
        res["rss_after_wind_down_kib"] = rss_kib(run.proc.pid) if run.proc.poll() is None else None
    finally:
        run.stop_all.set()
        run.stop_chaos.set()
        run.stop_exec.set()
        for c in run.clients:
            if c.conn is not None and c.open:
                c.drop_now.set()
        await asyncio.sleep(0)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        except asyncio.TimeoutError:
            for t in tasks:
                t.cancel()
        for t in drivers + [sampler]:
            t.cancel()
        if probe.poll() is None:
            probe.terminate()
            try:
                probe.wait(10)
            except subprocess.TimeoutExpired:
                probe.kill()
    res["health_samples"] = []
    try:
        for line in probe_out.read_text().splitlines():
            t, ms, st = line.split()
            res["health_samples"].append((float(t), float(ms), int(st)))
    except OSError:
        pass
    return res


def evaluate(run: Run, res: dict, stop_res: dict) -> dict:
    a = run.args
    out: dict = {"parameters": {k: v for k, v in vars(a).items() if not k.startswith("_")}}
    crit: dict[str, dict] = {}

    # ---- messages
    tot = {"delivered": 0, "iopub_checked": 0, "lost_messages": 0, "duplicated": 0, "out_of_order": 0,
           "lost_lines": 0, "line_gaps": 0, "line_dups": 0, "bad_lines": 0, "missing_status": 0,
           "overflow_notes": 0}
    examples: list[str] = []
    per_kernel = []
    for k in run.kernels:
        universe = len(k.ids)
        ref = max(k.clients, key=lambda c: len(set(c.seq)))
        pos = {v: i for i, v in enumerate(dict.fromkeys(ref.seq))}
        completed = [e.n for e in k.execs if e.reply_status is not None]
        klost = 0
        for c in k.clients:
            s = c.seq
            st = set(s)
            lost = universe - len(st)
            dup = len(s) - len(st)
            ooo = 0
            last = -1
            for v in dict.fromkeys(s):
                p = pos.get(v)
                if p is None:
                    continue
                if p < last:
                    ooo += 1
                last = max(last, p)
            lost_lines = 0
            missing_status = 0
            for n in completed:
                got = c.lines.get(n, 0)
                if got < a.lines:
                    lost_lines += a.lines - got
                if c.flags.get(n, 0) != ST_BUSY | ST_INPUT | ST_IDLE:
                    missing_status += 1
            tot["delivered"] += c.delivered
            tot["iopub_checked"] += len(s)
            tot["lost_messages"] += lost
            tot["duplicated"] += dup
            tot["out_of_order"] += ooo
            tot["lost_lines"] += lost_lines
            tot["missing_status"] += missing_status
            tot["line_gaps"] += c.line_gaps
            tot["line_dups"] += c.line_dups
            tot["bad_lines"] += c.bad_lines
            tot["overflow_notes"] += c.overflow_notes
            klost += lost
            if (lost or dup or ooo or lost_lines or missing_status or c.line_gaps or c.line_dups or c.bad_lines
                    or c.overflow_notes) and len(examples) < 30:
                missing_ids = sorted(set(range(universe)) - st)[:5]
                inv = {v: m for m, v in k.ids.items()}
                t_first = k.first_seen[missing_ids[0]][0] if missing_ids else None
                near = [(round(x, 3), round(y, 3)) for x, y in c.intervals
                        if t_first is not None and y >= t_first - 5 and x <= t_first + 5]
                missing_desc = [f"{inv[i]} ({k.first_seen[i][2]} of cell {k.execs[k.first_seen[i][1]].tag}, first "
                                f"received by a client at {k.first_seen[i][0]:.3f} s)" for i in missing_ids]
                examples.append(
                    f"kernel {k.index} client {c.index} (session {c.session[:8]}, driver={c.driver}, drops {c.drops}, "
                    f"connects {c.connects}): lost {lost} dup {dup} out-of-order {ooo} lost_lines {lost_lines} "
                    f"missing_status {missing_status} gaps {c.line_gaps} line_dups {c.line_dups} "
                    f"overflow_notes {c.overflow_notes}; missing: {missing_desc}; "
                    f"its WebSocket open intervals around the first: {near}")
        per_kernel.append({"kernel": k.id, "cells": len(k.execs), "completed": len(completed),
                           "iopub_messages": universe, "kills": len(k.kills), "lost_messages": klost})
    out["messages"] = tot
    out["message_problem_examples"] = examples
    out["per_kernel"] = per_kernel
    crit["no_lost_messages"] = {"pass": tot["lost_messages"] == 0 and tot["lost_lines"] == 0
                                and tot["missing_status"] == 0 and tot["line_gaps"] == 0 and tot["overflow_notes"] == 0,
                                "detail": {x: tot[x] for x in ("lost_messages", "lost_lines", "missing_status",
                                                              "line_gaps", "overflow_notes")}}
    crit["exactly_once_in_order"] = {"pass": tot["duplicated"] == 0 and tot["out_of_order"] == 0
                                     and tot["line_dups"] == 0 and tot["bad_lines"] == 0,
                                     "detail": {x: tot[x] for x in ("duplicated", "out_of_order", "line_dups", "bad_lines")}}

    # ---- replies
    cells = sum(len(k.execs) for k in run.kernels)
    lost_replies, dup_replies, killed_cells, killed_answered, failed = 0, 0, 0, 0, 0
    reply_examples = []
    for k in run.kernels:
        for e in k.execs:
            if e.unsent:
                continue
            if e.replies > 1:
                dup_replies += e.replies - 1
            if e.kill_pending:
                killed_cells += 1
                killed_answered += e.replies > 0
            elif e.replies == 0:
                lost_replies += 1
                if len(reply_examples) < 10:
                    reply_examples.append(f"kernel {k.index} cell {e.n} ({e.msg_id}) sent at {e.sent_t}")
            if e.reply_status not in (None, "ok"):
                failed += 1
    out["cells"] = {"sent": cells, "replied": sum(e.replies > 0 for k in run.kernels for e in k.execs),
                    "cut_by_kill": killed_cells, "cut_by_kill_but_answered": killed_answered,
                    "lost_replies": lost_replies, "duplicate_replies": dup_replies, "reply_not_ok": failed,
                    "unsent": sum(e.unsent for k in run.kernels for e in k.execs),
                    "lost_reply_examples": reply_examples}
    crit["every_request_answered_once"] = {"pass": lost_replies == 0 and dup_replies == 0 and failed == 0,
                                           "detail": {"lost_replies": lost_replies, "duplicate_replies": dup_replies,
                                                      "reply_not_ok": failed}}

    # ---- connections
    conn = {"connects": sum(c.connects for c in run.clients), "drops": sum(c.drops for c in run.clients),
            "reconnects": sum(max(0, c.connects - 1) for c in run.clients),
            "server_initiated_closes": sum(c.server_closes for c in run.clients),
            "eof_without_close": sum(c.eofs for c in run.clients),
            "close_handshake_timeouts": sum(c.close_timeouts for c in run.clients),
            "connect_failures": sum(c.connect_failures for c in run.clients),
            "connect_error_examples": [e for c in run.clients for e in c.connect_errors][:10]}
    rt = [t for c in run.clients for t in c.reconnect_times if t >= 0]
    conn["reconnect_seconds_p50"] = pct(rt, 50)
    conn["reconnect_seconds_max"] = max(rt) if rt else None
    out["connections"] = conn
    never_back = [c.index for c in run.clients if not c.connects]
    crit["clients_reconnected"] = {
        "pass": not never_back and conn["close_handshake_timeouts"] == 0 and conn["eof_without_close"] == 0
        and conn["server_initiated_closes"] == 0,
        "detail": {"never_connected": never_back[:20], "close_handshake_timeouts": conn["close_handshake_timeouts"],
                   "eof_without_close": conn["eof_without_close"],
                   "server_initiated_closes": conn["server_initiated_closes"]}}

    # ---- kills
    kills_out = []
    not_reported_connected = 0
    away_got, away_missed, dup_restarting, no_report, not_back = 0, 0, 0, 0, 0
    for k in run.kernels:
        ordered = sorted(k.kills, key=lambda x: x["t"])
        for j, kill in enumerate(ordered):
            t_next = ordered[j + 1]["t"] if j + 1 < len(ordered) else 1e18
            got = {}
            for c in k.clients:
                rs = [r for r in c.restarting if kill["t"] <= r[0] < t_next]
                got[c.index] = rs
            times = [r[0][0] for r in got.values() if r]
            t_bcast = min(times) if times else None
            reasons = sorted({r[0][2] for r in got.values() if r})
            connected_missing, away_g, away_m, dups = [], 0, 0, 0
            for c in k.clients:
                rs = got[c.index]
                if len(rs) > 1:
                    dups += len(rs) - 1
                covered = t_bcast is not None and any(o <= kill["t"] and (cl < 0 or cl >= t_bcast + 0.5)
                                                      for o, cl in c.intervals)
                if covered and not rs:
                    connected_missing.append(c.index)
                elif not covered:
                    if rs:
                        away_g += 1
                    else:
                        away_m += 1
            starts = [t for c in k.clients for t in c.startings if kill["t"] <= t < t_next]
            kill["back_after_s"] = round(min(starts) - kill["t"], 3) if starts else None
            later_ok = any(e.reply_status == "ok" and e.sent_t is not None and e.sent_t > kill["t"] for e in k.execs)
            reported = t_bcast is not None
            no_report += not reported
            not_back += not (kill["new_pid"] and later_ok)
            not_reported_connected += len(connected_missing)
            away_got += away_g
            away_missed += away_m
            dup_restarting += dups
            kills_out.append({"kernel_index": k.index, "pid": kill["pid"], "t": round(kill["t"], 2),
                              "new_pid": kill["new_pid"], "new_pid_after_s": kill["restart_seconds"],
                              "starting_after_s": kill["back_after_s"],
                              "first_restarting_after_s": round(t_bcast - kill["t"], 3) if t_bcast else None,
                              "reasons": reasons, "clients_with_restarting": sum(1 for r in got.values() if r),
                              "connected_but_not_told": connected_missing[:10], "away_told_by_replay": away_g,
                              "away_not_told": away_m, "duplicate_restarting": dups, "later_cell_ok": later_ok})
    n_kills = len(kills_out)
    m_died = metric_sum(res.get("metrics_final") or res.get("metrics_at_load_end") or {},
                        "ganymede_kernel_events_total", 'event="died"') - \
        metric_sum(res.get("metrics_before") or {}, "ganymede_kernel_events_total", 'event="died"')
    out["kills"] = {"count": n_kills, "reported_to_clients": n_kills - no_report, "metrics_died_delta": m_died,
                    "connected_clients_not_told": not_reported_connected, "duplicate_restarting": dup_restarting,
                    "restarting_replayed_to_away": away_got, "restarting_missed_by_away": away_missed,
                    "not_back": not_back, "kill_errors": run.kill_errors[:10],
                    "restart_seconds_p50": pct([x["starting_after_s"] for x in kills_out if x["starting_after_s"]], 50),
                    "restart_seconds_max": max((x["starting_after_s"] for x in kills_out if x["starting_after_s"]), default=None),
                    "each": kills_out}
    crit["every_kill_reported"] = {
        "pass": no_report == 0 and not_reported_connected == 0 and dup_restarting == 0 and not_back == 0
        and (not res.get("metrics_final") or m_died >= n_kills) and (n_kills > 0 or a.kill_interval <= 0)
        and (away_missed == 0 or not a.strict_kill_replay),
        "detail": {"kills": n_kills, "not_reported": no_report, "connected_clients_not_told": not_reported_connected,
                   "duplicate_restarting": dup_restarting, "not_back": not_back, "metrics_died_delta": m_died,
                   "restarting_missed_by_away" + ("" if a.strict_kill_replay else " (not judged)"): away_missed}}

    # ---- gateway alive
    crit["gateway_alive"] = {"pass": res.get("gateway_died_at") is None and res.get("health_at_end") == 200,
                             "detail": {"died_at": res.get("gateway_died_at"), "health_at_end": res.get("health_at_end")}}

    # ---- RSS
    load_t0, load_t1 = res.get("load_started_at", 0), res.get("load_ended_at", 0)
    w0 = load_t0 + a.warmup
    base = [r for t, r in run.rss if w0 <= t < w0 + 10]
    endw = [r for t, r in run.rss if load_t1 - 10 <= t <= load_t1]
    rss_out = {"warmup_end_s": round(w0, 1), "baseline_kib": statistics.median(base) if base else None,
               "end_kib": statistics.median(endw) if endw else None,
               "max_kib": max((r for _, r in run.rss), default=None),
               "at_load_start_kib": next((r for t, r in run.rss if t >= load_t0), None),
               "after_wind_down_kib": res.get("rss_after_wind_down_kib"),
               "samples": [(round(t, 1), r) for t, r in run.rss]}
    growth = None
    if rss_out["baseline_kib"] and rss_out["end_kib"]:
        growth = 100.0 * (rss_out["end_kib"] - rss_out["baseline_kib"]) / rss_out["baseline_kib"]
    rss_out["growth_pct"] = round(growth, 2) if growth is not None else None
    out["rss"] = rss_out
    crit["rss_growth_after_warmup"] = {"pass": growth is not None and growth < a.rss_growth_limit,
                                       "detail": {"growth_pct": rss_out["growth_pct"], "limit_pct": a.rss_growth_limit,
                                                  "baseline_kib": rss_out["baseline_kib"], "end_kib": rss_out["end_kib"]}}

    # ---- health latency
    hs = res.get("health_samples", [])
    lat = [ms for _, ms, st in hs if st == 200]
    out["health"] = {"samples": len(hs), "ok": len(lat), "failed": len(hs) - len(lat),
                     "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else None}

    # ---- shutdown
    out["shutdown"] = stop_res
    crit["clean_shutdown"] = {"pass": bool(stop_res.get("exited_on_sigterm")) and not stop_res.get("orphans"),
                              "detail": stop_res}

    m = res.get("metrics_final") or {}
    out["gateway_metrics"] = {
        "replay_dropped_messages": metric_sum(m, "ganymede_replay_dropped_messages"),
        "replay_buffered_sessions": metric_sum(m, "ganymede_replay_buffered_sessions"),
        "slow_clients_disconnected": metric_sum(m, "ganymede_slow_clients_disconnected"),
        "kernel_events": {k: v for k, v in m.items() if k.startswith("ganymede_kernel_events_total")},
    }
    out["connect_all_seconds"] = res.get("connect_all_seconds")
    out["t0_unix"] = run.t0_unix
    out["load_seconds"] = round(load_t1 - load_t0, 1)
    out["notes"] = run.notes
    out["criteria"] = crit
    out["pass"] = all(v["pass"] for v in crit.values())
    return out


def human(out: dict, workdir: Path, json_path: Path) -> str:
    p = out["parameters"]
    m, c, cn, k, r, h = out["messages"], out["cells"], out["connections"], out["kills"], out["rss"], out["health"]
    lines = [
        "",
        "=== Ganymede chaos run ===",
        f"{p['websockets']} WebSockets over {p['kernels']} kernels, load {out['load_seconds']} s "
        f"(kill ~{p['kill_interval']} s, drop ~{p['drop_interval']} s, seed {p['seed']}); "
        f"all open in {out['connect_all_seconds']} s",
        f"messages: {m['delivered']} delivered ({m['iopub_checked']} iopub checked), lost {m['lost_messages']}, "
        f"lost lines {m['lost_lines']}, duplicated {m['duplicated']}, out of order {m['out_of_order']}, "
        f"line gaps {m['line_gaps']}, line dups {m['line_dups']}, missing status {m['missing_status']}, "
        f"overflow notes {m['overflow_notes']}",
        f"cells: {c['sent']} sent, {c['replied']} replied, {c['cut_by_kill']} cut by a kill, lost replies "
        f"{c['lost_replies']}, duplicate replies {c['duplicate_replies']}",
        f"connections: {cn['drops']} drops, {cn['reconnects']} reconnects (p50 {cn['reconnect_seconds_p50']} s, "
        f"max {cn['reconnect_seconds_max']} s), server closes {cn['server_initiated_closes']}, "
        f"EOFs {cn['eof_without_close']}, connect failures {cn['connect_failures']}",
        f"kills: {k['count']}, reported to clients {k['reported_to_clients']}, died events in metrics "
        f"{k['metrics_died_delta']:.0f}, connected clients not told {k['connected_clients_not_told']}, "
        f"not back {k['not_back']}, restart (kill to `starting`) p50 {k['restart_seconds_p50']} s max {k['restart_seconds_max']} s; away clients: "
        f"{k['restarting_replayed_to_away']} told by replay, {k['restarting_missed_by_away']} not told",
        f"gateway RSS: {r['at_load_start_kib']} KiB at load start, {r['baseline_kib']} KiB after warm-up "
        f"(t={r['warmup_end_s']} s), {r['end_kib']} KiB at load end, max {r['max_kib']} KiB: growth {r['growth_pct']} %",
        f"/api/health: {h['samples']} samples, {h['failed']} failed, p50 {h['p50_ms'] and round(h['p50_ms'], 2)} ms, "
        f"p99 {h['p99_ms'] and round(h['p99_ms'], 2)} ms, max {h['max_ms'] and round(h['max_ms'], 2)} ms",
        f"shutdown: exited on SIGTERM {out['shutdown'].get('exited_on_sigterm')}, "
        f"orphans {len(out['shutdown'].get('orphans', []))}",
    ]
    if out["message_problem_examples"]:
        lines.append("message problems (first clients):")
        lines += ["  " + e for e in out["message_problem_examples"][:10]]
    if c["lost_reply_examples"]:
        lines.append("lost replies: " + "; ".join(c["lost_reply_examples"]))
    lines.append("criteria:")
    for name, v in out["criteria"].items():
        lines.append(f"  {'PASS' if v['pass'] else 'FAIL'}  {name}  {json.dumps(v['detail'], default=str)[:400]}")
    lines.append(f"RESULT: {'PASS' if out['pass'] else 'FAIL'}  (JSON: {json_path}; gateway log: {workdir / 'gateway.log'})")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("GANYMEDE_BIN") or str(REPO / ".build/debug/ganymede"))
    ap.add_argument("--kernel-bindir", default=str(REPO / ".venv/bin") if (REPO / ".venv/bin/python3").exists()
                    else os.path.dirname(sys.executable),
                    help="directory put first on the kernels' PATH (its python3 needs ipykernel)")
    ap.add_argument("--kernel-name", default="python3")
    ap.add_argument("--websockets", type=int, default=1000)
    ap.add_argument("--kernels", type=int, default=20)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (after all sockets are open)")
    ap.add_argument("--kill-interval", type=float, default=10.0, help="mean seconds between kernel kills (0 = none)")
    ap.add_argument("--kill-spacing", type=float, default=20.0, help="min seconds between two kills of one kernel")
    ap.add_argument("--drop-interval", type=float, default=0.5, help="mean seconds between WebSocket drops (0 = none)")
    ap.add_argument("--reconnect-min", type=float, default=0.1)
    ap.add_argument("--reconnect-max", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strict-kill-replay", action="store_true",
                    help="also fail when a client that was away at a kill never receives `status: restarting`")
    ap.add_argument("--lines", type=int, default=20, help="numbered lines per cell")
    ap.add_argument("--line-sleep", type=float, default=0.05, help="seconds between lines in a cell")
    ap.add_argument("--flush-lines", action="store_true",
                    help="flush after every line: one stream message per line (a denser message stream)")
    ap.add_argument("--exec-interval", type=float, default=2.0, help="mean seconds between a driver's cells")
    ap.add_argument("--exec-timeout", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=None, help="default: min(60, duration/2)")
    ap.add_argument("--rss-growth-limit", type=float, default=5.0, help="percent")
    ap.add_argument("--rss-interval", type=float, default=2.0)
    ap.add_argument("--health-interval", type=float, default=0.5)
    ap.add_argument("--connect-concurrency", type=int, default=32)
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument("--progress-interval", type=float, default=30.0)
    ap.add_argument("--workdir", default=None, help="default: a new temp dir (kept, with gateway.log)")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--gateway-arg", action="append", default=[], help="extra gateway argument (repeatable)")
    a = ap.parse_args(argv)
    if a.warmup is None:
        a.warmup = min(60.0, a.duration / 2)
    if a.websockets < a.kernels or a.kernels < 1:
        ap.error("need at least one kernel and one WebSocket per kernel")
    if a.warmup + 10 > a.duration:
        ap.error("--duration must exceed --warmup by at least 10 s (RSS is measured after warm-up)")
    return a


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_health-probe":
        health_probe_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return 0
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.websockets + 1024))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * args.websockets + 256:
        print(f"chaos: open-file limit {want} is too low for {args.websockets} WebSockets", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ganymede-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json_out) if args.json_out else workdir / "chaos-result.json"
    run = Run(args)
    stop_res: dict = {}
    interrupted = False
    try:
        start_gateway(run, workdir)
        loop = asyncio.new_event_loop()
        main_task = loop.create_task(chaos(run, workdir))
        loop.add_signal_handler(signal.SIGINT, main_task.cancel)
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
        try:
            res = loop.run_until_complete(main_task)
        except asyncio.CancelledError:
            interrupted = True
            res = None
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except Exception:  # noqa: BLE001
                pass
            loop.close()
    except SystemExit as e:
        stop_res = stop_gateway(run)
        print(e, file=sys.stderr)
        if stop_res.get("orphans"):
            print(f"chaos: orphans left by the gateway: {stop_res['orphans']}", file=sys.stderr)
        return 2
    finally:
        if not stop_res:
            stop_res = stop_gateway(run)
    if interrupted or res is None:
        print(f"chaos: interrupted; gateway stopped ({stop_res}); work dir {workdir}", file=sys.stderr)
        return 130
    out = evaluate(run, res, stop_res)
    out["events"] = run.events
    json_path.write_text(json.dumps(out, indent=1, default=str))
    print(human(out, workdir, json_path))
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
