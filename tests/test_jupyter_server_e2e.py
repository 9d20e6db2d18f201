"""jupyter_server in gateway mode (`--gateway-url`) in front of Ganymede: what JupyterLab users get."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import websocket

from jupyter_server_support import JupyterServer
from conftest import REPO, base_env, wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def jserver(gateway, tmp_path_factory):
    s = JupyterServer(tmp_path_factory.mktemp("jserver"), f"http://127.0.0.1:{gateway.port}", "e2e-user")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server_kernel(jserver, gateway):
    r = jserver.post("api/kernels", json={"name": "python3"})
    assert r.status_code == 201, f"{r.status_code} {r.text[:500]}\n{jserver.log_tail()}"
    model = r.json()
    yield model
    jserver.delete(f"api/kernels/{model['id']}")
    if gateway.is_running():
        gateway.delete(f"api/kernels/{model['id']}")


def test_kernelspecs_through_server(jserver):
    r = jserver.get("api/kernelspecs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["default"] == "python3"
    assert "python3" in body["kernelspecs"]
    py = body["kernelspecs"]["python3"]
    assert py["spec"]["language"].lower() == "python"
    assert py["resources"]["logo-64x64"].endswith("/kernelspecs/python3/logo-64x64.png")
    # Not checked: GET /api/kernelspecs/python3 through jupyter_server 2.21 in gateway mode is a 500 in
    # jupyter_server itself (KernelSpecHandler calls .to_dict() on the gateway's dict), whatever the gateway.


def test_logo_through_server(jserver):
    r = jserver.get("kernelspecs/python3/logo-64x64.png")
    assert r.status_code == 200, r.text[:300]
    assert r.content.startswith(PNG_MAGIC)
    assert r.content == (REPO / "kernelspecs" / "python3" / "logo-64x64.png").read_bytes()


def test_kernel_created_on_gateway(jserver, server_kernel, gateway):
    kid = server_kernel["id"]
    assert kid in [k["id"] for k in gateway.get("api/kernels").json()]
    r = jserver.get("api/kernels")
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    assert kid in [k["id"] for k in r.json()]
    assert jserver.get(f"api/kernels/{kid}").status_code == 200


def _server_ws(jserver, kid, offer_v1=False):
    url = f"ws://127.0.0.1:{jserver.port}/api/kernels/{kid}/channels?session_id={uuid.uuid4().hex}"
    headers = [f"Authorization: token {jserver.token}"]
    if offer_v1:
        # Sent by hand: websocket-client rejects a reply that selects no subprotocol, browsers do not.
        headers.append("Sec-WebSocket-Protocol: v1.kernel.websocket.jupyter.org")
    return websocket.create_connection(url, timeout=60, header=headers)


def _execute_over(ws, code: str, timeout=60):
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "e2e", "session": uuid.uuid4().hex,
                   "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    got, idle, reply = [], False, False
    deadline = time.monotonic() + timeout
    while not (idle and reply):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no idle/reply for {code!r}; got {[m['msg_type'] for m in got]}")
        ws.settimeout(left)
        m = json.loads(ws.recv())
        if m.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        got.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True
        if m["msg_type"] == "execute_reply":
            reply = True
    return got


def test_execute_through_server(jserver, server_kernel):
    ws = _server_ws(jserver, server_kernel["id"])
    try:
        msgs = _execute_over(ws, "print('via-server'); 1+1")
    finally:
        ws.close()
    results = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"]
    assert results == ["2"], [m["msg_type"] for m in msgs]
    assert any(m["msg_type"] == "stream" and "via-server" in m["content"]["text"] for m in msgs)


def test_execute_through_server_lab_style(jserver, server_kernel):
    """JupyterLab offers the v1 subprotocol; jupyter_server's gateway mode answers legacy and relays text."""
    ws = _server_ws(jserver, server_kernel["id"], offer_v1=True)
    assert ws.getheaders().get("sec-websocket-protocol") in (None, "")
    try:
        msgs = _execute_over(ws, "3*3")
    finally:
        ws.close()
    assert [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"] == ["9"]


def test_interrupt_and_restart_through_server(jserver, server_kernel):
    kid = server_kernel["id"]
    r = jserver.post(f"api/kernels/{kid}/interrupt", json={})
    assert r.status_code == 204, r.text
    r = jserver.post(f"api/kernels/{kid}/restart", json={})
    assert r.status_code == 200, r.text
    ws = _server_ws(jserver, kid)
    try:
        msgs = _execute_over(ws, "1+1", timeout=90)
    finally:
        ws.close()
    assert [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"] == ["2"]


def test_session_through_server(jserver, gateway):
    """jupyter_server keeps sessions local and creates the kernel with POST /api/kernels on the gateway."""
    r = jserver.post("api/sessions", json={"path": "e2e.ipynb", "type": "notebook", "name": "e2e.ipynb",
                                           "kernel": {"name": "python3"}})
    assert r.status_code == 201, f"{r.status_code} {r.text[:400]}\n{jserver.log_tail()}"
    s = r.json()
    kid = s["kernel"]["id"]
    try:
        assert kid in [k["id"] for k in gateway.get("api/kernels").json()]
    finally:
        assert jserver.delete(f"api/sessions/{s['id']}").status_code == 204
    wait_until(lambda: kid not in [k["id"] for k in gateway.get("api/kernels").json()], 20,
               what="the session's kernel to be deleted on the gateway")


def test_delete_through_server(jserver, gateway):
    r = jserver.post("api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    assert kid in [k["id"] for k in gateway.get("api/kernels").json()]
    r = jserver.delete(f"api/kernels/{kid}")
    assert r.status_code == 204, r.text
    assert kid not in [k["id"] for k in jserver.get("api/kernels").json()]
    wait_until(lambda: gateway.get(f"api/kernels/{kid}").status_code == 404, 20,
               what="the kernel to be gone from the gateway")
    assert kid not in [k["id"] for k in gateway.get("api/kernels").json()]


NBCLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    import nbformat
    from nbclient import NotebookClient
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayKernelManager

    GatewayClient.instance().url = sys.argv[1]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os; print('nb-ok', os.environ.get('KERNEL_GATEWAY'))"),
        nbformat.v4.new_code_cell("20 + 22"),
    ])
    NotebookClient(nb, kernel_name="python3", kernel_manager_class=GatewayKernelManager, timeout=60,
                   startup_timeout=60).execute()
    print(json.dumps([c.outputs for c in nb.cells]))
""")


def test_nbclient_via_gateway_kernel_manager(gateway, tmp_path):
    """The programmatic path (nbclient/papermill with jupyter_server's GatewayKernelManager)."""
    script = tmp_path / "run_nb.py"
    script.write_text(NBCLIENT_SCRIPT)
    env = base_env()
    env.update({"HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_PATH": "",
                "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_DATA_DIR": str(tmp_path / "data")})
    before = {k["id"] for k in gateway.get("api/kernels").json()}
    p = subprocess.run([sys.executable, str(script), gateway.url("").rstrip("/")], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    outputs = json.loads(p.stdout.strip().splitlines()[-1])
    assert outputs[0][0]["text"].strip() == "nb-ok 1", outputs
    assert outputs[1][0]["data"]["text/plain"] == "42", outputs
    # nbclient shuts its kernel down
    leftover = {k["id"] for k in gateway.get("api/kernels").json()} - before
    for kid in leftover:
        gateway.delete(f"api/kernels/{kid}")
    assert not leftover, "nbclient's kernel was not deleted on the gateway"
