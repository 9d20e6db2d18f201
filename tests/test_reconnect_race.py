"""A client that closes its WebSocket while its kernel is printing, and comes straight back with
the same session id, many times over: every line arrives once, in order. (The chaos run found
messages lost here: ones handed to the closing socket's writer but never written, and a replay
handed to a socket that closed within a millisecond.)

The client closes as RFC 6455 has it: it sends its close frame and reads on until the gateway's
close frame, keeping what arrived in between, so anything the gateway wrote counts as received;
what it did not write must come back in the next replay."""

from __future__ import annotations

import json
import random
import time
import uuid

import websocket

from conftest import Gateway, KernelWS

LINES = 3000


AFTER_CLOSE = [0]


def _close_and_drain(ws: websocket.WebSocket) -> list[dict]:
    """Our close frame, then every data frame up to the gateway's close frame, and any that
    follow it before the connection ends. (hummingbird-websocket answers a close frame from its
    own actor, so under backpressure a frame the relay was already writing can land after the
    close reply; a strict client drops those. Reading them here checks what the gateway itself
    guarantees: each message is written once or kept for replay, never neither.)"""
    got = []
    ws.send_close()
    ws.settimeout(10)
    closed = False
    while True:
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, OSError):
            break
        except websocket.WebSocketTimeoutException:
            assert closed, "the gateway never answered the close frame"
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            closed = True
            ws.settimeout(1)
            continue
        if opcode == websocket.ABNF.OPCODE_TEXT:
            got.append(json.loads(frame.data))
            if closed:
                AFTER_CLOSE[0] += 1
    ws.shutdown()
    return got


def test_rapid_close_and_reconnect_loses_nothing(tmp_path):
    gw = Gateway(tmp_path).start()
    rng = random.Random(7)
    try:
        kid = gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90).json()["id"]
        session = uuid.uuid4().hex
        first = KernelWS(gw, kid, session_id=session)
        parent = first.send_execute(
            f"import sys, time\nfor i in range({LINES}):\n    print(f'{{i:05d}}'); sys.stdout.flush()\n"
            f"    if i % 50 == 0: time.sleep(0.01)")
        url = gw.ws_url(f"api/kernels/{kid}/channels") + f"?session_id={session}"
        ws = first.ws
        messages: list[dict] = []

        def finished(msgs):
            # The reply (shell) and the idle status (iopub) come on different sockets, either first.
            ours = [m for m in msgs if m.get("parent_header", {}).get("msg_id") == parent]
            return any(m["header"]["msg_type"] == "execute_reply" for m in ours) and any(
                m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in ours)

        cycles = 0
        done = False
        while not done:
            # Read a few messages (sometimes none), then close mid-stream and come back at once.
            for _ in range(rng.randint(0, 30)):
                ws.settimeout(30)
                opcode, data = ws.recv_data()
                messages.append(json.loads(data))
                if finished(messages):
                    done = True
                    break
            if done:
                break
            messages += _close_and_drain(ws)
            done = finished(messages)
            cycles += 1
            ws = websocket.create_connection(url, timeout=30)
        ws.close()
        print(f"{cycles} reconnects; {AFTER_CLOSE[0]} message(s) arrived after the gateway's close frame")
        assert cycles >= 20, f"only {cycles} close/reconnect cycles: the test did not exercise the race"
        ours = [m for m in messages if m.get("parent_header", {}).get("msg_id") == parent]
        lines = [int(l) for m in ours if m["header"]["msg_type"] == "stream" for l in m["content"]["text"].splitlines() if l]
        assert lines == list(range(LINES)), (
            f"{len(lines)} lines over {cycles} reconnects; first problem near "
            f"{next((i for i, v in enumerate(lines) if v != i), len(lines))}")
        ids = [m["header"]["msg_id"] for m in ours]
        assert len(ids) == len(set(ids)), "a message arrived twice"
        assert [m["header"]["msg_type"] for m in ours].count("execute_reply") == 1
    finally:
        gw.stop()
