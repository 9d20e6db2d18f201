"""Shared harness for Ganymede's black-box end-to-end tests.

The gateway under test is the binary named by $GANYMEDE_BIN (scripts/test.sh sets it to
.build/debug/ganymede). Every test talks to a real gateway process over HTTP/WebSocket and
real ipykernel kernels; nothing is mocked.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import requests
import websocket

REPO = Path(__file__).resolve().parent.parent
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
TOKEN = "secret-token"
DEFAULT_HTTP_TIMEOUT = 30
START_TIMEOUT = 30
STOP_TIMEOUT = 15
ORPHAN_TIMEOUT = 10

# Env names that would change the gateway's configuration behind a test's back.
_CONFIG_ENV_PREFIXES = ("EG_", "KG_", "GANYMEDE_", "JUPYTER_GATEWAY_")


# --------------------------------------------------------------------------- ports

_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("could not find a fresh free port")


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parens: split after the last ')'
    rest = data[data.rindex(")") + 2 :].split()
    return int(rest[1]), rest[0]


def children_of(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st is not None and st[0] == pid:
            kids.add(int(entry))
    return kids


def descendants_of(pid: int) -> set[int]:
    out: set[int] = set()
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        for c in children_of(p):
            if c not in out:
                out.add(c)
                frontier.append(c)
    return out


def alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll pred() until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- gateway


def ganymede_bin() -> str:
    b = os.environ.get("GANYMEDE_BIN", "")
    if not b:
        pytest.skip("GANYMEDE_BIN is not set: run scripts/test.sh, or export GANYMEDE_BIN=.build/debug/ganymede")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.skip(f"GANYMEDE_BIN={b!r} does not exist or is not executable (build it with `swift build`)")
    return b


_RUNNING_GATEWAYS: list["Gateway"] = []


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_ENV_PREFIXES)}
    # The bundled kernelspec runs `python3`: make it the interpreter running the tests (it has ipykernel).
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_CURRENT_TEST", None)
    # EG's default EG_UNAUTHORIZED_USERS is "root", and a request without KERNEL_USERNAME runs as
    # the gateway's user: as root (CI) every such start would be refused. Tests that check the
    # default pass EG_UNAUTHORIZED_USERS themselves (env= wins over this).
    if os.geteuid() == 0:
        env["EG_UNAUTHORIZED_USERS"] = ""
    return env


class Gateway:
    """One Ganymede process on its own port, with its log under a tmp dir."""

    def __init__(
        self,
        workdir: Path,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        token: str | None = None,
        base_url: str = "/",
        name: str = "gateway",
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.token = token
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.name = name
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{name}.log"
        self._log_file = None
        self.known_children: set[int] = set()
        self.expected_exit = False  # set by tests that stop the process themselves

    # ---- lifecycle
    def start(self) -> "Gateway":
        binary = ganymede_bin()
        self.port = free_port()
        env = base_env()
        runtime = self.workdir / "runtime"
        runtime.mkdir(exist_ok=True)
        env["JUPYTER_RUNTIME_DIR"] = str(runtime)
        env.update(self.extra_env)
        cmd = [binary, "--ip", "127.0.0.1", "--port", str(self.port), *self.args]
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _RUNNING_GATEWAYS.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._cleanup_registration()
                pytest.fail(f"gateway exited early with code {rc}; log:\n{self.log_tail(200)}", pytrace=False)
            try:
                requests.get(self.url("api"), timeout=2, headers=self.auth_headers())
                return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop(check=False)
                pytest.fail(f"gateway did not answer GET /api within {START_TIMEOUT}s; log:\n{self.log_tail(200)}",
                            pytrace=False)
            time.sleep(0.05)

    def _cleanup_registration(self):
        if self in _RUNNING_GATEWAYS:
            _RUNNING_GATEWAYS.remove(self)

    def record_children(self):
        if self.proc and self.proc.poll() is None:
            self.known_children |= descendants_of(self.proc.pid)

    def kill_leaving_kernels(self) -> set[int]:
        """SIGKILL the gateway as a crash would (session persistence tests): its kernels, and any
        helper processes it had, are meant to outlive it. Returns the pids it had started."""
        self.record_children()
        started = {p for p in self.known_children if alive(p)}
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.expected_exit = True
        self.known_children.clear()
        self.stop()
        return started

    def stop(self, check: bool = True) -> list[str]:
        """SIGTERM, wait, SIGKILL; then make sure no kernel outlived the gateway.

        Returns a list of problems (and fails the calling test/fixture with them when check=True).
        """
        problems: list[str] = []
        if self.proc is None:
            return problems
        self.record_children()
        kids = set(self.known_children)
        kid_cmds = {p: cmdline(p) for p in kids}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"gateway pid {self.proc.pid} ignored SIGTERM for {STOP_TIMEOUT}s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        elif not self.expected_exit:
            problems.append(f"gateway had already exited with code {self.proc.returncode} before stop()")
        try:
            wait_until(lambda: not any(alive(p) for p in kids), ORPHAN_TIMEOUT, what="kernels to exit")
        except TimeoutError:
            left = [p for p in kids if alive(p)]
            problems.append(
                "processes started by the gateway outlived it by >%ss: %s"
                % (ORPHAN_TIMEOUT, "; ".join(f"{p}: {kid_cmds.get(p, '?')}" for p in left))
            )
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        self._cleanup_registration()
        self.proc = None
        if problems and check:
            pytest.fail(
                f"{self.name}: " + " | ".join(problems) + f"\nlog tail:\n{self.log_tail(60)}", pytrace=False
            )
        return problems

    # ---- addressing
    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}{path.lstrip('/')}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{self.base_url}{path.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    # ---- HTTP
    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = dict(self.auth_headers())
        headers.update(kw.pop("headers", None) or {})
        kw.setdefault("timeout", DEFAULT_HTTP_TIMEOUT)
        r = requests.request(method, self.url(path), headers=headers, **kw)
        self.record_children()
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = DEFAULT_HTTP_TIMEOUT, with_auth: bool = True):
        """Send the path byte-for-byte (no client-side normalisation). Returns (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = dict(self.auth_headers()) if with_auth else {}
            h.update(headers or {})
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def log_tail(self, n: int = 100) -> str:
        try:
            lines = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- kernels


class KernelTracker:
    """Creates kernels and guarantees they are deleted."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.ids: list[str] = []

    def create(self, name: str | None = "python3", env: dict | None = None, expect: int = 201) -> dict:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if env is not None:
            body["env"] = env
        r = self.gw.post("api/kernels", json=body, timeout=90)
        if r.status_code == 201:
            self.ids.append(r.json()["id"])
        assert r.status_code == expect, f"POST /api/kernels {body} -> {r.status_code} {r.text[:500]}"
        return r.json()

    def adopt(self, kernel_id: str):
        self.ids.append(kernel_id)

    def delete(self, kernel_id: str):
        assert self.gw.delete(f"api/kernels/{kernel_id}", timeout=60).status_code == 204
        self.ids.remove(kernel_id)

    def cleanup(self):
        for kid in self.ids:
            if self.gw.is_running():
                try:
                    self.gw.delete(f"api/kernels/{kid}", timeout=30)
                except requests.RequestException:
                    pass
        self.ids.clear()


def delete_if_created(gw: Gateway, r: requests.Response):
    """For negative tests: a request that wrongly succeeded must not leak a kernel."""
    if r.status_code in (200, 201):
        try:
            kid = r.json().get("id")
            if isinstance(r.json().get("kernel"), dict):
                kid = r.json()["kernel"].get("id", kid)
        except ValueError:
            return
        if kid:
            gw.delete(f"api/kernels/{kid}")


def assert_json_error(r: requests.Response, statuses: Iterable[int]):
    statuses = tuple(statuses)
    assert r.status_code in statuses, (
        f"{r.request.method} {r.request.url} -> {r.status_code} (expected one of {statuses}): {r.text[:500]}"
    )
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("application/json"), f"error Content-Type is {ctype!r}, body {r.text[:300]!r}"
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("reason"), (str, type(None))) and "message" in body, f"error body {body}"
    assert isinstance(body.get("message"), str), f"error body {body}"
    return body


LAST_ACTIVITY_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def assert_kernel_model(m: dict, kernel_id: str | None = None, name: str | None = None):
    assert isinstance(m, dict), m
    for key in ("id", "name", "last_activity", "execution_state", "connections"):
        assert key in m, f"kernel model lacks {key!r}: {m}"
    uuid.UUID(m["id"])
    if kernel_id is not None:
        assert m["id"] == kernel_id
    if name is not None:
        assert m["name"] == name
    _dt.datetime.strptime(m["last_activity"], LAST_ACTIVITY_FORMAT)
    assert isinstance(m["execution_state"], str) and m["execution_state"]
    assert isinstance(m["connections"], int) and not isinstance(m["connections"], bool), m
    return m


# --------------------------------------------------------------------------- wire formats


def pack_legacy_binary(msg: dict, buffers: list[bytes]) -> bytes:
    """Legacy binary frame: u32be nparts, u32be offsets[nparts], JSON (without buffers), buffers."""
    msg = {k: v for k, v in msg.items() if k != "buffers"}
    parts = [json.dumps(msg).encode("utf-8"), *[bytes(b) for b in buffers]]
    n = len(parts)
    offsets, off = [], 4 * (n + 1)
    for p in parts:
        offsets.append(off)
        off += len(p)
    return struct.pack(f">{n + 1}I", n, *offsets) + b"".join(parts)


def unpack_legacy_binary(data: bytes) -> tuple[dict, list[int]]:
    """Returns (message with 'buffers' as bytes, offsets). Raises ValueError on a bad layout."""
    if len(data) < 4:
        raise ValueError("frame shorter than 4 bytes")
    (n,) = struct.unpack_from(">I", data, 0)
    if n < 1 or 4 * (n + 1) > len(data):
        raise ValueError(f"bad part count {n} for a {len(data)}-byte frame")
    offsets = list(struct.unpack_from(f">{n}I", data, 4))
    bounds = offsets + [len(data)]
    if offsets[0] != 4 * (n + 1) or any(a > b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"bad offsets {offsets} for a {len(data)}-byte frame")
    parts = [data[bounds[i]: bounds[i + 1]] for i in range(n)]
    msg = json.loads(parts[0].decode("utf-8"))
    msg["buffers"] = parts[1:]
    return msg, offsets


def pack_v1(channel: str, header: dict, parent_header: dict, metadata: dict, content: dict,
            buffers: Iterable[bytes] = ()) -> bytes:
    """v1.kernel.websocket.jupyter.org frame: u64le n, u64le offsets[n], channel, 4 JSON parts, buffers."""
    parts = [channel.encode("utf-8")] + [json.dumps(p).encode("utf-8") for p in
                                          (header, parent_header, metadata, content)]
    parts += [bytes(b) for b in buffers]
    n = len(parts) + 1  # a start offset per part, plus the end of the last part
    offsets, off = [], 8 * (n + 1)
    for p in parts:
        offsets.append(off)
        off += len(p)
    offsets.append(off)
    return struct.pack(f"<{n + 1}Q", n, *offsets) + b"".join(parts)


def unpack_v1(data: bytes) -> tuple[dict, list[int]]:
    if len(data) < 8:
        raise ValueError("frame shorter than 8 bytes")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n < 6 or 8 * (n + 1) > len(data):
        raise ValueError(f"bad offset count {n} for a {len(data)}-byte frame")
    offsets = list(struct.unpack_from(f"<{n}Q", data, 8))
    if offsets[0] != 8 * (n + 1) or offsets[-1] != len(data) or any(a > b for a, b in zip(offsets, offsets[1:])):
        raise ValueError(f"bad offsets {offsets} for a {len(data)}-byte frame")
    parts = [data[offsets[i]: offsets[i + 1]] for i in range(n - 1)]
    msg = {
        "channel": parts[0].decode("utf-8"),
        "header": json.loads(parts[1]),
        "parent_header": json.loads(parts[2]),
        "metadata": json.loads(parts[3]),
        "content": json.loads(parts[4]),
        "buffers": parts[5:],
    }
    return msg, offsets


def make_message(msg_type: str, content: dict, session: str, channel: str = "shell",
                 username: str = "pytest") -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": username,
            "session": session,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


class ExecResult:
    def __init__(self, msg_id: str, messages: list[dict]):
        self.msg_id = msg_id
        self.messages = messages  # every message whose parent is msg_id, in arrival order

    def of_type(self, t: str) -> list[dict]:
        return [m for m in self.messages if m["header"]["msg_type"] == t]

    @property
    def reply(self) -> dict | None:
        r = [m for m in self.messages if m["header"]["msg_type"] == "execute_reply"]
        return r[0] if r else None

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stderr")

    @property
    def result(self) -> str | None:
        r = self.of_type("execute_result")
        return r[0]["content"]["data"].get("text/plain") if r else None

    @property
    def error(self) -> dict | None:
        e = self.of_type("error")
        return e[0]["content"] if e else None

    def summary(self) -> str:
        return ", ".join(f"{m['channel']}:{m['header']['msg_type']}" for m in self.messages)


class KernelWS:
    """A kernel channels WebSocket speaking legacy JSON/binary or v1 framing."""

    def __init__(self, gw: Gateway, kernel_id: str, subprotocols: list[str] | None = None,
                 session_id: str | None = None, token_in_query: bool = False, send_auth: bool = True,
                 timeout: float = 60, token: str | None = None):
        token = token or gw.token  # a user's own token where users have identities
        q = []
        if session_id:
            q.append(f"session_id={session_id}")
        if token_in_query and token:
            q.append(f"token={token}")
        url = gw.ws_url(f"api/kernels/{kernel_id}/channels") + ("?" + "&".join(q) if q else "")
        headers = []
        if send_auth and not token_in_query and token:
            headers.append(f"Authorization: token {token}")
        self.gw = gw
        self.kernel_id = kernel_id
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(url, timeout=timeout, subprotocols=subprotocols, header=headers,
                                              enable_multithread=True)
        gw.record_children()
        self.protocol = self.ws.subprotocol
        self.v1 = self.protocol == V1_PROTOCOL
        self.unrelated: list[dict] = []  # messages read while waiting for something else
        self.raw_frames: list[tuple[int, bytes]] = []  # (opcode, data) of every frame read

    def close(self):
        try:
            self.ws.close(timeout=2)
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- send
    def send_msg(self, msg: dict, buffers: list[bytes] | None = None):
        buffers = list(buffers or [])
        if self.v1:
            self.ws.send_binary(pack_v1(msg["channel"], msg["header"], msg["parent_header"], msg["metadata"],
                                        msg["content"], buffers))
        elif buffers:
            self.ws.send_binary(pack_legacy_binary(msg, buffers))
        else:
            self.ws.send(json.dumps(msg))

    def send(self, msg_type: str, content: dict, channel: str = "shell", buffers: list[bytes] | None = None) -> str:
        msg = make_message(msg_type, content, self.session, channel)
        self.send_msg(msg, buffers)
        return msg["header"]["msg_id"]

    def send_execute(self, code: str, allow_stdin: bool = False, silent: bool = False) -> str:
        return self.send("execute_request", {
            "code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
            "allow_stdin": allow_stdin, "stop_on_error": True,
        })

    # ---- receive
    def recv(self, timeout: float = 30) -> dict:
        """Next message, decoded from any framing. Adds '_frame' ('text'|'binary'|'v1') and '_raw'."""
        self.ws.settimeout(max(timeout, 0.01))
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"no WebSocket message within {timeout:.1f}s") from None
        self.raw_frames.append((opcode, data))
        if opcode == websocket.ABNF.OPCODE_TEXT:
            if self.v1:
                raise AssertionError(f"text frame on a v1 connection: {data[:200]!r}")
            msg = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
            msg.setdefault("buffers", [])
            msg["_frame"] = "text"
        elif opcode == websocket.ABNF.OPCODE_BINARY:
            if self.v1:
                msg, _ = unpack_v1(data)
                msg["_frame"] = "v1"
            else:
                msg, _ = unpack_legacy_binary(data)
                msg["_frame"] = "binary"
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError(f"WebSocket closed by the gateway: {data!r}")
        else:
            raise AssertionError(f"unexpected opcode {opcode}")
        msg["_raw"] = data
        return msg

    def collect(self, pred: Callable[[dict], bool], until: Callable[[list[dict]], bool], timeout: float = 60,
                what: str = "messages", into: list[dict] | None = None) -> list[dict]:
        """Read messages; keep those matching pred until until(kept) is true. With `into`, kept
        messages are appended to that list (so a caller keeps what arrived before a close)."""
        kept: list[dict] = [] if into is None else into
        deadline = time.monotonic() + timeout
        while not until(kept):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what}; got: "
                    + ", ".join(f"{m['channel']}:{m['header'].get('msg_type')}" for m in kept)
                    + " | unrelated: "
                    + ", ".join(f"{m['channel']}:{m['header'].get('msg_type')}" for m in self.unrelated[-20:])
                )
            m = self.recv(left)
            if pred(m):
                kept.append(m)
            else:
                self.unrelated.append(m)
        return kept

    def wait_for_reply(self, msg_id: str, timeout: float = 60) -> dict:
        msgs = self.collect(
            lambda m: m.get("parent_header", {}).get("msg_id") == msg_id and m["channel"] in ("shell", "control"),
            lambda kept: bool(kept), timeout, what=f"reply to {msg_id}")
        return msgs[0]

    def collect_execution(self, msg_id: str, timeout: float = 60,
                          on_input: Callable[[dict], str] | None = None, need_reply: bool = True) -> ExecResult:
        def is_ours(m):
            return m.get("parent_header", {}).get("msg_id") == msg_id

        def done(kept):
            idle = any(m["channel"] == "iopub" and m["header"]["msg_type"] == "status"
                       and m["content"].get("execution_state") == "idle" for m in kept)
            replied = any(m["header"]["msg_type"] == "execute_reply" for m in kept)
            return idle and (replied or not need_reply)

        kept: list[dict] = []
        deadline = time.monotonic() + timeout
        while not done(kept):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"execution {msg_id} not finished within {timeout}s; got: "
                                   + ", ".join(f"{m['channel']}:{m['header']['msg_type']}" for m in kept))
            m = self.recv(left)
            if not is_ours(m):
                self.unrelated.append(m)
                continue
            kept.append(m)
            if m["channel"] == "stdin" and m["header"]["msg_type"] == "input_request" and on_input:
                reply = make_message("input_reply", {"value": on_input(m)}, self.session, "stdin")
                reply["parent_header"] = m["header"]
                self.send_msg(reply)
        return ExecResult(msg_id, kept)

    def execute(self, code: str, timeout: float = 60, allow_stdin: bool = False,
                on_input: Callable[[dict], str] | None = None) -> ExecResult:
        msg_id = self.send_execute(code, allow_stdin=allow_stdin)
        return self.collect_execution(msg_id, timeout, on_input=on_input)


def execute_ok(ws: KernelWS, code: str, timeout: float = 60) -> ExecResult:
    res = ws.execute(code, timeout=timeout)
    assert res.reply is not None
    assert res.reply["content"]["status"] == "ok", f"{code!r} failed: {res.error} / {res.stderr}"
    return res


def assert_kernel_works(gw: Gateway, kernel_id: str, timeout: float = 60):
    """The gateway answers and the kernel still executes 1+1 over a fresh WebSocket."""
    r = gw.get("api", timeout=10)
    assert r.status_code == 200, f"GET /api -> {r.status_code}"
    with KernelWS(gw, kernel_id) as ws:
        res = ws.execute("1+1", timeout=timeout)
        assert res.result == "2", f"1+1 gave {res.result!r}: {res.summary()}"


# --------------------------------------------------------------------------- fixtures


def _start_gateway(tmp_path_factory, name: str, **kw) -> Gateway:
    workdir = tmp_path_factory.mktemp(name)
    return Gateway(workdir, name=name, **kw).start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = _start_gateway(tmp_path_factory, "gateway")
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def gateway_with_token(tmp_path_factory):
    """Token auth (set through EG_AUTH_TOKEN, so it is in the gateway's own env), plus env passing rules."""
    gw = _start_gateway(
        tmp_path_factory, "gateway_token", token=TOKEN,
        env={
            "EG_AUTH_TOKEN": TOKEN,
            "EG_CLIENT_ENVS": "ALLOWED_VAR",
            "EG_INHERITED_ENVS": "GW_INHERITED",
            "GW_INHERITED": "from-gateway",
            "GW_NOT_INHERITED": "not-for-kernels",
        },
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def gateway_factory(tmp_path_factory):
    """Start extra gateways (stopped at module end)."""
    started: list[Gateway] = []

    def make(name: str = "extra", **kw) -> Gateway:
        gw = _start_gateway(tmp_path_factory, name, **kw)
        started.append(gw)
        return gw

    yield make
    problems = []
    for gw in started:
        problems += gw.stop(check=False)
    if problems:
        pytest.fail(" | ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def module_kernels(gateway):
    t = KernelTracker(gateway)
    yield t
    t.cleanup()


@pytest.fixture
def kernels(gateway):
    """Function-scoped kernel tracker on the module's gateway."""
    t = KernelTracker(gateway)
    yield t
    t.cleanup()


@pytest.fixture(scope="module")
def kernel(gateway, module_kernels):
    """One python3 kernel shared by a module's tests."""
    model = module_kernels.create("python3")
    # First connect waits for the kernel to be ready; do it once here.
    with KernelWS(gateway, model["id"]) as ws:
        execute_ok(ws, "pass", timeout=90)
    return model


@pytest.fixture
def ws(gateway, kernel):
    c = KernelWS(gateway, kernel["id"])
    yield c
    c.close()


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _RUNNING_GATEWAYS:
        for gw in list(_RUNNING_GATEWAYS):
            rep.sections.append((f"{gw.name} log (last 100 lines, {gw.log_path})", gw.log_tail(100)))
