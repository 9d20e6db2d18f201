"""Kernel channels WebSocket: legacy JSON, legacy binary, v1 framing, fan-out, stdin."""

from __future__ import annotations

import uuid

import pytest
import websocket

from conftest import (
    V1_PROTOCOL,
    KernelWS,
    execute_ok,
    unpack_legacy_binary,
    wait_until,
    unpack_v1,
)

TOP_LEVEL_KEYS = {"header", "parent_header", "metadata", "content", "buffers", "channel", "msg_id", "msg_type"}
CHANNELS = {"shell", "iopub", "stdin", "control"}

# Registers comm target 'echo' in the kernel: each comm_msg is answered with a comm_msg carrying the
# received buffers reversed, and their count in data.
ECHO_COMM_SETUP = """
import comm as _comm_pkg
def _echo_open(c, open_msg):
    def _on_msg(m):
        bufs = [bytes(b)[::-1] for b in (m.get('buffers') or [])]
        c.send(data={'n': len(bufs), 'got': m['content']['data']}, buffers=bufs)
    c.on_msg(_on_msg)
_comm_pkg.get_comm_manager().register_target('echo', _echo_open)
"""

OPEN_COMM_WITH_BUFFER = (
    "import comm as _comm_pkg\n"
    "_c = _comm_pkg.create_comm(target_name='t', data={'hello': 1}, buffers=[b'\\x00\\x01\\x02'])\n"
)


# --------------------------------------------------------------------------- legacy JSON


