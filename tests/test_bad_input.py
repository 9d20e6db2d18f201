"""Hostile and malformed input: the gateway answers 4xx JSON, stays up, and kernels keep working."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import time
import uuid

import pytest
import websocket

from conftest import (
    V1_PROTOCOL,
    KernelWS,
    assert_kernel_works,
    make_message,
    pack_legacy_binary,
    pack_v1,
)


_BROKEN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _still_healthy(request, gateway, kernel):
    """After every case: GET /api answers and the shared kernel executes 1+1 over a fresh socket.

    Once a case has broken the gateway, the later cases fail at once (naming the culprit) instead of each
    waiting for its own timeouts.
    """
    if _BROKEN:
        pytest.fail(f"not run: the gateway stopped working after {_BROKEN['case']}: {_BROKEN['error']}",
                    pytrace=False)
    yield
    if request.node.get_closest_marker("no_health_check"):
        return
    try:
        assert gateway.is_running(), "the gateway process died"
        assert_kernel_works(gateway, kernel["id"], timeout=30)
    except BaseException as e:
        _BROKEN.update(case=request.node.name, error=repr(e)[:300])
        raise


def _is_json_error(status: int, headers: dict, body: bytes, statuses) -> None:
    assert status in statuses, f"status {status} not in {statuses}: {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:200])
    doc = json.loads(body)
    assert isinstance(doc, dict) and "message" in doc and "reason" in doc, doc


# --------------------------------------------------------------------------- traversal

TRAVERSALS = [
    "/kernelspecs/python3/../../../../../../etc/passwd",
    "/kernelspecs/python3/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/kernelspecs/python3/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/kernelspecs/python3/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/kernelspecs/python3/%252e%252e/%252e%252e/%252e%252e/%252e%252e/etc/passwd",
    "/kernelspecs/python3/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/kernelspecs/python3/..%5c..%5c..%5c..%5cetc%5cpasswd",
    "/kernelspecs/python3/....//....//....//....//etc/passwd",
    "/kernelspecs/python3//etc/passwd",
    "/kernelspecs/python3/%2fetc%2fpasswd",
    "/kernelspecs/python3/%2Fetc%2Fpasswd",
    "/kernelspecs/../../../../etc/passwd",
    "/kernelspecs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/kernelspecs/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd",
    "/kernelspecs/python3/..",
    "/kernelspecs/python3/%2e%2e",
    "/kernelspecs/python3/.",
    "/kernelspecs/python3/",
    "/kernelspecs/python3/../python3/../../README.md",
    "/kernelspecs/python3/kernel.json%00.png",
    "/kernelspecs/python3/logo-64x64.png%00",
    "/kernelspecs/python3/%00",
    "/kernelspecs/python3%00/logo-64x64.png",
    "/kernelspecs/python3/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/kernelspecs/python3/%ff%fe",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_kernelspec_resource_traversal(gateway, path, method):
    status, headers, body = gateway.raw(method, path)
    assert status in (400, 403, 404), f"{method} {path} -> {status}: {body[:200]!r}"
    assert b"root:" not in body
    if method == "GET":
        # errors are JSON, as everywhere else
        assert headers.get("content-type", "").startswith("application/json"), (path, headers, body[:200])


def test_kernelspec_resource_symlink_escape(gateway_factory, tmp_path):
    """A symlink inside a spec dir that points outside it must not be served."""
    spec = tmp_path / "specs" / "evil"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["python3", "-m", "ipykernel_launcher", "-f",
                                                            "{connection_file}"],
                                                   "display_name": "Evil", "language": "python"}))
    (spec / "passwd.png").symlink_to("/etc/passwd")
    (spec / "up").symlink_to("/etc")
    gw = gateway_factory("symlinks", args=["--kernelspec-dir", str(tmp_path / "specs")])
    assert "evil" in gw.get("api/kernelspecs").json()["kernelspecs"]
    for path in ("/kernelspecs/evil/passwd.png", "/kernelspecs/evil/up/passwd"):
        status, _, body = gw.raw("GET", path)
        assert status in (403, 404), f"{path} -> {status}"
        assert b"root:" not in body


def test_genuine_logo_still_served(gateway):
    r = gateway.get("kernelspecs/python3/logo-64x64.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


# --------------------------------------------------------------------------- paths, ids, routes


LONG = ("/api/kernels/" + "a" * 5000, "/api/kernels/" + "-".join(["a" * 2000] * 5))


@pytest.mark.parametrize("path,statuses", [
    (f"/api/kernels/{uuid.uuid4()}", (404,)),
    ("/api/kernels/not-a-uuid", (400, 404)),
    ("/api/kernels/" + "a" * 5000, (400, 404, 414)),
    ("/api/kernels/" + "-".join(["a" * 2000] * 5), (400, 404, 414)),
    (f"/api/kernels/{uuid.uuid4()}/nope", (404, 405)),
    ("/api/kernels/%00", (400, 404)),
    (f"/api/kernels/{str(uuid.uuid4())[:-1]}%00", (400, 404)),
    ("/api/kernelspecs/py%00thon3", (400, 404)),
    ("/api/kernelspecs/%2e%2e%2f%2e%2e%2fetc", (400, 404)),
    ("/api/sessions/%00", (400, 404)),
    ("/api/nope", (404,)),
    ("/nope", (404,)),
    ("/%00", (400, 404)),
    ("/api%00", (400, 404)),
    ("/api/kernels?%zz=1", (200, 400)),
])
def test_bad_paths(gateway, path, statuses):
    try:
        status, headers, body = gateway.raw("GET", path)
    except (ConnectionError, http.client.HTTPException):
        if path in LONG:
            return  # dropping an over-long request line is acceptable
        raise
    if status == 414:
        return
    if status == 200:  # only allowed for the query-string case
        json.loads(body)
        return
    _is_json_error(status, headers, body, statuses)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_wrong_method(gateway, method):
    status, headers, body = gateway.raw(method, "/api/kernels", body=b"{}",
                                        headers={"Content-Type": "application/json"})
    _is_json_error(status, headers, body, (404, 405))


@pytest.mark.parametrize("op", ["interrupt", "restart"])
def test_kernel_ops_wrong_method(gateway, kernel, op):
    status, headers, body = gateway.raw("GET", f"/api/kernels/{kernel['id']}/{op}")
    _is_json_error(status, headers, body, (404, 405))


# --------------------------------------------------------------------------- bodies


BAD_BODIES = [
    # (`null` is not here: like jupyter_server/EG, a JSON null body means "no body", i.e. the default kernel)
    b"{", b"}", b"[]", b"[1,2]", b'"str"', b"true", b"42", b"", b"\xff\xfe\xfd",
    b'{"name": "\xff"}', b'{"name": 5}', b'{"name": ["python3"]}', b'{"name": {}}',
    b'{"env": []}', b'{"env": "x"}', b'{"env": 5}', b'{"env": {"A": 1}}', b'{"env": {"KERNEL_A": {}}}',
    b'{"env": {"KERNEL_A": true}}', b'{"name": "python3",}', b'{"name": "python3"} trailing',
    b'{"a": ' * 10000 + b"1" + b"}" * 10000,
    b'{"name": "\\ud800"}', b"\x00", b'{"name": "python3\\u0000"}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[repr(b)[2:-1][:40] or "empty" for b in BAD_BODIES])
def test_post_kernels_bad_body(gateway, body):
    if body == b"":
        pytest.skip("an empty body means 'default kernel' (EG); not an error case")
    status, headers, data = gateway.raw("POST", "/api/kernels", body=body,
                                        headers={"Content-Type": "application/json"})
    if status == 201:
        gateway.delete(f"api/kernels/{json.loads(data)['id']}")
    _is_json_error(status, headers, data, (400, 404))


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b'{"path": 5, "type": "notebook"}',
                                  b'{"path": "a", "type": "notebook", "kernel": 5}',
                                  b'{"path": "a", "type": "notebook", "kernel": {"name": 5}}', b"\xff"])
def test_post_sessions_bad_body(gateway, body):
    status, headers, data = gateway.raw("POST", "/api/sessions", body=body,
                                        headers={"Content-Type": "application/json"})
    if status == 201:
        doc = json.loads(data)
        gateway.delete(f"api/sessions/{doc['id']}")
    _is_json_error(status, headers, data, (400, 404))


def test_patch_session_bad_body(gateway):
    status, headers, data = gateway.raw("PATCH", f"/api/sessions/{uuid.uuid4()}", body=b"{",
                                        headers={"Content-Type": "application/json"})
    _is_json_error(status, headers, data, (400, 404))


def test_huge_body(gateway):
    body = b'{"name": "python3", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    try:
        status, headers, data = gateway.raw("POST", "/api/kernels", body=body,
                                            headers={"Content-Type": "application/json"}, timeout=60)
    except (ConnectionError, OSError):
        return  # closing the connection on an oversize body is acceptable
    if status == 201:
        gateway.delete(f"api/kernels/{json.loads(data)['id']}")
    assert 400 <= status < 500, status


def test_lying_content_length(gateway):
    """Content-Length larger than the body, then the client goes away."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"POST /api/kernels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"name\":")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(b"POST /api/kernels HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        try:
            resp = s.recv(100)
        except socket.timeout:
            resp = b""
        assert resp == b"" or resp.startswith(b"HTTP/1.1 4"), resp


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS ClientHello
    b"GET /api HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 100000 + b"\r\n\r\n",
    b"GET /api HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /api/kernels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    os.urandom(4096),
], ids=["garbage_line", "bare_get", "tls_client_hello", "header_100k", "http_9_9", "bad_chunk", "random_4k"])
def test_garbage_http(gateway, raw):
    """Garbage instead of HTTP: answered with a 4xx or closed promptly, never left hanging."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        try:
            s.sendall(raw)
            resp = s.recv(100)
        except ConnectionError:
            resp = b""
        except socket.timeout:
            pytest.fail("no response and no close within 5 s: the connection is left hanging")
    assert resp == b"" or resp.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), resp


BAD_UPGRADES = {
    "no_key_no_version": {"Upgrade": "websocket", "Connection": "Upgrade"},
    "version_99": {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                   "Sec-WebSocket-Version": "99"},
    "empty_key": {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "",
                  "Sec-WebSocket-Version": "13"},
    "plain_get": {},
}


@pytest.mark.parametrize("case", list(BAD_UPGRADES))
def test_bad_websocket_upgrades(gateway, kernel, case):
    path = f"/api/kernels/{kernel['id']}/channels"
    try:
        status, _, body = gateway.raw("GET", path, headers=BAD_UPGRADES[case])
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pytest.fail(f"GET {path} with {BAD_UPGRADES[case]}: connection closed without an HTTP response "
                    "(expected 400, or 426 for a wrong version)")
    assert 400 <= status < 500, (case, status, body[:200])


# --------------------------------------------------------------------------- WebSocket garbage


def _msg(channel="shell", msg_type="kernel_info_request", content=None):
    return make_message(msg_type, content or {}, uuid.uuid4().hex, channel)


def _legacy_frames():
    good = _msg()
    j = json.dumps({k: v for k, v in good.items() if k != "buffers"}).encode()
    header12 = struct.pack(">I", 2)
    return {
        "random_text": ("text", "hello, this is not json"),
        "invalid_json": ("text", '{"header": {'),
        "json_array": ("text", "[1, 2, 3]"),
        "json_null": ("text", "null"),
        "json_number": ("text", "12345"),
        "no_header": ("text", json.dumps({"content": {}, "channel": "shell"})),
        "header_is_string": ("text", json.dumps({**good, "header": "x"})),
        "header_no_msg_type": ("text", json.dumps({**good, "header": {"msg_id": "1"}})),
        "msg_type_number": ("text", json.dumps({**good, "header": {**good["header"], "msg_type": 5}})),
        "content_is_list": ("text", json.dumps({**good, "content": [1, 2]})),
        "parent_header_string": ("text", json.dumps({**good, "parent_header": "p"})),
        "metadata_null": ("text", json.dumps({**good, "metadata": None})),
        "unknown_channel": ("text", json.dumps({**good, "channel": "nonsense"})),
        "channel_hb": ("text", json.dumps({**good, "channel": "hb"})),
        "channel_number": ("text", json.dumps({**good, "channel": 7})),
        "buffers_garbage": ("text", json.dumps({**good, "buffers": "zzz"})),
        "execute_bad_content": ("text", json.dumps(_msg(msg_type="execute_request", content={"code": 5}))),
        "shutdown_on_shell": ("text", json.dumps(_msg(msg_type="nonexistent_request"))),
        "deep_nesting": ("text", '{"a":' * 50000 + "1" + "}" * 50000),
        "invalid_utf8_text": ("binary-as-text", b'{"header": "\xff\xfe"}'),
        "empty_text": ("text", ""),
        "bin_empty": ("binary", b""),
        "bin_short": ("binary", b"\x00\x00"),
        "bin_count_zero": ("binary", struct.pack(">I", 0) + j),
        "bin_count_max": ("binary", struct.pack(">II", 0xFFFFFFFF, 8) + j),
        "bin_count_big": ("binary", struct.pack(">II", 0x10000000, 8) + j),
        "bin_offsets_beyond": ("binary", struct.pack(">III", 2, 12, 0xFFFFFF00) + j),
        "bin_offset0_beyond": ("binary", struct.pack(">III", 2, 0x7FFFFFFF, 12) + j),
        "bin_offsets_decreasing": ("binary", struct.pack(">III", 2, 12 + len(j), 12) + j),
        "bin_offset_inside_table": ("binary", struct.pack(">III", 2, 4, 8) + j),
        "bin_truncated_table": ("binary", header12 + struct.pack(">I", 12)),
        "bin_json_invalid": ("binary", pack_legacy_binary({}, [b"x"])[:12] + b"{not json" + b"x"),
        "bin_not_json_part": ("binary", struct.pack(">II", 1, 8) + b"\xff\xfe\xfd"),
        "bin_good_json_bad_channel": ("binary", pack_legacy_binary({**good, "channel": "zzz"}, [b"b"])),
        "bin_random": ("binary", os.urandom(2048)),
    }


LEGACY_CASES = _legacy_frames()


@pytest.mark.parametrize("case", list(LEGACY_CASES))
def test_legacy_ws_garbage(gateway, kernel, case):
    kind, payload = LEGACY_CASES[case]
    with KernelWS(gateway, kernel["id"]) as ws:
        try:
            if kind == "text":
                ws.ws.send(payload)
            elif kind == "binary-as-text":
                ws.ws.send(payload, opcode=websocket.ABNF.OPCODE_TEXT)
            else:
                ws.ws.send_binary(payload)
            # Whatever the gateway does with it (ignore, error, close), this socket may keep working...
            if ws.ws.connected:
                try:
                    ws.execute("1+1", timeout=5)
                except (TimeoutError, ConnectionError, websocket.WebSocketException, OSError):
                    pass
        except (websocket.WebSocketException, OSError):
            pass
    # ...and the autouse check proves gateway + kernel are fine on a fresh socket.


def _v1_frames():
    h = make_message("kernel_info_request", {}, uuid.uuid4().hex)["header"]
    good = pack_v1("shell", h, {}, {}, {})
    n = struct.unpack_from("<Q", good)[0]
    offsets = list(struct.unpack_from(f"<{n}Q", good, 8))
    body = good[8 * (n + 1):]

    def frame(count, offs, rest=body):
        return struct.pack("<Q", count) + b"".join(struct.pack("<Q", o) for o in offs) + rest

    return {
        "empty": b"",
        "short": b"\x01\x02\x03",
        "count_zero": frame(0, []),
        "count_one": frame(1, [16]),
        "count_max": frame(2 ** 64 - 1, offsets),
        "count_2_32": frame(2 ** 32, offsets),
        "count_too_big_for_frame": frame(n + 1000, offsets),
        "offset_beyond": frame(n, offsets[:-1] + [2 ** 63]),
        "offset_first_beyond": frame(n, [2 ** 40] + offsets[1:]),
        "offsets_decreasing": frame(n, list(reversed(offsets))),
        "offset_into_table": frame(n, [0] + offsets[1:]),
        "truncated_after_table": good[: 8 * (n + 1) + 3],
        "truncated_table": good[: 8 * 3],
        "channel_unknown": pack_v1("nonsense", h, {}, {}, {}),
        "channel_iopub": pack_v1("iopub", h, {}, {}, {}),
        "channel_invalid_utf8": frame(n, offsets, b"\xff\xfe\xfd\xfc\xfb" + body[5:]),
        "header_not_json": pack_v1("shell", h, {}, {}, {})[: 8 * (n + 1) + 5] + b"{{{{" + body[9:],
        "header_not_object": struct.pack("<Q", 6) + b"".join(
            struct.pack("<Q", o) for o in (56, 61, 63, 65, 67, 69)) + b"shell[]{}{}{}",
        "header_missing_fields": pack_v1("shell", {"x": 1}, {}, {}, {}),
        "random": os.urandom(1024),
        "too_few_parts": struct.pack("<QQQQ", 3, 32, 37, 39) + b"shell{}",
    }


V1_CASES = _v1_frames()


@pytest.mark.parametrize("case", list(V1_CASES))
def test_v1_ws_garbage(gateway, kernel, case):
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        assert ws.v1
        try:
            ws.ws.send_binary(V1_CASES[case])
            if ws.ws.connected:
                try:
                    ws.execute("1+1", timeout=5)
                except (TimeoutError, ConnectionError, websocket.WebSocketException, OSError, ValueError):
                    pass
        except (websocket.WebSocketException, OSError):
            pass


def test_text_frame_on_v1_socket(gateway, kernel):
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        try:
            ws.ws.send(json.dumps(_msg()))
        except (websocket.WebSocketException, OSError):
            pass


def test_oversize_frame(gateway, kernel):
    """A frame above the gateway's message size limit (64 MiB) closes that socket, nothing more."""
    with KernelWS(gateway, kernel["id"]) as ws:
        big = b"x" * (64 * 1024 * 1024 + 1024)
        try:
            ws.ws.send_binary(big)
            ws.ws.settimeout(10)
            ws.ws.recv_data()
        except (websocket.WebSocketException, OSError, TimeoutError):
            pass
        del big


