"""Slow and greedy clients cannot pin the gateway's resources: a connection that trickles its
request head is closed, an idle keep-alive connection is closed, an oversized header block is a
JSON 431, unparseable requests a JSON 400, and one user's WebSockets are bounded (429)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import websocket

from conftest import Gateway, KernelWS, execute_ok


SPECS = Path(__file__).resolve().parent / "fixtures" / "kernelspecs"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("limits"), args=["--http-idle-timeout", "1.5", "--max-websockets-per-user", "2",
                                                         "--kernelspec-dir", str(SPECS)]).start()
    yield g
    g.stop()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_trickled_request_head_is_closed(gw):
    s = socket.create_connection(("127.0.0.1", gw.port))
    try:
        s.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\n")  # never finished
        began = time.monotonic()
        assert _closed_within(s, 10), "a request head that never ends must not hold the connection"
        assert 1 <= time.monotonic() - began < 8
    finally:
        s.close()


def test_idle_keep_alive_is_closed(gw):
    s = socket.create_connection(("127.0.0.1", gw.port))
    try:
        s.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(s, 10)
    finally:
        s.close()


def test_long_requests_are_not_cut_by_the_idle_timeout(gw):
    """The bound is on a silent client, not on a slow answer: a start that takes twice the idle
    timeout still gets its answer (here the launch timeout's JSON error), and so does a cell."""
    began = time.monotonic()
    slow = gw.post("api/kernels", json={"name": "hang_forever", "env": {"KERNEL_LAUNCH_TIMEOUT": "3"}}, timeout=90)
    assert time.monotonic() - began >= 2.9 and slow.status_code >= 500 and slow.json()["reason"], slow.text
    r = gw.post("api/kernels", json={"name": "python3"}, timeout=90)
    assert r.status_code == 201
    with KernelWS(gw, r.json()["id"]) as ws:
        execute_ok(ws, "import time; time.sleep(2.5)")
    assert gw.delete(f"api/kernels/{r.json()['id']}").status_code == 204


def _raw(gw, data: bytes) -> tuple[int, dict]:
    s = socket.create_connection(("127.0.0.1", gw.port))
    try:
        s.sendall(data)
        s.settimeout(10)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)
    finally:
        s.close()


def test_oversized_headers_are_a_json_431(gw):
    status, body = _raw(gw, b"GET /api HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert status == 431 and body["reason"] == "Request Header Fields Too Large", body


def test_garbage_is_a_json_400(gw):
    status, body = _raw(gw, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
    assert status == 400 and "not valid HTTP" in body["message"], body


def test_websockets_per_user_are_bounded(gw):
    r = gw.post("api/kernels", json={"name": "python3", "env": {"KERNEL_USERNAME": "greedy"}}, timeout=90)
    assert r.status_code == 201
    kid = r.json()["id"]
    try:
        first, second = KernelWS(gw, kid), KernelWS(gw, kid)
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            KernelWS(gw, kid)
        assert e.value.status_code == 429
        assert "max_websockets_per_user" in e.value.resp_body.decode()
        first.close()
        time.sleep(0.5)
        third = KernelWS(gw, kid)  # room again once one closed
        execute_ok(third, "1 + 1")
        third.close()
        second.close()
    finally:
        gw.delete(f"api/kernels/{kid}")
