"""Users who cannot reach each other's kernels: per-user tokens (stored hashed), JWTs, admins,
over REST, sessions and the channels WebSocket, with the real gateway binary and real kernels."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
import websocket

from conftest import Gateway, KernelWS, assert_json_error, execute_ok

TOKENS = {"alice": "alice-" + "a" * 40, "bob": "bob-" + "b" * 40, "carol": "carol-" + "c" * 40}
JWT_SECRET = "jwt-secret-" + "s" * 40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest() if alg == "HS256" else b""
    return head + "." + b64url(sig)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("identity")
    cfg = d / "ganymede.yaml"
    users = "".join(f"  {u}: {{token_sha256: {hashlib.sha256(t.encode()).hexdigest()}}}\n" for u, t in TOKENS.items())
    cfg.write_text(f"users:\n{users}admins: [carol]\n"
                   "jwt:\n  issuer: test-hub\n  audience: ganymede\n  keys:\n    - {alg: HS256, secret_env: TEST_JWT_SECRET}\n")
    g = Gateway(d / "gw", args=["--config", str(cfg)], env={"TEST_JWT_SECRET": JWT_SECRET}).start()
    yield g
    g.stop()


def req(gw, method, path, user=None, headers=None, **kw):
    """A request as `user` (their token), or with exactly `headers`."""
    h = dict(headers or {})
    if user:
        h["Authorization"] = f"token {TOKENS[user]}"
    return requests.request(method, gw.url(path), headers=h, timeout=90, **kw)


@pytest.fixture(scope="module")
def alices_kernel(gw):
    r = req(gw, "POST", "api/kernels", "alice", json={"name": "python3", "env": {"KERNEL_USERNAME": "bob"}})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    yield kid
    req(gw, "DELETE", f"api/kernels/{kid}", "alice")


def test_no_or_wrong_credential_is_401(gw):
    assert req(gw, "GET", "api/kernels").status_code == 401
    assert req(gw, "GET", "api/kernels", headers={"Authorization": "token nope"}).status_code == 401
    assert req(gw, "GET", "api/kernels", headers={"Authorization": f"token {hashlib.sha256(TOKENS['alice'].encode()).hexdigest()}"}).status_code == 401


def test_the_user_is_who_the_token_says(gw, alices_kernel):
    """KERNEL_USERNAME=bob in the request does not make alice's kernel bob's."""
    with KernelWS(gw, alices_kernel, token=TOKENS["alice"]) as ws:
        res = execute_ok(ws, "import os; print(os.environ['KERNEL_USERNAME'])")
        assert res.stdout.strip() == "alice"


def test_other_users_cannot_see_or_use_a_kernel(gw, alices_kernel):
    assert [k["id"] for k in req(gw, "GET", "api/kernels", "alice").json()] == [alices_kernel]
    assert req(gw, "GET", "api/kernels", "bob").json() == []
    for method, path in [("GET", ""), ("POST", "/interrupt"), ("POST", "/restart"), ("DELETE", "")]:
        r = req(gw, method, f"api/kernels/{alices_kernel}{path}", "bob")
        body = assert_json_error(r, [404])
        assert body["message"] == f"Kernel does not exist: {alices_kernel}", (method, path, body)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(gw.ws_url(f"api/kernels/{alices_kernel}/channels"), timeout=30,
                                    header=[f"Authorization: token {TOKENS['bob']}"])
    assert e.value.status_code == 404
    r = req(gw, "POST", "api/sessions", "bob", json={"path": "x.ipynb", "type": "notebook", "kernel": {"id": alices_kernel}})
    assert_json_error(r, [404])
    # Still alive and alice's after all that.
    assert req(gw, "GET", f"api/kernels/{alices_kernel}", "alice").json()["execution_state"] in ("idle", "busy", "starting")


def test_admin_sees_and_manages_everything(gw, alices_kernel):
    assert alices_kernel in [k["id"] for k in req(gw, "GET", "api/kernels", "carol").json()]
    assert req(gw, "POST", f"api/kernels/{alices_kernel}/interrupt", "carol").status_code == 204
    assert req(gw, "GET", "metrics", "carol").status_code == 200
    assert req(gw, "GET", "status.json", "carol").status_code == 200
    for path in ("metrics", "status", "status.json", "api/resources"):
        assert_json_error(req(gw, "GET", path, "bob"), [403])


def test_sessions_are_per_user(gw):
    r = req(gw, "POST", "api/sessions", "bob", json={"path": "b.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert r.status_code == 201, r.text
    sid, kid = r.json()["id"], r.json()["kernel"]["id"]
    try:
        assert [s["id"] for s in req(gw, "GET", "api/sessions", "bob").json()] == [sid]
        assert req(gw, "GET", "api/sessions", "alice").json() == []
        assert_json_error(req(gw, "GET", f"api/sessions/{sid}", "alice"), [404])
        assert_json_error(req(gw, "DELETE", f"api/sessions/{sid}", "alice"), [404])
        assert req(gw, "GET", f"api/kernels/{kid}", "bob").status_code == 200
    finally:
        req(gw, "DELETE", f"api/sessions/{sid}", "bob")


def test_jwt_identities(gw):
    good = jwt({"sub": "dave", "iss": "test-hub", "aud": "ganymede", "exp": int(time.time()) + 300})
    r = req(gw, "POST", "api/kernels", headers={"Authorization": f"Bearer {good}"}, json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    try:
        assert [k["id"] for k in req(gw, "GET", "api/kernels", headers={"Authorization": f"Bearer {good}"}).json()] == [kid]
        assert_json_error(req(gw, "GET", f"api/kernels/{kid}", "alice"), [404])
        for bad in [
            jwt({"sub": "dave", "iss": "test-hub", "aud": "ganymede", "exp": int(time.time()) - 300}),  # expired
            jwt({"sub": "dave", "iss": "test-hub", "aud": "elsewhere"}),                                 # audience
            jwt({"sub": "dave", "iss": "other", "aud": "ganymede"}),                                     # issuer
            jwt({"sub": "dave", "iss": "test-hub", "aud": "ganymede"}, secret="x" * 48),                 # signature
            jwt({"sub": "dave", "iss": "test-hub", "aud": "ganymede"}, alg="none"),                      # alg none
        ]:
            assert req(gw, "GET", "api/kernels", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    finally:
        req(gw, "DELETE", f"api/kernels/{kid}", "carol")


@pytest.mark.parametrize("text,needle", [
    ("users:\n  alice: {token: plain}\n", "token_sha256"),
    ("users:\n  alice: {token_sha256: abc}\n", "64 hex digits"),
    ("jwt:\n  keys:\n    - {alg: HS256, secret: short}\n", "at least 32 bytes"),
    ("jwt:\n  keys:\n    - {alg: none}\n", "HS256, RS256 or ES256"),
    ("jwt:\n  keys:\n    - {alg: RS256, public_key: not-a-pem}\n", "RSA"),
])
def test_bad_identity_config_stops_the_gateway(tmp_path, text, needle):
    import subprocess
    from conftest import base_env, ganymede_bin
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    p = subprocess.run([ganymede_bin(), "--port", "0", "--config", str(cfg)], env=base_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and needle in p.stderr, p.stderr