def _raw_upgrade(gateway, kernel):
    """A hand-made WebSocket handshake on a raw socket: returns (socket, response head bytes)."""
    import base64

    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /api/kernels/{kernel['id']}/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    s.sendall(req)
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    return s, resp


def test_frame_header_claims_huge_length(gateway, kernel):
    """A raw WebSocket frame header announcing 2^63-1 bytes, then the client disappears."""
    s, resp = _raw_upgrade(gateway, kernel)
    with s:
        assert resp.startswith(b"HTTP/1.1 101"), resp[:200]
        # FIN+binary, masked, 127 => 64-bit length
        s.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 2 ** 63 - 1) + os.urandom(4) + b"abc")
        try:
            s.settimeout(5)
            s.recv(100)
        except (socket.timeout, ConnectionError):
            pass


def test_unmasked_client_frame(gateway, kernel):
    s, resp = _raw_upgrade(gateway, kernel)
    with s:
        payload = json.dumps(_msg()).encode()
        s.sendall(bytes([0x81, 126]) + struct.pack(">H", len(payload)) + payload)  # unmasked text
        s.sendall(bytes([0x8F, 0x80]) + os.urandom(4))  # reserved opcode 0xF
        try:
            s.settimeout(5)
            s.recv(100)
        except (socket.timeout, ConnectionError):
            pass


def test_many_connections_opened_and_dropped(gateway, kernel):
    """Abruptly dropped sockets (no close frame) do not leak into failures."""
    for _ in range(20):
        ws = KernelWS(gateway, kernel["id"])
        ws.ws.sock.close()
    # the autouse health check does the real verification


@pytest.mark.no_health_check
def test_gateway_survived_everything(gateway, kernel):
    assert gateway.is_running()
    r = gateway.get(f"api/kernels/{kernel['id']}")
    assert r.status_code == 200
    assert_kernel_works(gateway, kernel["id"])
