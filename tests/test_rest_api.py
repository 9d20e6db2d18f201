"""REST API of the gateway: routes, status codes, headers, models, auth, env rules."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import requests

from conftest import (
    REPO,
    TOKEN,
    KernelTracker,
    KernelWS,
    assert_json_error,
    assert_kernel_model,
    delete_if_created,
    execute_ok,
    wait_until,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- /api, swagger


def test_api_root(gateway):
    r = gateway.get("api")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("version"), str) and body["version"]
    assert isinstance(body.get("gateway_version"), str) and body["gateway_version"]


def test_swagger_json(gateway):
    r = gateway.get("api/swagger.json")
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert "paths" in doc and ("swagger" in doc or "openapi" in doc), list(doc)[:10]
    assert any("kernels" in p for p in doc["paths"]), list(doc["paths"])[:20]


def test_swagger_yaml(gateway):
    r = gateway.get("api/swagger.yaml")
    assert r.status_code == 200, r.text[:300]
    assert "paths:" in r.text
    assert "kernels" in r.text


# --------------------------------------------------------------------------- kernelspecs


def test_kernelspecs_list(gateway):
    r = gateway.get("api/kernelspecs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["default"] == "python3"
    specs = body["kernelspecs"]
    assert "python3" in specs, list(specs)
    for name, model in specs.items():
        assert model["name"] == name
        assert set(model) >= {"name", "spec", "resources"}, model
    py = specs["python3"]
    spec = py["spec"]
    assert spec["language"].lower() == "python"
    assert isinstance(spec["display_name"], str) and spec["display_name"]
    assert isinstance(spec["argv"], list) and "{connection_file}" in spec["argv"]
    assert py["resources"].get("logo-64x64") == "/kernelspecs/python3/logo-64x64.png", py["resources"]
    assert py["resources"].get("logo-32x32") == "/kernelspecs/python3/logo-32x32.png", py["resources"]


def test_kernelspec_single(gateway):
    r = gateway.get("api/kernelspecs/python3")
    assert r.status_code == 200
    m = r.json()
    assert m["name"] == "python3"
    assert set(m) >= {"name", "spec", "resources"}
    assert m == gateway.get("api/kernelspecs").json()["kernelspecs"]["python3"]


def test_kernelspec_unknown_is_404_json(gateway):
    assert_json_error(gateway.get("api/kernelspecs/no-such-spec"), (404,))


@pytest.mark.parametrize("fname", ["logo-64x64.png", "logo-32x32.png", "logo-svg.svg"])
def test_kernelspec_resource_files(gateway, fname):
    r = gateway.get(f"kernelspecs/python3/{fname}")
    assert r.status_code == 200, r.text[:200]
    on_disk = (REPO / "kernelspecs" / "python3" / fname).read_bytes()
    assert r.content == on_disk
    if fname.endswith(".png"):
        assert r.content.startswith(PNG_MAGIC)
        assert r.headers["Content-Type"].startswith("image/png")
    else:
        assert "svg" in r.headers["Content-Type"]


def test_kernelspec_resource_head(gateway):
    r = gateway.request("HEAD", "kernelspecs/python3/logo-64x64.png")
    assert r.status_code == 200
    assert r.content == b""
    size = (REPO / "kernelspecs" / "python3" / "logo-64x64.png").stat().st_size
    assert int(r.headers.get("Content-Length", size)) == size


def test_kernelspec_resource_missing(gateway):
    assert gateway.get("kernelspecs/python3/nope.png").status_code == 404
    assert gateway.get("kernelspecs/no-such-spec/logo-64x64.png").status_code == 404


def test_extra_kernelspec_dirs(gateway_factory, tmp_path):
    """--kernelspec-dir DIR/<name>/kernel.json and $JUPYTER_PATH/kernels/<name>/kernel.json are found."""
    import sys

    def write_spec(d, name, display):
        d.mkdir(parents=True)
        (d / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": display, "language": "python",
        }))
        (d / "logo-64x64.png").write_bytes(PNG_MAGIC + b"fake-" + name.encode())

    write_spec(tmp_path / "specdir" / "extra_a", "extra_a", "Extra A")
    write_spec(tmp_path / "jpath" / "kernels" / "extra_b", "extra_b", "Extra B")
    gw = gateway_factory("specs", args=["--kernelspec-dir", str(tmp_path / "specdir"),
                                        "--default-kernel-name", "extra_a"],
                         env={"JUPYTER_PATH": str(tmp_path / "jpath")})
    body = gw.get("api/kernelspecs").json()
    assert body["default"] == "extra_a"
    specs = body["kernelspecs"]
    assert {"python3", "extra_a", "extra_b"} <= set(specs), list(specs)
    assert specs["extra_a"]["spec"]["display_name"] == "Extra A"
    assert specs["extra_b"]["spec"]["display_name"] == "Extra B"
    r = gw.get("kernelspecs/extra_a/logo-64x64.png")
    assert r.status_code == 200 and r.content == PNG_MAGIC + b"fake-extra_a"
    r = gw.get("kernelspecs/extra_b/logo-64x64.png")
    assert r.status_code == 200 and r.content == PNG_MAGIC + b"fake-extra_b"


# --------------------------------------------------------------------------- kernels


def test_kernel_lifecycle(gateway, kernels):
    r = gateway.post("api/kernels", json={"name": "python3"}, timeout=90)
    assert r.status_code == 201, r.text
    m = assert_kernel_model(r.json(), name="python3")
    kernels.adopt(m["id"])
    loc = r.headers.get("Location")
    assert loc == f"/api/kernels/{m['id']}", loc
    assert r.headers["Content-Type"].startswith("application/json")

    r = gateway.get(f"api/kernels/{m['id']}")
    assert r.status_code == 200
    assert_kernel_model(r.json(), kernel_id=m["id"], name="python3")

    listed = gateway.get("api/kernels")
    assert listed.status_code == 200
    ids = [k["id"] for k in listed.json()]
    assert m["id"] in ids
    for k in listed.json():
        assert_kernel_model(k)

    r = gateway.delete(f"api/kernels/{m['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_json_error(gateway.get(f"api/kernels/{m['id']}"), (404,))
    assert m["id"] not in [k["id"] for k in gateway.get("api/kernels").json()]
    assert_json_error(gateway.delete(f"api/kernels/{m['id']}"), (404,))


def test_kernel_default_name(gateway, kernels):
    m = kernels.create(name=None)
    assert m["name"] == "python3"


def test_kernel_connections_count(gateway, kernel):
    before = gateway.get(f"api/kernels/{kernel['id']}").json()["connections"]
    with KernelWS(gateway, kernel["id"]):
        during = wait_until(lambda: gateway.get(f"api/kernels/{kernel['id']}").json()["connections"] == before + 1,
                            10, what="connections to go up by one")
        assert during
    wait_until(lambda: gateway.get(f"api/kernels/{kernel['id']}").json()["connections"] == before, 10,
               what="connections to go back down")


def test_kernel_model_after_execute(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        execute_ok(ws, "1")
    m = assert_kernel_model(gateway.get(f"api/kernels/{kernel['id']}").json(), kernel_id=kernel["id"])
    assert m["execution_state"] in ("idle", "busy"), m


@pytest.mark.parametrize("op,method", [("", "GET"), ("", "DELETE"), ("/interrupt", "POST"), ("/restart", "POST")])
def test_unknown_kernel_404(gateway, op, method):
    kid = str(uuid.uuid4())
    r = gateway.request(method, f"api/kernels/{kid}{op}")
    assert_json_error(r, (404,))


def test_interrupt(gateway, kernel):
    with KernelWS(gateway, kernel["id"]) as ws:
        execute_ok(ws, "x_before_interrupt = 7")
        msg_id = ws.send_execute("import time; time.sleep(30)")
        # Bounded wait until the kernel is actually running the cell.
        ws.collect(lambda m: m["parent_header"].get("msg_id") == msg_id and m["header"]["msg_type"] == "execute_input",
                   lambda kept: bool(kept), timeout=30, what="execute_input")
        r = gateway.post(f"api/kernels/{kernel['id']}/interrupt")
        assert r.status_code == 204, r.text
        res = ws.collect_execution(msg_id, timeout=20)
        assert res.reply["content"]["status"] == "error", res.summary()
        assert res.reply["content"]["ename"] == "KeyboardInterrupt", res.reply["content"]
        # state survives an interrupt
        assert execute_ok(ws, "x_before_interrupt").result == "7"


def test_restart(gateway, kernels):
    m = kernels.create()
    kid = m["id"]
    with KernelWS(gateway, kid) as ws:
        execute_ok(ws, "x = 42")
        assert execute_ok(ws, "x").result == "42"
    r = gateway.post(f"api/kernels/{kid}/restart", timeout=90)
    assert r.status_code == 200, r.text
    assert_kernel_model(r.json(), kernel_id=kid, name="python3")
    assert kid in [k["id"] for k in gateway.get("api/kernels").json()]
    with KernelWS(gateway, kid) as ws:
        res = ws.execute("x", timeout=90)
        assert res.error is not None and res.error["ename"] == "NameError", res.summary()


def test_websocket_survives_restart(gateway, kernels):
    """Like jupyter_server/KG: an open channels socket keeps working across POST /restart."""
    kid = kernels.create()["id"]
    with KernelWS(gateway, kid) as ws:
        execute_ok(ws, "y = 1")
        assert gateway.post(f"api/kernels/{kid}/restart", timeout=90).status_code == 200
        res = ws.execute("y", timeout=90)
        assert res.error is not None and res.error["ename"] == "NameError", res.summary()


# --------------------------------------------------------------------------- list_kernels=false


def test_list_kernels_disabled(gateway_factory):
    gw = gateway_factory("nolist", env={"EG_LIST_KERNELS": "false"})
    r = gw.get("api/kernels")
    assert_json_error(r, (403,))
    # other routes unaffected
    assert gw.get("api").status_code == 200
    assert gw.get("api/kernelspecs").status_code == 200


def test_list_kernels_disabled_by_flag(gateway_factory):
    gw = gateway_factory("nolist_flag", args=["--list-kernels", "false"])
    assert_json_error(gw.get("api/kernels"), (403,))


# --------------------------------------------------------------------------- base url, CORS, KG_ env


def test_base_url_and_cors(gateway_factory):
    gw = gateway_factory("baseurl", args=["--base-url", "/gw/", "--allow-origin", "https://example.com"],
                         base_url="/gw/")
    r = gw.get("api")
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") == "https://example.com"
    specs = gw.get("api/kernelspecs").json()
    logo = specs["kernelspecs"]["python3"]["resources"]["logo-64x64"]
    assert logo.endswith("kernelspecs/python3/logo-64x64.png")
    # the resource URL must be reachable on this gateway
    r = gw.raw("GET", logo)
    assert r[0] == 200, logo
    # routes outside the base url are not served
    status, _, _ = gw.raw("GET", "/api")
    assert status == 404


def test_kg_env_equivalents(gateway_factory):
    gw = gateway_factory("kgenv", env={"KG_BASE_URL": "/kg", "KG_AUTH_TOKEN": "kg-tok"}, base_url="/kg/",
                         token="kg-tok")
    assert gw.get("api").status_code == 200
    assert_json_error(requests.get(gw.url("api"), timeout=10), (401,))


def test_auth_token_flag(gateway_factory):
    gw = gateway_factory("tokflag", args=["--auth-token", "flag-tok"], token="flag-tok")
    assert gw.get("api").status_code == 200
    assert_json_error(requests.get(gw.url("api"), timeout=10), (401,))


# --------------------------------------------------------------------------- auth


def test_auth_required(gateway_with_token):
    gw = gateway_with_token
    for path in ("api", "api/kernels", "api/kernelspecs", "api/sessions", "kernelspecs/python3/logo-64x64.png",
                 f"api/kernels/{uuid.uuid4()}"):
        r = requests.get(gw.url(path), timeout=10)
        assert_json_error(r, (401,))
    r = requests.get(gw.url("api"), headers={"Authorization": "token wrong"}, timeout=10)
    assert_json_error(r, (401,))
    r = requests.get(gw.url("api") + "?token=wrong", timeout=10)
    assert_json_error(r, (401,))
    r = requests.post(gw.url("api/kernels"), json={}, timeout=10)
    assert_json_error(r, (401,))


@pytest.mark.parametrize("how", ["token", "Bearer", "query"])
def test_auth_accepted(gateway_with_token, how):
    gw = gateway_with_token
    if how == "query":
        r = requests.get(gw.url("api") + f"?token={TOKEN}", timeout=10)
    else:
        r = requests.get(gw.url("api"), headers={"Authorization": f"{how} {TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_options_needs_no_token(gateway_with_token):
    r = requests.options(gateway_with_token.url("api/kernels"), timeout=10,
                         headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"})
    assert r.status_code in (200, 204), r.status_code


# --------------------------------------------------------------------------- sessions


def test_sessions_crud(gateway, kernels):
    r = gateway.post("api/sessions", json={"path": "nb/a.ipynb", "type": "notebook", "name": "a.ipynb",
                                           "kernel": {"name": "python3"}}, timeout=90)
    assert r.status_code == 201, r.text
    s = r.json()
    kernels.adopt(s["kernel"]["id"])
    assert set(s) >= {"id", "path", "name", "type", "kernel"}, s
    assert s["path"] == "nb/a.ipynb" and s["type"] == "notebook" and s["name"] == "a.ipynb"
    assert_kernel_model(s["kernel"], name="python3")
    assert r.headers.get("Location", f"/api/sessions/{s['id']}") == f"/api/sessions/{s['id']}"
    kid = s["kernel"]["id"]
    assert gateway.get(f"api/kernels/{kid}").status_code == 200

    listed = gateway.get("api/sessions")
    assert listed.status_code == 200
    assert s["id"] in [x["id"] for x in listed.json()]

    r = gateway.get(f"api/sessions/{s['id']}")
    assert r.status_code == 200 and r.json()["id"] == s["id"] and r.json()["kernel"]["id"] == kid

    r = gateway.patch(f"api/sessions/{s['id']}", json={"path": "nb/b.ipynb", "name": "b.ipynb"})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "nb/b.ipynb"
    assert gateway.get(f"api/sessions/{s['id']}").json()["path"] == "nb/b.ipynb"

    r = gateway.delete(f"api/sessions/{s['id']}")
    assert r.status_code == 204, r.text
    assert_json_error(gateway.get(f"api/sessions/{s['id']}"), (404,))
    # deleting the session shuts its kernel down
    wait_until(lambda: gateway.get(f"api/kernels/{kid}").status_code == 404, 20, what="session kernel to go")


def test_sessions_errors(gateway):
    assert_json_error(gateway.get(f"api/sessions/{uuid.uuid4()}"), (404,))
    assert_json_error(gateway.delete(f"api/sessions/{uuid.uuid4()}"), (404,))
    assert_json_error(gateway.patch(f"api/sessions/{uuid.uuid4()}", json={"path": "x"}), (404,))
    for body in ({"type": "notebook", "kernel": {"name": "python3"}},  # no path
                 {"path": "x.ipynb", "kernel": {"name": "python3"}}):  # no type
        r = gateway.post("api/sessions", json=body)
        delete_if_created(gateway, r)
        assert_json_error(r, (400,))
    r = gateway.post("api/sessions", data=b"{", headers={"Content-Type": "application/json"})
    assert_json_error(r, (400,))


# --------------------------------------------------------------------------- POST /api/kernels validation


# `null` is absent on purpose: jupyter_server/EG treat a JSON null body like no body (default kernel).
@pytest.mark.parametrize("body", [
    b"{", b"[]", b'"str"', b"42", b"\xff\xfe\x00", b'{"name": 5}', b'{"env": []}', b'{"env": "x"}',
    b'{"env": {"A": 1}}', b'{"env": {"KERNEL_A": null}}', b'{"env": {"KERNEL_A": ["x"]}}',
])
def test_create_kernel_bad_body(gateway, body):
    r = gateway.post("api/kernels", data=body, headers={"Content-Type": "application/json"})
    delete_if_created(gateway, r)
    assert_json_error(r, (400,))


def test_create_kernel_env_value_too_long(gateway):
    r = gateway.post("api/kernels", json={"env": {"KERNEL_BIG": "x" * 4097}})
    delete_if_created(gateway, r)
    assert_json_error(r, (400,))


def test_create_kernel_env_value_nul(gateway):
    r = gateway.post("api/kernels", json={"env": {"KERNEL_NUL": "a\u0000b"}})
    delete_if_created(gateway, r)
    assert_json_error(r, (400,))


def test_create_kernel_env_key_nul(gateway):
    r = gateway.post("api/kernels", json={"env": {"KERNEL_\u0000X": "a"}})
    delete_if_created(gateway, r)
    assert_json_error(r, (400,))


@pytest.mark.parametrize("kid", ["not-a-uuid", "12345", "../../etc", "00000000-0000-0000-0000-00000000000g"])
def test_create_kernel_bad_kernel_id(gateway, kid):
    r = gateway.post("api/kernels", json={"env": {"KERNEL_ID": kid}})
    delete_if_created(gateway, r)
    assert_json_error(r, (400,))


def test_create_kernel_unknown_spec(gateway):
    r = gateway.post("api/kernels", json={"name": "no-such-spec"})
    delete_if_created(gateway, r)
    assert_json_error(r, (400, 404))


def test_create_kernel_duplicate_kernel_id(gateway, kernel):
    r = gateway.post("api/kernels", json={"env": {"KERNEL_ID": kernel["id"]}})
    if r.status_code == 201 and r.json()["id"] != kernel["id"]:
        gateway.delete(f"api/kernels/{r.json()['id']}")
    assert r.status_code in (400, 409), f"reusing a live kernel id -> {r.status_code} {r.text[:300]}"
    assert_json_error(r, (400, 409))
    assert_kernel_model(gateway.get(f"api/kernels/{kernel['id']}").json(), kernel_id=kernel["id"])


# --------------------------------------------------------------------------- kernel environment

ENV_PROBE = (
    "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
    "['KERNEL_FOO','ALLOWED_VAR','OTHER_VAR','GW_INHERITED','GW_NOT_INHERITED','KERNEL_ID','KERNEL_USERNAME',"
    "'KERNEL_LANGUAGE','KERNEL_GATEWAY','EG_AUTH_TOKEN','KG_AUTH_TOKEN']}))"
)
TOKEN_PROBE = (
    "import os; print(sorted(k for k, v in os.environ.items() if 'secret-token' in v or 'secret-token' in k))"
)


@pytest.fixture(scope="module")
def env_kernels(gateway_with_token):
    t = KernelTracker(gateway_with_token)
    yield t
    t.cleanup()


def test_kernel_env_rules(gateway_with_token, env_kernels):
    gw = gateway_with_token
    chosen = str(uuid.uuid4())
    m = env_kernels.create(env={
        "KERNEL_FOO": "bar", "ALLOWED_VAR": "yes", "OTHER_VAR": "no", "KERNEL_ID": chosen,
        "KERNEL_USERNAME": "alice", "EG_AUTH_TOKEN": "client-sent",
    })
    assert m["id"] == chosen, "client-chosen KERNEL_ID must become the kernel id"
    with KernelWS(gw, m["id"]) as ws:
        env = json.loads(execute_ok(ws, ENV_PROBE, timeout=90).stdout)
        leaked = execute_ok(ws, TOKEN_PROBE).stdout.strip()
    assert env["KERNEL_FOO"] == "bar"
    assert env["ALLOWED_VAR"] == "yes", "names in EG_CLIENT_ENVS are passed"
    assert env["OTHER_VAR"] is None, "client env names not KERNEL_* nor in EG_CLIENT_ENVS are dropped"
    assert env["GW_INHERITED"] == "from-gateway", "EG_INHERITED_ENVS are copied from the gateway"
    assert env["KERNEL_ID"] == chosen
    assert env["KERNEL_USERNAME"] == "alice"
    assert env["KERNEL_LANGUAGE"] == "python"
    assert env["KERNEL_GATEWAY"] == "1"
    assert env["EG_AUTH_TOKEN"] != TOKEN and env["KG_AUTH_TOKEN"] != TOKEN
    assert leaked == "[]", f"the auth token is visible in the kernel env under {leaked}"


def test_kernel_env_without_request_env(gateway_with_token, env_kernels):
    """No env in the request: injected names present, token still absent."""
    gw = gateway_with_token
    m = env_kernels.create()
    with KernelWS(gw, m["id"], token_in_query=True) as ws:
        env = json.loads(execute_ok(ws, ENV_PROBE, timeout=90).stdout)
        leaked = execute_ok(ws, TOKEN_PROBE).stdout.strip()
    assert env["KERNEL_ID"] == m["id"]
    assert env["KERNEL_GATEWAY"] == "1"
    assert env["KERNEL_LANGUAGE"] == "python"
    assert env["KERNEL_USERNAME"], env
    assert env["EG_AUTH_TOKEN"] is None and env["KG_AUTH_TOKEN"] is None, env
    assert leaked == "[]", f"the auth token is visible in the kernel env under {leaked}"


def test_websocket_auth(gateway_with_token, env_kernels):
    import websocket

    gw = gateway_with_token
    kid = env_kernels.ids[0] if env_kernels.ids else env_kernels.create()["id"]
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(gw.ws_url(f"api/kernels/{kid}/channels"), timeout=10)
    assert ei.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(gw.ws_url(f"api/kernels/{kid}/channels?token=wrong"), timeout=10)
    assert ei.value.status_code == 401
    for kw in ({"token_in_query": True}, {}):
        with KernelWS(gw, kid, **kw) as ws:
            assert execute_ok(ws, "1+1").result == "2"
