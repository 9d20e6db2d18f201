"""Writes the seed corpus in Fuzz/corpus/ (committed; re-run only to regenerate it).

Seeds are well-formed inputs of each kind, plus the hostile shapes the peers were crashed with
(offset tables pointing past the frame, deep nesting, huge counts), so the fuzzer starts from
inputs that reach deep into each decoder."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "corpus"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import pack_legacy_binary, pack_v1  # noqa: E402

HEADER = {"msg_id": "m1", "msg_type": "execute_request", "session": "s1", "username": "u", "date": "2026-01-01T00:00:00Z",
          "version": "5.3"}
CONTENT = {"code": "print(1)", "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False}


def write(kind: str, name: str, data: bytes) -> None:
    d = ROOT / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def websocket() -> None:
    msg = {"header": HEADER, "parent_header": {}, "metadata": {}, "content": CONTENT, "channel": "shell"}
    write("websocket", "legacy-text", b"\x00" + json.dumps(msg).encode())
    write("websocket", "legacy-text-unicode", b"\x00" + json.dumps(dict(msg, content={"code": "print('\u00e9\U0001F600')"}),
                                                                    ensure_ascii=False).encode())
    write("websocket", "legacy-binary", b"\x01" + pack_legacy_binary(dict(msg, buffers=[]), [b"abc", b"\x00" * 16]))
    write("websocket", "v1", b"\x02" + pack_v1("shell", HEADER, {}, {}, CONTENT, [b"xyz"]))
    write("websocket", "v1-comm", b"\x02" + pack_v1("shell", dict(HEADER, msg_type="comm_msg"), {}, {},
                                                     {"comm_id": "c", "data": {}}, []))
    # Offset tables that point outside the frame, and a count that claims 2^60 parts.
    write("websocket", "v1-bad-offsets", b"\x02" + struct.pack("<QQQ", 2, 24, 1 << 40) + b"shell")
    write("websocket", "v1-huge-count", b"\x02" + struct.pack("<Q", 1 << 60) + b"\x00" * 16)
    write("websocket", "legacy-binary-bad-offsets", b"\x01" + struct.pack(">III", 2, 12, 0xFFFFFFF0) + b"{}")
    write("websocket", "deep-nesting", b"\x00" + b'{"header":' + b"[" * 600 + b"]" * 600 + b"}")


def wire() -> None:
    parts = [json.dumps(HEADER).encode(), b"{}", b"{}", json.dumps(CONTENT).encode()]
    signature = hmac.new(b"fuzz-key", b"".join(parts), hashlib.sha256).hexdigest().encode()
    # Selector bit 0: signed with "fuzz-key"; bit 1: the delimiter is prepended. Frames split at 0x00.
    write("wire", "unsigned", b"\x02" + b"\x00".join([b"", *parts]))
    write("wire", "signed", b"\x03" + b"\x00".join([signature, *parts]))
    write("wire", "signed-with-buffers", b"\x03" + b"\x00".join([signature, *parts, b"buf1", b"buf2"]))
    write("wire", "identities", b"\x00" + b"\x00".join([b"kernel.1.status", b"<IDS|MSG>", b"", *parts]))
    write("wire", "bad-signature", b"\x03" + b"\x00".join([b"0" * 64, *parts]))
    write("wire", "too-few", b"\x02" + b"\x00".join([b"", parts[0]]))


def launcher() -> None:
    from Cryptodome.Cipher import AES
    key = bytes(range(32))  # FuzzTargets.secret
    info = {"shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003, "control_port": 5004, "hb_port": 5005,
            "ip": "0.0.0.0", "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "",
            "pid": 42, "pgid": 42, "comm_port": 5006, "kernel_id": "fuzz-kernel"}
    nonce = bytes(12)
    c = AES.new(key, AES.MODE_GCM, nonce=nonce)
    c.update(b"ganymede-launcher-v2:fuzz-kernel")
    sealed, tag = c.encrypt_and_digest(json.dumps(info).encode())
    v2 = {"version": 2, "kernel_id": "fuzz-kernel", "nonce": base64.b64encode(nonce).decode(),
          "conn_info": base64.b64encode(sealed + tag).decode()}
    write("launcher", "v2-valid", base64.b64encode(json.dumps(v2).encode()))
    write("launcher", "v2-unknown-kernel", base64.b64encode(json.dumps(dict(v2, kernel_id="other")).encode()))
    # A v1 envelope: its RSA-wrapped key cannot be for the fuzzer's (random) key pair, so it
    # exercises parsing and the RSA decrypt failure path.
    v1 = {"version": 1, "key": base64.b64encode(bytes(256)).decode(), "conn_info": base64.b64encode(bytes(32)).decode()}
    write("launcher", "v1-shape", base64.b64encode(json.dumps(v1).encode()))
    write("launcher", "legacy-v0", base64.b64encode(json.dumps(info).encode()))
    c = AES.new(key, AES.MODE_GCM, nonce=nonce)
    c.update(b"ganymede-comm-v2:fuzz-kernel")
    body, tag = c.encrypt_and_digest(b'{"signum":2,"ts":1}')
    write("launcher", "comm-v2", json.dumps({"version": 2, "nonce": base64.b64encode(nonce).decode(),
                                              "sealed": base64.b64encode(body + tag).decode()}).encode())
    write("launcher", "comm-v1", b'{"signum": 9}')


def rest_body() -> None:
    write("rest-body", "start-kernel", json.dumps({"name": "python3", "env": {"KERNEL_USERNAME": "alice",
                                                                            "KERNEL_RESOURCE_PROFILE": "small"}}).encode())
    write("rest-body", "session", json.dumps({"path": "a.ipynb", "type": "notebook", "name": "a",
                                             "kernel": {"name": "python3", "id": None}}).encode())
    write("rest-body", "trailing-comma", b'{"name": "python3",}')
    write("rest-body", "escapes", b'{"name": "\\ud83d\\ude00\\u0000\\n", "n": -1.5e+300}')
    write("rest-body", "deep", b'{"a":' + b"[" * 700 + b"]" * 700 + b"}")
    write("rest-body", "bad-utf8", b'{"name": "\xff\xfe"}')
    write("rest-body", "empty", b"   \n")


if __name__ == "__main__":
    websocket()
    wire()
    launcher()
    rest_body()
    print(f"seeds written under {ROOT}")
