"""A WebSocket client that stops reading is disconnected once its queue overflows, and
nothing is lost for a client that comes back with its session id."""

from __future__ import annotations

import uuid

import websocket

from conftest import Gateway, KernelWS, wait_until

LINES = 1200
WIDTH = 10_000  # ~12 MB of output in all, far beyond the 256 KiB queue below


def _lines(messages: list[dict], parent: str) -> list[int]:
    out: list[int] = []
    for m in messages:
        if m.get("header", {}).get("msg_type") == "stream" and m.get("parent_header", {}).get("msg_id") == parent:
            for line in m["content"]["text"].splitlines():
                if line:
                    out.append(int(line[:5]))
    return out


def _metric(gw, name: str) -> float:
    for line in gw.request("GET", "metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_stalled_client_is_cut_and_its_session_replayed(tmp_path):
    gw = Gateway(tmp_path, args=["--max-client-queue-bytes", "262144"]).start()
    try:
        kid = gw.request("POST", "api/kernels", json={"name": "python3"}, timeout=90).json()["id"]
        session = uuid.uuid4().hex
        stalled = KernelWS(gw, kid, session_id=session)
        # One stream message per line (flush), so the queue bound is what cuts it off.
        parent = stalled.send_execute(f"import sys\nfor i in range({LINES}): print(f'{{i:05d}}' + 'x' * {WIDTH}); sys.stdout.flush()")
        # The upgrade answers before the relay registers the client: see it counted first.
        wait_until(lambda: gw.request("GET", f"api/kernels/{kid}").json()["connections"] == 1, 30,
                   what="the client to be registered")
        # It never reads: the gateway must let it go instead of queueing 12 MB for it.
        wait_until(lambda: "ganymede_slow_clients_disconnected 1" in gw.request("GET", "metrics").text, 60,
                   what="the stalled client to be cut for falling behind")
        assert gw.request("GET", f"api/kernels/{kid}").json()["connections"] == 0
        metrics = gw.request("GET", "metrics").text
        assert gw.proc.poll() is None
        # What the stalled socket did get (its TCP buffers and what was already queued), then the close.
        first: list[dict] = []
        try:
            while True:
                first.append(stalled.recv(timeout=10))
        except (websocket.WebSocketException, TimeoutError, OSError, ConnectionError):
            pass
        stalled.close()
        got = _lines(first, parent)

        # Coming back with the same session id replays the rest, in order, exactly once.
        ours = [m for m in first if m.get("parent_header", {}).get("msg_id") == parent]
        def finished(kept):
            msgs = ours + kept
            replies = [m for m in msgs if m["header"]["msg_type"] == "execute_reply"]
            idle = [m for m in msgs if m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"]
            return bool(replies) and bool(idle)
        # A reconnecting client that reads slower than the kernel prints while it drains the
        # replay is itself cut again (the live output queued behind the replay passes the
        # bound): that is the same rule, and it must lose nothing either. Come back as often
        # as it takes; every cut must be one the gateway counted.
        rest: list[dict] = []
        reconnects = 0
        while not finished(rest):
            assert reconnects < 30, f"still not finished after {reconnects} reconnects"
            reconnects += 1
            back = KernelWS(gw, kid, session_id=session)
            try:
                back.collect(lambda m: m.get("parent_header", {}).get("msg_id") == parent,
                             finished, timeout=120,
                             what="the rest of the execution", into=rest)
            except (websocket.WebSocketException, OSError, ConnectionError):
                cuts = _metric(gw, "ganymede_slow_clients_disconnected")
                assert cuts == 1 + reconnects, f"the socket closed but the gateway counted {cuts} cuts after {reconnects} reconnects"
            finally:
                back.close()
        everything = ours + rest
        got += _lines(rest, parent)
        assert got == list(range(LINES)), f"{len(got)} lines, first gap near {next((i for i, v in enumerate(got) if v != i), None)}"
        types = [m["header"]["msg_type"] for m in everything]
        assert types.count("execute_reply") == 1, types
        idles = [m for m in everything if m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"]
        assert len(idles) == 1, f"each message exactly once: {types}"
        buffered = [l for l in metrics.splitlines() if l.startswith("ganymede_replay_buffered_messages ")]
        assert buffered and float(buffered[0].split()[1]) > 0, "the cut client's session was being kept for replay"
    finally:
        gw.stop()
