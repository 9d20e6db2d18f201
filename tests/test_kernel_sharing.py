"""Explicit kernel sharing (issue #11, "shared kernels (explicit grant)"): the owner grants named
users the use of a kernel with `PUT /api/kernels/{id}/shares`, and takes it back; everyone
else still gets 404. Real gateway binary, per-user tokens, real kernels."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests
import websocket

from conftest import Gateway, KernelWS, assert_json_error, execute_ok

TOKENS = {u: f"{u}-" + u[0] * 40 for u in ("alice", "bob", "dave", "carol")}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharing")
    cfg = d / "ganymede.yaml"
    users = "".join(f"  {u}: {{token_sha256: {hashlib.sha256(t.encode()).hexdigest()}}}\n" for u, t in TOKENS.items())
    cfg.write_text(f"users:\n{users}admins: [carol]\n")
    g = Gateway(d / "gw", args=["--config", str(cfg)]).start()
    yield g
    g.stop()


def req(gw, method, path, user, **kw):
    return requests.request(method, gw.url(path), headers={"Authorization": f"token {TOKENS[user]}"}, timeout=90, **kw)


@pytest.fixture
def kernel(gw):
    r = req(gw, "POST", "api/kernels", "alice", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    yield kid
    req(gw, "DELETE", f"api/kernels/{kid}", "carol")


def share(gw, kid, users, as_user="alice"):
    return req(gw, "PUT", f"api/kernels/{kid}/shares", as_user, json={"users": users})


def test_a_share_grants_use_but_not_ownership(gw, kernel):
    assert_json_error(req(gw, "GET", f"api/kernels/{kernel}", "bob"), [404])
    r = share(gw, kernel, ["bob", "alice"])  # the owner in the list is no share
    assert r.status_code == 200, r.text
    assert r.json() == {"owner": "alice", "users": ["bob"]}
    assert req(gw, "GET", f"api/kernels/{kernel}/shares", "bob").json() == {"owner": "alice", "users": ["bob"]}

    assert [k["id"] for k in req(gw, "GET", "api/kernels", "bob").json()] == [kernel]
    assert req(gw, "GET", f"api/kernels/{kernel}", "bob").status_code == 200
    assert req(gw, "POST", f"api/kernels/{kernel}/interrupt", "bob").status_code == 204
    with KernelWS(gw, kernel, token=TOKENS["bob"]) as ws:
        # It is still alice's kernel: it runs as her, whoever types.
        assert execute_ok(ws, "import os; print(os.environ['KERNEL_USERNAME'])").stdout.strip() == "alice"
    assert req(gw, "POST", f"api/kernels/{kernel}/restart", "bob").status_code == 200

    # Deleting it and changing its shares stay the owner's (and an admin's): 403, with a reason.
    body = assert_json_error(req(gw, "DELETE", f"api/kernels/{kernel}", "bob"), [403])
    assert "only its owner 'alice'" in body["message"]
    assert_json_error(share(gw, kernel, ["bob", "dave"], as_user="bob"), [403])
    # Someone it is not shared with sees nothing at all.
    assert req(gw, "GET", "api/kernels", "dave").json() == []
    for method, path in [("GET", ""), ("GET", "/shares"), ("POST", "/interrupt"), ("DELETE", "")]:
        assert_json_error(req(gw, method, f"api/kernels/{kernel}{path}", "dave"), [404])
    assert_json_error(share(gw, kernel, ["dave"], as_user="dave"), [404])
    # An admin can change the shares too.
    assert share(gw, kernel, ["bob", "dave"], as_user="carol").json()["users"] == ["bob", "dave"]
    assert req(gw, "GET", f"api/kernels/{kernel}", "dave").status_code == 200


def test_sessions_on_a_shared_kernel(gw, kernel):
    r = req(gw, "POST", "api/sessions", "alice", json={"path": "a.ipynb", "type": "notebook", "kernel": {"id": kernel}})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert share(gw, kernel, ["bob"]).status_code == 200
    assert sid in [s["id"] for s in req(gw, "GET", "api/sessions", "bob").json()]
    # Deleting the session would delete alice's kernel: not bob's call.
    assert_json_error(req(gw, "DELETE", f"api/sessions/{sid}", "bob"), [403])
    assert req(gw, "GET", f"api/kernels/{kernel}", "alice").status_code == 200
    assert req(gw, "GET", f"api/sessions/{sid}", "alice").status_code == 200


def test_a_shared_user_cannot_take_over_the_owners_session(gw, kernel):
    """Session ids travel in every message header: naming alice's must not cut her socket or
    hand bob her replay."""
    assert share(gw, kernel, ["bob"]).status_code == 200
    sid = "shared-session-id"
    with KernelWS(gw, kernel, session_id=sid, token=TOKENS["alice"]) as alice:
        execute_ok(alice, "1")
        with KernelWS(gw, kernel, session_id=sid, token=TOKENS["bob"]) as bob:
            execute_ok(bob, "2")
            # alice's socket was not replaced: it still works, and her replies reach her alone.
            res = execute_ok(alice, "print('still alice')")
            assert res.stdout.strip() == "still alice"


def test_revoking_a_share_closes_the_users_websockets(gw, kernel):
    assert share(gw, kernel, ["bob", "dave"]).status_code == 200
    with KernelWS(gw, kernel, token=TOKENS["bob"]) as bob, KernelWS(gw, kernel, token=TOKENS["dave"]) as dave:
        execute_ok(bob, "1")
        execute_ok(dave, "1")
        r = share(gw, kernel, ["dave"])
        assert r.status_code == 200 and r.json()["users"] == ["dave"]
        # bob's socket is closed by the gateway (close frame, then EOF) ...
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                bob.ws.settimeout(5)
                op, _ = bob.ws.recv_data(control_frame=True)
                closed = op == websocket.ABNF.OPCODE_CLOSE
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                closed = True
            except websocket.WebSocketTimeoutException:
                pass
        assert closed, "the revoked user's WebSocket stayed open"
        # ... while dave's, still shared, goes on.
        execute_ok(dave, "2")
    assert_json_error(req(gw, "GET", f"api/kernels/{kernel}", "bob"), [404])
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(gw.ws_url(f"api/kernels/{kernel}/channels"), timeout=30,
                                    header=[f"Authorization: token {TOKENS['bob']}"])
    assert e.value.status_code == 404


def test_away_session_replay_is_dropped_on_revocation(gw, kernel):
    """What the kernel printed while a revoked user's session was away is not theirs to read if
    they are given access again."""
    assert share(gw, kernel, ["bob"]).status_code == 200
    sid = "bob-away"
    with KernelWS(gw, kernel, session_id=sid, token=TOKENS["bob"]) as bob:
        execute_ok(bob, "1")
    with KernelWS(gw, kernel, token=TOKENS["alice"]) as alice:
        execute_ok(alice, "print('secret-while-bob-away')")
    assert share(gw, kernel, []).json()["users"] == []
    assert share(gw, kernel, ["bob"]).json()["users"] == ["bob"]
    with KernelWS(gw, kernel, session_id=sid, token=TOKENS["bob"]) as bob:
        execute_ok(bob, "print('back')")
        seen = " ".join(str(m.get("content", {}).get("text", "")) for m in bob.unrelated)
        assert "secret-while-bob-away" not in seen


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"users": "bob"}', b'{"users": [1]}', b'{"users": [""]}', b'{"users": null}',
])
def test_bad_share_bodies_are_400(gw, kernel, body):
    r = requests.put(gw.url(f"api/kernels/{kernel}/shares"), data=body, timeout=30,
                     headers={"Authorization": f"token {TOKENS['alice']}", "Content-Type": "application/json"})
    assert_json_error(r, [400])
    assert req(gw, "GET", f"api/kernels/{kernel}/shares", "alice").json()["users"] == []


def test_too_many_shares_is_400(gw, kernel):
    body = assert_json_error(share(gw, kernel, [f"u{i}" for i in range(1001)]), [400])
    assert "at most 1000" in body["message"]


def test_unknown_kernel_shares_is_404(gw):
    assert_json_error(share(gw, "00000000-0000-0000-0000-000000000000", ["bob"]), [404])
    assert_json_error(req(gw, "GET", "api/kernels/nope/shares", "alice"), [404])


def test_sharing_needs_named_users(gateway, module_kernels):
    """Without per-user tokens or JWTs every client may use every kernel: a share would mean nothing."""
    kid = module_kernels.create("python3")["id"]
    r = requests.put(gateway.url(f"api/kernels/{kid}/shares"), json={"users": ["bob"]}, timeout=30)
    body = assert_json_error(r, [400])
    assert "named users" in body["message"]


def test_shares_survive_a_gateway_restart(tmp_path):
    """Shares are part of the persisted record: after SIGKILL and re-attach, bob still may use
    alice's kernel and dave still may not."""
    import os
    import signal

    from conftest import alive, wait_until

    cfg = tmp_path / "ganymede.yaml"
    users = "".join(f"  {u}: {{token_sha256: {hashlib.sha256(t.encode()).hexdigest()}}}\n" for u, t in TOKENS.items())
    cfg.write_text(f"users:\n{users}admins: [carol]\n")
    args = ["--config", str(cfg), "--session-persistence", "true", "--persistence-root", str(tmp_path / "sessions")]
    first = Gateway(tmp_path / "a", args=args, name="shr1").start()
    r = req(first, "POST", "api/kernels", "alice", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    first.record_children()
    pids = [p for p in first.known_children if alive(p)]
    assert share(first, kid, ["bob"]).status_code == 200
    first.kill_leaving_kernels()
    second = Gateway(tmp_path / "b", args=args, name="shr2").start()
    try:
        wait_until(lambda: req(second, "GET", f"api/kernels/{kid}", "alice").status_code == 200, 30, what="re-attach")
        assert req(second, "GET", f"api/kernels/{kid}/shares", "bob").json() == {"owner": "alice", "users": ["bob"]}
        with KernelWS(second, kid, token=TOKENS["bob"]) as ws:
            execute_ok(ws, "1")
        assert_json_error(req(second, "GET", f"api/kernels/{kid}", "dave"), [404])
        assert req(second, "DELETE", f"api/kernels/{kid}", "alice").status_code == 204
    finally:
        second.stop()
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_swagger_documents_shares(gw):
    spec = requests.get(gw.url("api/swagger.json"), timeout=30).json()
    path = spec["paths"]["/api/kernels/{kernel_id}/shares"]
    assert set(path) >= {"get", "put"}
    assert "403" in {str(k) for k in path["put"]["responses"]}
