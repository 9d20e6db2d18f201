"""A minimal Jupyter channels WebSocket client (legacy JSON and v1.kernel.websocket.jupyter.org) for the bench.

Two ACK behaviours: `quickack=True` sets TCP_QUICKACK before every read so the client acknowledges at once
(shows the gateway's own processing); `quickack=False` is an ordinary client whose kernel delays ACKs, as
browsers and jupyter_server do (this exposes Nagle/delayed-ACK stalls on the gateway's side).
"""
from __future__ import annotations

import datetime
import json
import socket
import uuid

import websocket

V1 = "v1.kernel.websocket.jupyter.org"


def header(msg_type: str, session: str) -> dict:
    return {"msg_id": uuid.uuid4().hex, "username": "bench", "session": session,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "msg_type": msg_type,
            "version": "5.3"}


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    """jupyter_server's serialize_msg_to_ws_v1: u64 LE count, u64 LE offsets, channel, parts."""
    ch = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(ch))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    out = [len(offsets).to_bytes(8, "little")] + [o.to_bytes(8, "little") for o in offsets] + [ch] + parts
    return b"".join(out)


def decode_v1(data: bytes) -> tuple[str, list[bytes]]:
    n = int.from_bytes(data[:8], "little")
    offs = [int.from_bytes(data[8 * (i + 1):8 * (i + 2)], "little") for i in range(n)]
    channel = data[offs[0]:offs[1]].decode()
    parts = [data[offs[i]:offs[i + 1]] for i in range(1, n - 1)]
    parts.append(data[offs[-1]:])
    return channel, parts


class Msg:
    """A received message: channel, type, parent id, and content parsed on demand."""

    __slots__ = ("channel", "msg_type", "parent_id", "_content", "_raw_content", "size")

    def __init__(self, channel, msg_type, parent_id, content=None, raw_content=None, size=0):
        self.channel, self.msg_type, self.parent_id = channel, msg_type, parent_id
        self._content, self._raw_content, self.size = content, raw_content, size

    @property
    def content(self) -> dict:
        if self._content is None:
            self._content = json.loads(self._raw_content)
        return self._content


class KernelWS:
    def __init__(self, url: str, protocol: str = "legacy", quickack: bool = False, timeout: float = 120):
        # The header's session must be the WebSocket's session_id: jupyverse routes replies by it.
        if "session_id=" in url:
            self.session = url.split("session_id=", 1)[1].split("&", 1)[0]
        else:
            self.session = uuid.uuid4().hex
            url = f"{url}{'&' if '?' in url else '?'}session_id={self.session}"
        subprotocols = [V1] if protocol == "v1" else None
        # skip_utf8_validation: websocket-client's pure-Python UTF-8 check costs ~1 ms per 100 KB and would make the
        # client, not the gateway, the bottleneck of the display bursts (the direct client does no such check).
        self.ws = websocket.create_connection(url, timeout=timeout, subprotocols=subprotocols,
                                              enable_multithread=True, skip_utf8_validation=True)
        self.protocol = "v1" if (self.ws.getsubprotocol() == V1) else "legacy"
        self.requested = protocol
        self.quickack = quickack

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        h = header(msg_type, self.session)
        if self.protocol == "v1":
            parts = [json.dumps(h).encode(), b"{}", b"{}", json.dumps(content).encode()]
            self.ws.send_binary(encode_v1(channel, parts))
        else:
            self.ws.send(json.dumps({"header": h, "parent_header": {}, "metadata": {}, "content": content,
                                     "channel": channel, "buffers": []}))
        return h["msg_id"]

    def execute(self, code: str) -> str:
        return self.send("shell", "execute_request", {"code": code, "silent": False, "store_history": True,
                                                      "user_expressions": {}, "allow_stdin": False,
                                                      "stop_on_error": True})

    def recv(self) -> Msg:
        if self.quickack:
            self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = self.ws.recv()
        if isinstance(data, str):
            m = json.loads(data)
            return Msg(m.get("channel"), m["header"]["msg_type"], (m.get("parent_header") or {}).get("msg_id"),
                       content=m["content"], size=len(data))
        if self.protocol == "v1":
            channel, parts = decode_v1(data)
            h = json.loads(parts[0])
            p = json.loads(parts[1]) if parts[1] else {}
            return Msg(channel, h["msg_type"], p.get("msg_id"), raw_content=parts[3], size=len(data))
        # Legacy binary frame (message with buffers): u32 BE count, offsets; the first part is the JSON.
        n = int.from_bytes(data[:4], "big")
        offs = [int.from_bytes(data[4 * (i + 1):4 * (i + 2)], "big") for i in range(n)]
        m = json.loads(data[offs[0]:offs[1] if n > 1 else len(data)])
        return Msg(m.get("channel"), m["header"]["msg_type"], (m.get("parent_header") or {}).get("msg_id"),
                   content=m["content"], size=len(data))

    def settimeout(self, t: float) -> None:
        self.ws.settimeout(t)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass

    def wait_idle(self, msg_id: str):
        """Read until iopub status idle for msg_id; returns the time the execute_reply arrived (or None)."""
        import time
        t_reply = t_idle = None
        while t_reply is None or t_idle is None:
            m = self.recv()
            if m.parent_id != msg_id:
                continue
            if m.msg_type.endswith("_reply"):
                t_reply = time.perf_counter()
            elif m.msg_type == "status" and m.content.get("execution_state") == "idle":
                t_idle = time.perf_counter()
        return t_reply, t_idle