def test_legacy_execute_1_plus_1(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        assert ws.protocol is None, f"no subprotocol offered but {ws.protocol!r} selected"
        res = ws.execute("1+1")
        assert res.result == "2", res.summary()
        assert res.reply["content"]["status"] == "ok"
        assert res.reply["channel"] == "shell"
        for m in res.messages:
            assert m["_frame"] == "text", f"{m['header']['msg_type']} came as {m['_frame']}"
            missing = TOP_LEVEL_KEYS - set(m)
            assert not missing, f"{m['header']['msg_type']} lacks top-level {missing}"
            assert m["msg_id"] == m["header"]["msg_id"]
            assert m["msg_type"] == m["header"]["msg_type"]
            assert m["channel"] in CHANNELS
            assert m["buffers"] == []
        types = [(m["channel"], m["header"]["msg_type"]) for m in res.messages]
        assert ("iopub", "execute_input") in types
        assert ("iopub", "execute_result") in types
        assert ("iopub", "status") in types


def test_kernel_info_on_shell_and_control(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        for channel in ("shell", "control"):
            mid = ws.send("kernel_info_request", {}, channel=channel)
            reply = ws.wait_for_reply(mid, timeout=30)
            assert reply["header"]["msg_type"] == "kernel_info_reply"
            assert reply["channel"] == channel
            assert reply["content"]["language_info"]["name"] == "python"
            assert reply["content"]["protocol_version"].startswith("5.")


def test_missing_channel_defaults_to_shell(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        from conftest import make_message
        import json

        msg = make_message("kernel_info_request", {}, ws.session)
        del msg["channel"]
        ws.ws.send(json.dumps(msg))
        reply = ws.wait_for_reply(msg["header"]["msg_id"], timeout=30)
        assert reply["header"]["msg_type"] == "kernel_info_reply"


def test_execute_request_without_date_header(gateway, kernel):
    """EG's own client sends headers without `date`, version 5.0 and an empty session."""
    import json

    with KernelWS(gateway, kernel["id"]) as ws:
        mid = uuid.uuid4().hex
        ws.ws.send(json.dumps({
            "header": {"username": "", "version": "5.0", "session": "", "msg_id": mid, "msg_type": "execute_request"},
            "parent_header": {}, "channel": "shell",
            "content": {"code": "6*7", "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False},
            "metadata": {}, "buffers": {},
        }))
        res = ws.collect_execution(mid, timeout=30)
        assert res.result == "42", res.summary()


def test_unknown_kernel_ws_404(gateway):
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(gateway.ws_url(f"api/kernels/{uuid.uuid4()}/channels"), timeout=10)
    assert ei.value.status_code == 404


def test_session_id_query(gateway, kernel):
    with KernelWS(gateway, kernel["id"], session_id=uuid.uuid4().hex) as ws:
        assert execute_ok(ws, "1+1").result == "2"


# --------------------------------------------------------------------------- subprotocols


def test_v1_selected_only_when_offered(gateway, kernel):
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        assert ws.protocol == V1_PROTOCOL
        assert ws.ws.getheaders().get("sec-websocket-protocol") == V1_PROTOCOL
    with KernelWS(gateway, kernel["id"], subprotocols=["foo.example", V1_PROTOCOL]) as ws:
        assert ws.protocol == V1_PROTOCOL
    with KernelWS(gateway, kernel["id"]) as ws:
        assert ws.protocol is None
        assert "sec-websocket-protocol" not in ws.ws.getheaders()
    # An offer without v1 must not get v1 (legacy, or a rejected upgrade, are both acceptable).
    try:
        ws = KernelWS(gateway, kernel["id"], subprotocols=["foo.example"])
    except websocket.WebSocketException:
        return
    with ws:
        assert ws.protocol in (None, "foo.example") and ws.protocol != V1_PROTOCOL
        if ws.protocol is None:
            assert execute_ok(ws, "1+1").result == "2"


def test_v1_execute_round_trip(gateway, kernel):
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        assert ws.v1
        res = ws.execute("1+1")
        assert res.result == "2", res.summary()
        assert res.reply["channel"] == "shell"
        for m in res.messages:
            assert m["_frame"] == "v1"
            assert m["channel"] in CHANNELS
            _, offsets = unpack_v1(m["_raw"])
            assert offsets[0] == 8 * (len(offsets) + 1)
            assert offsets[-1] == len(m["_raw"])
        # every frame on a v1 socket is binary
        assert all(op == websocket.ABNF.OPCODE_BINARY for op, _ in ws.raw_frames)


# --------------------------------------------------------------------------- buffers, kernel -> client


def _comm_open_with_buffer(ws: KernelWS) -> dict:
    mid = ws.send_execute(OPEN_COMM_WITH_BUFFER)
    res = ws.collect_execution(mid, timeout=60)
    assert res.reply["content"]["status"] == "ok", res.error
    opens = res.of_type("comm_open")
    assert opens, f"no comm_open received: {res.summary()}"
    return opens[0]


def test_legacy_binary_frame_from_kernel(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        m = _comm_open_with_buffer(ws)
        assert m["_frame"] == "binary", "a message with buffers must use a legacy binary frame"
        raw = m["_raw"]
        msg, offsets = unpack_legacy_binary(raw)
        assert len(offsets) == 2 and offsets[0] == 12, offsets
        assert raw[offsets[1]:] == b"\x00\x01\x02"
        assert msg["buffers"] == [b"\x00\x01\x02"]
        assert msg["channel"] == "iopub"
        assert msg["header"]["msg_type"] == "comm_open"
        assert msg["content"]["target_name"] == "t"
        assert msg["content"]["data"] == {"hello": 1}
        for key in ("header", "parent_header", "metadata", "content", "channel"):
            assert key in msg


def test_v1_frame_with_buffer_from_kernel(gateway, kernel):
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        m = _comm_open_with_buffer(ws)
        assert m["_frame"] == "v1"
        msg, offsets = unpack_v1(m["_raw"])
        assert len(offsets) == 7, offsets  # channel + 4 JSON parts + 1 buffer, plus the end offset
        assert msg["channel"] == "iopub"
        assert msg["header"]["msg_type"] == "comm_open"
        assert msg["buffers"] == [b"\x00\x01\x02"]
        assert msg["content"]["target_name"] == "t"


# --------------------------------------------------------------------------- buffers, client -> kernel


@pytest.mark.parametrize("subprotocols", [None, [V1_PROTOCOL]], ids=["legacy", "v1"])
def test_client_buffers_reach_kernel(gateway, kernel, subprotocols):
    payloads = [b"\x00\x01\x02\xff", bytes(range(256)) * 40, b""]
    with KernelWS(gateway, kernel["id"], subprotocols=subprotocols) as ws:
        execute_ok(ws, ECHO_COMM_SETUP)
        comm_id = uuid.uuid4().hex
        ws.send("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
        mid = ws.send("comm_msg", {"comm_id": comm_id, "data": {"k": "v"}}, buffers=payloads)
        got = ws.collect(
            lambda m: m["parent_header"].get("msg_id") == mid and m["header"]["msg_type"] == "comm_msg",
            lambda kept: bool(kept), timeout=30, what="echoed comm_msg")[0]
        assert got["content"]["data"] == {"n": 3, "got": {"k": "v"}}
        assert got["buffers"] == [p[::-1] for p in payloads]
        ws.send("comm_close", {"comm_id": comm_id, "data": {}})


def test_execute_request_with_buffer_v1(gateway, kernel):
    """An execute_request carrying a buffer (client -> kernel) is not rejected."""
    with KernelWS(gateway, kernel["id"], subprotocols=[V1_PROTOCOL]) as ws:
        from conftest import make_message

        msg = make_message("execute_request", {"code": "2+3", "silent": False, "store_history": False,
                                               "user_expressions": {}, "allow_stdin": False}, ws.session)
        ws.send_msg(msg, buffers=[b"\x01\x02\x03"])
        res = ws.collect_execution(msg["header"]["msg_id"], timeout=30)
        assert res.result == "5", res.summary()


# --------------------------------------------------------------------------- fan-out and stdin


def test_two_clients_share_iopub_not_replies(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as a, KernelWS(gateway, kernel["id"]) as b:
        mid = a.send_execute("print('fan-out'); 40+2")
        res_a = a.collect_execution(mid, timeout=60)
        assert res_a.result == "42" and "fan-out" in res_a.stdout
        # b sees the iopub side of a's execution
        res_b = b.collect_execution(mid, timeout=30, need_reply=False)
        assert "fan-out" in res_b.stdout
        assert res_b.result == "42"
        # Barrier: b's own round trip; anything misrouted from a's execution arrived before its reply.
        res_b_own = b.execute("'b'")
        assert res_b_own.result == "'b'"
        stray = [m for m in res_b.messages + b.unrelated
                 if m["parent_header"].get("msg_id") == mid and m["channel"] in ("shell", "stdin", "control")]
        assert not stray, f"client b got a's {[m['header']['msg_type'] for m in stray]}"
        # and a never saw b's reply
        a.execute("None")
        assert not [m for m in a.unrelated if m["parent_header"].get("msg_id") == res_b_own.msg_id
                    and m["channel"] == "shell"]


def test_stdin_input_request(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as a, KernelWS(gateway, kernel["id"]) as b:
        prompts = []

        def answer(m):
            prompts.append(m["content"]["prompt"])
            return "typed-by-a"

        res = a.execute("v = input('your name? '); print('got', v)", allow_stdin=True, on_input=answer, timeout=60)
        assert prompts == ["your name? "]
        assert res.reply["content"]["status"] == "ok", res.error
        assert "got typed-by-a" in res.stdout
        b.execute("None")  # barrier
        stray = [m for m in b.unrelated if m["channel"] == "stdin"]
        assert not stray, "the input_request went to a client that did not ask"


def test_offline_buffer_replay_same_session_id(gateway, kernel, tmp_path):
    """Output produced while no socket is connected is replayed when the same session_id reconnects
    (jupyter_server/EG behaviour that jupyter_server's gateway client relies on when it reconnects)."""
    sid = uuid.uuid4().hex
    marker = tmp_path / "printed"
    ws = KernelWS(gateway, kernel["id"], session_id=sid)
    execute_ok(ws, "import time, pathlib")
    mid = ws.send_execute(
        f"time.sleep(0.5); print('while-away', flush=True); time.sleep(0.2); pathlib.Path({str(marker)!r}).touch()")
    ws.collect(lambda m: m["parent_header"].get("msg_id") == mid and m["header"]["msg_type"] == "execute_input",
               lambda kept: bool(kept), timeout=30, what="execute_input")
    ws.close()
    # Reconnect only once the kernel has printed: the output can then only come from the gateway's buffer.
    wait_until(marker.exists, 30, what="the cell to print")
    ws2 = KernelWS(gateway, kernel["id"], session_id=sid)
    try:
        res = ws2.collect_execution(mid, timeout=15, need_reply=False)
        assert "while-away" in res.stdout, res.summary()
    finally:
        ws2.close()


# --------------------------------------------------------------------------- sizes, fragments, pings


def test_large_message_client_to_kernel(gateway, kernel):
    n = 3_000_000
    with KernelWS(gateway, kernel["id"]) as ws:
        res = ws.execute(f"len('{'x' * n}')", timeout=60)
        assert res.result == str(n), res.summary()


def test_large_message_kernel_to_client(gateway, kernel):
    n = 4_000_000
    with KernelWS(gateway, kernel["id"]) as ws:
        res = ws.execute(f"from IPython.display import display; display({{'text/plain': 'z' * {n}}}, raw=True)",
                         timeout=60)
        shown = res.of_type("display_data")
        assert shown, res.summary()
        assert len(shown[0]["content"]["data"]["text/plain"]) == n


def test_fragmented_client_message(gateway, kernel):
    import json

    from conftest import make_message

    with KernelWS(gateway, kernel["id"]) as ws:
        msg = make_message("execute_request", {"code": "11*11", "silent": False, "store_history": False,
                                               "user_expressions": {}, "allow_stdin": False}, ws.session)
        data = json.dumps(msg).encode()
        a, b, c = data[:10], data[10:40], data[40:]
        ws.ws.send_frame(websocket.ABNF.create_frame(a, websocket.ABNF.OPCODE_TEXT, fin=0))
        ws.ws.send_frame(websocket.ABNF.create_frame(b, websocket.ABNF.OPCODE_CONT, fin=0))
        ws.ws.ping(b"between-fragments")  # control frames may be interleaved (RFC 6455 5.4)
        ws.ws.send_frame(websocket.ABNF.create_frame(c, websocket.ABNF.OPCODE_CONT, fin=1))
        res = ws.collect_execution(msg["header"]["msg_id"], timeout=30)
        assert res.result == "121", res.summary()


def test_server_pings(gateway_factory):
    """--ws-ping-interval 1: the gateway pings an idle channels socket."""
    import time

    from conftest import KernelTracker

    gw = gateway_factory("ping", args=["--ws-ping-interval", "1"])
    t = KernelTracker(gw)
    try:
        kid = t.create()["id"]
        with KernelWS(gw, kid) as ws:
            deadline = time.monotonic() + 10
            while True:
                left = deadline - time.monotonic()
                assert left > 0, "no ping within 10 s"
                ws.ws.settimeout(left)
                try:
                    op, _ = ws.ws.recv_data(control_frame=True)
                except websocket.WebSocketTimeoutException:
                    continue
                if op == websocket.ABNF.OPCODE_PING:
                    break
            # the connection is still usable after answering pings
            assert execute_ok(ws, "1+1").result == "2"
    finally:
        t.cleanup()


# --------------------------------------------------------------------------- kernel death


def test_kernel_death_pushes_restarting_and_recovers(gateway, kernels):
    """A kernel that dies is restarted automatically; connected clients are told with status 'restarting'."""
    kid = kernels.create()["id"]
    with KernelWS(gateway, kid) as ws:
        execute_ok(ws, "state = 1", timeout=90)
        ws.send_execute("import os; os._exit(1)")
        got = ws.collect(
            lambda m: m["channel"] == "iopub" and m["header"]["msg_type"] == "status"
            and m["content"].get("execution_state") in ("restarting", "dead"),
            lambda kept: bool(kept), timeout=45, what="status restarting")
        assert got[0]["content"]["execution_state"] == "restarting"
    assert gateway.get(f"api/kernels/{kid}").status_code == 200
    with KernelWS(gateway, kid) as ws:
        res = ws.execute("state", timeout=90)
        assert res.error is not None and res.error["ename"] == "NameError", res.summary()
        assert execute_ok(ws, "1+1").result == "2"
