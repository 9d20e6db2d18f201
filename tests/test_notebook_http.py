"""Kernel Gateway's notebook-http mode (issue #8): annotated notebook cells as HTTP endpoints.

Every test drives the ganymede binary over HTTP with real notebooks from tests/fixtures/notebooks
(Kernel Gateway's own test and example notebooks among them) and real ipykernel kernels.
Checks mirror KG's tests/test_notebook_http.py where KG defines the behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import REPO, Gateway, alive, assert_json_error, base_env, descendants_of, ganymede_bin, wait_until

NOTEBOOKS = REPO / "tests" / "fixtures" / "notebooks"
KERNEL_CMD = "ipykernel"


def nb(name: str) -> str:
    return str(NOTEBOOKS / name)


def kernel_pids(gw: Gateway) -> set[int]:
    """The gateway's ipykernel processes."""
    if not gw.is_running():
        return set()
    out = set()
    for p in descendants_of(gw.proc.pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if KERNEL_CMD.encode() in f.read():
                    out.add(p)
        except OSError:
            pass
    return out


def start(tmp_path_factory, name: str, args=(), env=None, **kw) -> Gateway:
    return Gateway(tmp_path_factory.mktemp(name), args=args, env=env, name=name, **kw).start()


# --------------------------------------------------------------------------- KG's kernel_api.ipynb


@pytest.fixture(scope="module")
def kg_api(tmp_path_factory):
    """KG's own test notebook, configured through KG's environment variables."""
    gw = start(tmp_path_factory, "kg_api",
               env={"KG_API": "kernel_gateway.notebook_http", "KG_SEED_URI": nb("kg_kernel_api.ipynb")})
    yield gw
    gw.stop()


def test_get_endpoint(kg_api):
    r = kg_api.get("hello")
    assert r.status_code == 200 and r.content == b"hello world\n"
    assert r.headers["Content-Type"] == "text/plain"


def test_get_with_path_param(kg_api):
    r = kg_api.get("hello/governor")
    assert r.status_code == 200 and r.content == b"hello governor\n"


def test_get_with_query_params(kg_api):
    assert kg_api.get("hello/person", params={"person": "governor"}).content == b"hello governor\n"
    r = kg_api.get("hello/persons", params={"person": "governor, rick"})
    assert r.content == b"hello governor, rick\n"


def test_constant_path_wins_over_parameter(kg_api):
    """/hello/people is registered before /hello/:person (KG's endpoint ordering)."""
    assert kg_api.get("hello/people").content.startswith(b"hello ")
    assert b"people" not in kg_api.get("hello/people").content


def test_put_then_get_keeps_kernel_state(kg_api):
    assert kg_api.request("PUT", "message", data="hola {}").status_code == 200
    assert kg_api.get("message").content == b"hola {}\n"
    assert kg_api.request("PUT", "message", data="hello {}").content == b"hello {}\n"  # for the other tests


def test_post_json_and_delete(kg_api):
    people = b'["Rick", "Maggie", "Glenn", "Carol", "Daryl"]\n'
    r = kg_api.post("people", data=people, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.content == people
    r = kg_api.delete("people/2")
    assert r.status_code == 200 and r.content == b'["Rick", "Maggie", "Carol", "Daryl"]\n'


def test_cell_error_is_500_without_traceback(kg_api):
    r = kg_api.get("error")
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "text/plain"
    assert r.text.startswith("Error SyntaxError: ") and r.text.endswith(" \n")
    assert "Traceback" not in r.text and "\x1b[" not in r.text


def test_stderr_is_not_in_the_body(kg_api):
    assert kg_api.get("stderr").content == b"I am text on stdout\n"


def test_unsupported_method_is_405(kg_api):
    for method in ("DELETE", "PATCH"):
        r = kg_api.request(method, "message")
        assert_json_error(r, [405])


def test_undefined_path_is_404(kg_api):
    r = kg_api.get("not/an/endpoint")
    assert_json_error(r, [404])
    assert r.json()["reason"] == "Not Found"
    assert_json_error(kg_api.get("hello/"), [404])  # tornado matches the whole path: no trailing slash


def test_api_kernels_is_not_served(kg_api):
    """notebook-http replaces the kernel API, as in KG."""
    assert_json_error(kg_api.get("api/kernels"), [404])
    assert_json_error(kg_api.post("api/kernels", json={}), [404])


def test_request_headers_reach_the_notebook(kg_api):
    for content_type in ["text/plain", "application/json", "application/atom+xml", "foo"]:
        r = kg_api.get("content-type", headers={"Content-Type": content_type})
        assert r.status_code == 200 and r.text == f"{content_type}\n"


def test_quotes_in_request_are_escaped(kg_api):
    r = kg_api.get("hello/person", params={"person": "governor"},
                   headers={"If-None-Match": '""9a28a9262f954494a8de7442c63d6d0715ce0998""'})
    assert r.status_code == 200 and r.content == b"hello governor\n"


def test_source_download_is_off_by_default(kg_api):
    assert_json_error(kg_api.get("_api/source"), [404])
    assert_json_error(kg_api.get("public"), [404])


def test_execute_result_is_the_body(kg_api):
    r = kg_api.get("execute_result")
    assert r.status_code == 200 and r.content == b'{"text/plain": "2"}'


def test_cells_concatenate(kg_api):
    assert kg_api.get("multi").content == b"x is 1\n"


def test_kernel_gateway_env_is_set(kg_api):
    assert kg_api.get("env_kernel_gateway").content == b"KERNEL_GATEWAY is 1\n"


def test_swagger_lists_every_endpoint(kg_api):
    r = kg_api.get("_api/spec/swagger.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    spec = r.json()
    assert spec["swagger"] == "2.0" and spec["info"] == {"version": "0.0.0", "title": "kg_kernel_api"}
    assert spec["paths"]["/people/:index"] == {"delete": {"responses": {"200": {"description": "Success"}}}}
    assert set(spec["paths"]["/people"]) == {"get", "post", "put"}
    assert len(spec["paths"]) == 15
    assert_json_error(kg_api.post("_api/spec/swagger.json"), [405])


# --------------------------------------------------------------------------- KG's other notebooks


def test_kg_swagger_exactly(tmp_path_factory):
    gw = start(tmp_path_factory, "kg_swagger", args=["--api", "notebook-http", "--seed-uri", nb("kg_simple_api.ipynb")])
    try:
        assert gw.get("_api/spec/swagger.json").json() == {
            "info": {"version": "0.0.0", "title": "kg_simple_api"},
            "paths": {"/name": {"get": {"responses": {"200": {"description": "Success"}}},
                                "post": {"responses": {"200": {"description": "Success"}}}}},
            "swagger": "2.0",
        }
        assert gw.get("name").text == "Test Name\n"
        assert gw.post("name", data="Renamed").text == "Renamed\n"
        assert gw.get("name").text == "Renamed\n"
    finally:
        gw.stop()


def test_swagger_cell_parser(tmp_path_factory):
    """KG_CELL_PARSER=kernel_gateway.notebook_http.swagger.parser: the API declared as Swagger in a
    markdown cell, implemented by `# operationId:` cells (concatenated), path parameters appended
    to the path as KG does, the declared document served as the spec with a default title."""
    gw = start(tmp_path_factory, "kg_swagger_parser", args=["--api", "notebook-http", "--seed-uri", nb("swagger_contacts.ipynb")],
               env={"KG_CELL_PARSER": "kernel_gateway.notebook_http.swagger.parser"})
    try:
        spec = gw.get("_api/spec/swagger.json").json()
        assert spec["info"] == {"version": "1.0.0", "title": "swagger_contacts"}
        assert set(spec["paths"]) == {"/contacts", "/contacts/find", "/declared-only"}
        assert gw.get("contacts").json() == {"alice": "555-0100"}
        r = gw.post("contacts", json={"name": "bob", "phone": "555-0199"})
        assert r.status_code == 201 and r.text == "2\n" and r.headers["Content-Type"].startswith("text/plain"), r.text
        assert gw.get("contacts/find/bob").text == "555-0199\n"
        assert_json_error(gw.get("declared-only"), [404])  # declared, never implemented
        assert_json_error(gw.request("PUT", "contacts"), [405])
        assert "notImplemented was declared but not referenced" in gw.log_tail(100)
    finally:
        gw.stop()


def test_unknown_cell_parser_is_refused(tmp_path):
    from conftest import ganymede_bin
    p = subprocess.run([ganymede_bin(), "--port", "0", "--api", "notebook-http", "--seed-uri", nb("swagger_contacts.ipynb")],
                       env=dict(base_env(), KG_CELL_PARSER="my.parser"), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "cell parser my.parser not found" in p.stderr, p.stderr


def test_swagger_parser_without_a_swagger_document_is_refused(tmp_path):
    from conftest import ganymede_bin
    p = subprocess.run([ganymede_bin(), "--port", "0", "--api", "notebook-http", "--seed-uri", nb("kg_simple_api.ipynb"),
                        "--cell-parser", "kernel_gateway.notebook_http.swagger.parser"],
                       env=base_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "no cell holds a Swagger document" in p.stderr, p.stderr


def test_kg_response_info(tmp_path_factory):
    gw = start(tmp_path_factory, "kg_responses", args=["--api", "notebook-http", "--seed-uri", nb("kg_responses.ipynb")])
    try:
        r = gw.get("json")
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.json() == {"hello": "world"}
        r = gw.get("nocontent")
        assert r.status_code == 204 and r.content == b""
        r = gw.get("etag")
        assert r.status_code == 200 and r.headers["Etag"] == "1234567890"
        assert r.headers["Content-Type"] == "application/json"
    finally:
        gw.stop()


def test_kg_api_intro_contacts(tmp_path_factory):
    """KG's etc/api_examples/api_intro.ipynb, driven as its own 'Test' section does."""
    gw = start(tmp_path_factory, "kg_api_intro", args=["--api", "notebook-http", "--seed-uri", nb("kg_api_intro.ipynb")])
    try:
        r = gw.post("contacts", json={"name": "Alice Adams", "phone": "919-555-6712", "address": "42 Wallaby Way"})
        assert r.status_code == 200, r.text
        alice = r.json()["contact_id"]
        r = gw.request("PUT", f"contacts/{alice}", data={"phone": "919-444-5601"})
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.text
        gw.post("contacts", json={"name": "Bob Billiham", "phone": "860-555-1409", "address": "3712 Not Real Lane"})
        r = gw.get("contacts", params={"name": "billi"})
        assert r.status_code == 200 and [c["name"] for c in r.json().values()] == ["Bob Billiham"]
        assert gw.get("contacts").json()[alice]["phone"] == ["919-444-5601"]  # form fields are lists (KG)
        assert gw.delete(f"contacts/{alice}").status_code == 204
        assert gw.delete(f"contacts/{alice}").status_code == 404
        assert gw.request("PUT", "contacts/nobody", data={"phone": "1"}).status_code == 404
    finally:
        gw.stop()


def test_kg_endpoint_ordering(tmp_path_factory):
    gw = start(tmp_path_factory, "kg_ordering", args=["--api", "notebook-http", "--seed-uri", nb("kg_endpoint_ordering.ipynb")])
    try:
        expected = {"test/test/test/test": "1", "test/test/test/x": "2", "test/test/x": "3", "t/t/x": "3",
                    "test/x": "4", "t/x": "4", "x": "5"}
        for path, n in expected.items():
            r = gw.get(path)
            assert r.status_code == 200 and r.text == f"path param index test {n}\n", path
    finally:
        gw.stop()


def test_kg_setting_response_metadata(tmp_path_factory):
    gw = start(tmp_path_factory, "kg_metadata",
               args=["--api", "notebook-http", "--seed-uri", nb("kg_setting_response_metadata.ipynb")])
    try:
        r = gw.get("person/1", headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.json()["name"] == "Corey"
        etag = r.headers["ETag"]
        r = gw.get("person/1", headers={"Content-Type": "application/json", "If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
        r = gw.get("person/1")
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html" and "Corey is 26" in r.text
        r = gw.get("person/1", headers={"Content-Type": "application/xml"})
        assert r.text.startswith("<?xml")
        assert gw.get("person/2").status_code == 500  # KeyError in the notebook
    finally:
        gw.stop()


def test_static_path(tmp_path_factory):
    """KG's TestPublicStatic: KG_STATIC_PATH files under /public/."""
    gw = start(tmp_path_factory, "kg_static", env={"KG_API": "notebook-http", "KG_SEED_URI": nb("kg_simple_api.ipynb"),
                                                   "KG_STATIC_PATH": str(REPO / "tests" / "fixtures" / "public")})
    try:
        r = gw.get("public/index.html")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
        assert r.content == (REPO / "tests" / "fixtures" / "public" / "index.html").read_bytes()
        assert_json_error(gw.get("public/missing.html"), [404])
        status, _, data = gw.raw("GET", "/public/../notebooks/pool.ipynb")
        assert status in (400, 404) and b"cells" not in data
        status, _, data = gw.raw("GET", "/public/%2e%2e/notebooks/pool.ipynb")
        assert status in (400, 404) and b"cells" not in data
        assert gw.get("name").text == "Test Name\n"  # the notebook is still served beside it
    finally:
        gw.stop()


def test_force_kernel_name(tmp_path_factory):
    """KG's TestForceKernel: a notebook for an unknown kernel runs on the forced one."""
    gw = start(tmp_path_factory, "kg_force",
               env={"KG_API": "notebook-http", "KG_SEED_URI": nb("kg_unknown_kernel.ipynb"), "KG_FORCE_KERNEL_NAME": "python3"})
    try:
        assert gw.get("_api/spec/swagger.json").status_code == 200
    finally:
        gw.stop()


# --------------------------------------------------------------------------- pool, timeouts, failures


@pytest.fixture(scope="module")
def pool_gw(tmp_path_factory):
    gw = start(tmp_path_factory, "nb_pool",
               args=["--api", "notebook-http", "--seed-uri", nb("pool.ipynb"), "--prespawn-count", "3",
                     "--notebook-http-tracebacks", "true", "--allow-notebook-download", "true"])
    # Warm up: the pool's kernels start in the background; this waits for all three.
    with ThreadPoolExecutor(3) as ex:
        assert all(r.status_code == 200 for r in ex.map(lambda _: gw.get("sleep/0.2", timeout=120), range(3)))
    yield gw
    gw.stop()


def pids_seen(gw: Gateway, n: int) -> list[int]:
    out = []
    for _ in range(n):
        r = gw.get("pid")
        assert r.status_code == 200, r.text
        out.append(int(r.text))
    return out


def test_pool_rotates_round_robin(pool_gw):
    seen = pids_seen(pool_gw, 6)
    assert len(set(seen[:3])) == 3 and seen[3:] == seen[:3]
    assert set(seen) <= kernel_pids(pool_gw)


def test_concurrent_requests_use_the_whole_pool(pool_gw):
    """N slow requests over N kernels take about as long as one (KG serialises them, KG#329)."""
    t0 = time.monotonic()
    assert pool_gw.get("sleep/2").status_code == 200
    single = time.monotonic() - t0
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as ex:
        responses = list(ex.map(lambda _: pool_gw.get("sleep/2"), range(3)))
    together = time.monotonic() - t0
    assert all(r.status_code == 200 for r in responses)
    assert len({r.text for r in responses}) == 3, "the three requests did not run on three kernels"
    assert together < 2 * single + 1.5, f"3 concurrent requests took {together:.2f}s, one took {single:.2f}s"


def test_more_requests_than_kernels_wait_their_turn(pool_gw):
    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as ex:
        responses = list(ex.map(lambda _: pool_gw.get("sleep/1"), range(6)))
    elapsed = time.monotonic() - t0
    assert all(r.status_code == 200 for r in responses)
    per_kernel = {}
    for r in responses:
        per_kernel[r.text] = per_kernel.get(r.text, 0) + 1
    assert len(per_kernel) == 3 and max(per_kernel.values()) == 2, per_kernel
    assert elapsed >= 2.0, "a kernel ran two requests at once"


def test_endpoint_timeout_interrupts_and_keeps_the_kernel(pool_gw):
    before = kernel_pids(pool_gw)
    t0 = time.monotonic()
    r = pool_gw.get("slow")
    assert_json_error(r, [504])
    assert time.monotonic() - t0 < 15
    # The interrupted kernel is checked and serves again: still the same three kernels.
    wait_until(lambda: len(set(pids_seen(pool_gw, 3))) == 3, 30, interval=0.5, what="pool to recover")
    assert set(pids_seen(pool_gw, 3)) == before


def test_dead_kernel_is_replaced(pool_gw):
    before = kernel_pids(pool_gw)
    r = pool_gw.get("crash")
    assert_json_error(r, [500])
    assert r.json()["reason"] == "Kernel died"

    def replaced():
        now = set(pids_seen(pool_gw, 3))
        return len(now) == 3 and len(now - before) == 1 and now

    now = wait_until(replaced, 60, interval=0.5, what="the dead kernel to be replaced")
    assert len(before - now) == 1 and not any(alive(p) for p in before - now)
    # The replacement was seeded: the seed cell's imports work there too.
    assert all(pool_gw.get("counter").status_code == 200 for _ in range(3))


def test_kernel_killed_while_idle_is_replaced_without_failing_requests(pool_gw):
    import signal
    before = set(pids_seen(pool_gw, 3))
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), 10, what="the killed kernel to exit")
    time.sleep(1)  # the gateway notices the exit (and restarts the process, which the pool replaces)
    for _ in range(6):
        r = pool_gw.get("pid")
        assert r.status_code == 200, r.text
    now = wait_until(lambda: (lambda p: len(p) == 3 and victim not in p and p)(set(pids_seen(pool_gw, 3))), 60,
                     interval=0.5, what="a replacement kernel")
    assert len(now & before) == 2


def test_traceback_when_allowed(pool_gw):
    r = pool_gw.get("traceback")
    assert r.status_code == 500
    assert r.text.startswith("Error ValueError: bad value 42 \n")
    assert "inner()" in r.text and "\x1b[" not in r.text


def test_input_fails_instead_of_hanging(pool_gw):
    r = pool_gw.get("input", timeout=20)
    assert r.status_code == 500 and "StdinNotImplementedError" in r.text


def test_request_shape(pool_gw):
    r = pool_gw.post("echo?b=2&a=1&a=x+y&empty=&c=%C3%A9", data=b'{"z": 1, "a": [true, null, 2.5], "s": "\\u00e9"}',
                     headers={"Content-Type": "application/json", "X-Custom-HEADER": "v"})
    assert r.status_code == 200, r.text
    req = r.json()
    assert list(req) == ["body", "args", "path", "headers"]
    assert req["body"] == {"z": 1, "a": [True, None, 2.5], "s": "é"} and list(req["body"]) == ["z", "a", "s"]
    assert req["args"] == {"b": ["2"], "a": ["1", "x y"], "empty": [""], "c": ["é"]}
    assert req["path"] == {}
    assert req["headers"]["X-Custom-Header"] == "v" and req["headers"]["Content-Type"] == "application/json"


def test_request_body_rules(pool_gw):
    def body(data, ctype=None):
        r = pool_gw.request("PUT", "echo", data=data, headers={"Content-Type": ctype} if ctype else {})
        assert r.status_code == 200, r.text
        return r.json()["body"]

    assert body("a=1&a=2&b=x+y", "application/x-www-form-urlencoded") == {"a": ["1", "2"], "b": ["x y"]}
    assert body("not json {", "application/json") == "not json {"  # KG falls back to the text
    assert body('{"a": 1}', "application/json; charset=utf-8") == '{"a": 1}'  # KG compares the type exactly
    assert body("plain", None) == "plain"
    assert body("", None) == ""
    assert body("caf\u00e9 \u2603".encode(), "text/plain") == "caf\u00e9 \u2603"


def test_multipart_form_fields(pool_gw):
    """Form fields from a browser or requests' multipart encoder arrive as KG gives them (lists of
    values, in order); uploaded files are left out of REQUEST as in KG, even binary ones."""
    r = pool_gw.request("PUT", "echo", data={"a": ["1", "2"], "who": "caf\u00e9"},
                        files={"upload": ("blob.bin", bytes(range(256)), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["body"] == {"a": ["1", "2"], "who": ["caf\u00e9"]}
    assert r.json()["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    quoted = (b'--x y\r\nContent-Disposition: form-data; name="q"\r\n\r\nline1\r\nline2\r\n'
              b'--x y\r\nContent-Disposition: form-data; name="empty"\r\n\r\n\r\n--x y--\r\n')
    r = pool_gw.request("PUT", "echo", data=quoted, headers={"Content-Type": 'multipart/form-data; boundary="x y"'})
    assert r.status_code == 200 and r.json()["body"] == {"q": ["line1\r\nline2"], "empty": [""]}, r.text


@pytest.mark.parametrize("ctype,data,needle", [
    ("multipart/form-data", b"--b\r\n\r\n--b--", "boundary"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n", "final boundary"),
    ("multipart/form-data; boundary=b", b"--b\r\nno header end\r\n--b--", "header"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--b--", "form-data"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--", "no name"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--", "UTF-8"),
])
def test_bad_multipart_bodies(pool_gw, ctype, data, needle):
    r = pool_gw.request("PUT", "echo", data=data, headers={"Content-Type": ctype})
    body = assert_json_error(r, [400])
    assert needle in body["message"], body


def test_path_parameters_are_decoded(pool_gw):
    r = pool_gw.get("echo/x%20y%2Fz/item-7")
    assert r.status_code == 200 and r.json()["path"] == {"a": "x y/z", "b": "7"}
    assert_json_error(pool_gw.get("echo/x/thing-7"), [404])


def test_repeated_headers_become_a_list(pool_gw):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", pool_gw.port, timeout=30)
    try:
        conn.putrequest("GET", "/echo/a/item-b")
        conn.putheader("X-Twice", "1")
        conn.putheader("X-Twice", "2")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["headers"]["X-Twice"] == ["1", "2"]
    finally:
        conn.close()


def test_unicode_output(pool_gw):
    r = pool_gw.get("unicode")
    assert r.status_code == 200 and r.content.decode("utf-8") == "h\u00e9llo \u2603 \U0001F600\n"


def test_response_info_status_and_headers(pool_gw):
    r = pool_gw.post("created")
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/json" and r.headers["X-Count"] == "3"
    assert r.json() == {"ok": True}


def test_bad_response_info_is_a_json_500(pool_gw):
    for path in ("badinfo", "badstatus", "badheader"):
        r = pool_gw.get(path)
        assert_json_error(r, [500])
        assert r.json()["reason"] == "Bad ResponseInfo", path
        assert "Injected" not in r.headers


def test_bad_request_bodies(pool_gw):
    assert_json_error(pool_gw.request("PUT", "echo", data=b"\xff\xfe bad utf-8"), [400])
    assert_json_error(pool_gw.request("PUT", "echo", data=b"x" * (1024 * 1024 + 1)), [413])
    status, headers, data = pool_gw.raw("GET", "/echo/%FF/item-1")
    assert status == 400 and json.loads(data)["reason"]
    status, headers, data = pool_gw.raw("GET", "/hello?x=%FF")
    assert status == 404  # no such endpoint: the path is checked first
    status, headers, data = pool_gw.raw("GET", "/pid?x=%FF")
    assert status == 400 and json.loads(data)["message"]
    # The pool is still whole after the bad requests.
    assert len(set(pids_seen(pool_gw, 3))) == 3


def test_source_download_when_allowed(pool_gw):
    r = pool_gw.get("_api/source")
    assert r.status_code == 200
    assert r.content == (NOTEBOOKS / "pool.ipynb").read_bytes()
    assert {"cells", "metadata", "nbformat", "nbformat_minor"} <= set(r.json())


# --------------------------------------------------------------------------- several notebooks, auth, base URL


@pytest.fixture(scope="module")
def multi_gw(tmp_path_factory):
    gw = start(tmp_path_factory, "nb_multi", token="nb-token", base_url="/dash",
               args=["--notebook", f"/sales={nb('multi_sales.ipynb')}", "--notebook", f"/team/hr={nb('multi_hr.ipynb')}",
                     "--base-url", "/dash", "--auth-token", "nb-token"])
    yield gw
    gw.stop()


def test_several_notebooks_under_prefixes(multi_gw):
    assert multi_gw.get("sales/hello").text == "hello from sales\n"
    assert multi_gw.get("team/hr/hello").text == "hello from hr\n"
    assert multi_gw.post("team/hr/hello", data="x").text == "hr got x\n"
    assert multi_gw.get("sales/name").text == "sales\n"
    assert multi_gw.get("sales/_api/spec/swagger.json").json()["info"]["title"] == "multi_sales"
    assert set(multi_gw.get("team/hr/_api/spec/swagger.json").json()["paths"]) == {"/hello", "/request"}
    assert_json_error(multi_gw.get("team/hr/name"), [404])
    assert_json_error(multi_gw.get("hello"), [404])
    assert_json_error(multi_gw.get("team/hello"), [404])
    assert_json_error(multi_gw.post("sales/hello"), [405])
    assert len(kernel_pids(multi_gw)) == 2


def test_token_is_required(multi_gw):
    r = requests.get(f"http://127.0.0.1:{multi_gw.port}/dash/sales/hello", timeout=30)
    assert_json_error(r, [401])
    r = requests.get(f"http://127.0.0.1:{multi_gw.port}/dash/sales/_api/spec/swagger.json", timeout=30)
    assert_json_error(r, [401])
    r = requests.get(f"http://127.0.0.1:{multi_gw.port}/dash/sales/hello?token=nb-token", timeout=30)
    assert r.status_code == 200
    r = requests.get(f"http://127.0.0.1:{multi_gw.port}/sales/hello?token=nb-token", timeout=30)
    assert_json_error(r, [404])  # outside the base URL


def test_gateway_token_does_not_reach_the_kernel(multi_gw):
    url = f"http://127.0.0.1:{multi_gw.port}/dash/team/hr/request"
    r = requests.get(url + "?token=nb-token&x=1", timeout=30)
    assert r.status_code == 200 and r.json()["args"] == {"x": ["1"]}
    r = requests.get(url, headers={"Authorization": "token nb-token", "X-Other": "y"}, timeout=30)
    assert r.status_code == 200 and "Authorization" not in r.json()["headers"] and r.json()["headers"]["X-Other"] == "y"
    assert "nb-token" not in r.text
    # Other credentials are the notebook's business and pass unchanged.
    r = requests.get(url + "?token=nb-token&token=theirs", headers={"Authorization": "token nb-token"}, timeout=30)
    assert r.json()["args"] == {"token": ["theirs"]}


def test_dashboard_example(tmp_path_factory):
    """The README's dashboard notebook, run the way the README says."""
    gw = start(tmp_path_factory, "nb_dashboard",
               args=["--api", "notebook-http", "--seed-uri", nb("dashboard.ipynb"), "--prespawn-count", "2"])
    try:
        r = gw.get("sales")
        assert r.status_code == 200 and r.json()["north"] == 120
        for _ in range(2):  # both kernels
            r = gw.post("sales/north", json={"amount": 5})
            assert r.status_code == 201 and r.json() == {"north": 125}
        page = gw.get("")
        assert page.status_code == 200 and page.headers["Content-Type"] == "text/html"
        assert "<h1>Sales</h1>" in page.text and "Total: 360" in page.text
    finally:
        gw.stop()


# --------------------------------------------------------------------------- hot reload


def replace_file(path: Path, source: Path, tweak: str | None = None):
    """Atomic replacement, as editors and Jupyter save."""
    tmp = path.with_suffix(".tmp")
    data = source.read_text() if tweak is None else tweak
    tmp.write_text(data)
    os.replace(tmp, path)


def test_changed_notebook_is_reloaded_without_dropping_requests(tmp_path_factory):
    work = tmp_path_factory.mktemp("nb_reload_files")
    served = work / "served.ipynb"
    shutil.copy(NOTEBOOKS / "reload_v1.ipynb", served)
    gw = start(tmp_path_factory, "nb_reload",
               args=["--api", "notebook-http", "--seed-uri", str(served), "--notebook-reload-interval", "0.2",
                     "--prespawn-count", "2"])
    try:
        assert gw.get("version", timeout=120).text == "v1\n"
        # Two kernels, so polling /version is not queued behind the slow request on v1.
        wait_until(lambda: len(kernel_pids(gw)) == 2, 60, what="both v1 kernels")
        v1_kernels = kernel_pids(gw)
        slow = {}

        def slow_request():
            slow["r"] = gw.get("slow-version", timeout=60)
            slow["done"] = time.monotonic()

        t = threading.Thread(target=slow_request)
        t.start()
        time.sleep(0.5)  # the slow request is running on the v1 kernel
        replace_file(served, NOTEBOOKS / "reload_v2.ipynb")
        wait_until(lambda: gw.get("version").text == "v2\n", 60, interval=0.2, what="v2 to be served")
        v2_served = time.monotonic()
        t.join(30)
        assert slow["r"].status_code == 200 and slow["r"].text == "v1\n", "the in-flight request was dropped"
        assert slow["done"] > v2_served, "the slow request ended before the swap: nothing was in flight"
        assert_json_error(gw.get("only-in-v1"), [404])
        assert gw.get("only-in-v2").text == "v2 only\n"
        assert gw.get("_api/spec/swagger.json").json()["paths"].keys() >= {"/only-in-v2"}
        # The old version's kernel stops once its last request is done.
        wait_until(lambda: not any(alive(p) for p in v1_kernels), 30, what="v1 kernels to stop")
        assert len(kernel_pids(gw)) == 2

        # A broken save keeps the previous version serving.
        replace_file(served, served, tweak='{"cells": [')
        time.sleep(1.5)
        assert gw.get("version").text == "v2\n"
        broken_seed = json.loads((NOTEBOOKS / "reload_v1.ipynb").read_text())
        broken_seed["cells"][0]["source"] = ["raise RuntimeError('seed fails')\n"]
        replace_file(served, served, tweak=json.dumps(broken_seed))
        time.sleep(3)
        assert gw.get("version").text == "v2\n"
        assert "seed fails" in gw.log_tail(200) or "failed to start" in gw.log_tail(200)
        # And a good save after that is picked up.
        replace_file(served, NOTEBOOKS / "reload_v1.ipynb")
        wait_until(lambda: gw.get("version").text == "v1\n", 60, interval=0.2, what="v1 to be served again")
        wait_until(lambda: len(kernel_pids(gw)) == 2, 30, what="only the current kernels to remain")
    finally:
        gw.stop()


# --------------------------------------------------------------------------- startup errors


def run_expecting_failure(args, env=None, timeout=60):
    e = base_env()
    e.update(env or {})
    p = subprocess.run([ganymede_bin(), "--ip", "127.0.0.1", "--port", "0", *args], cwd=str(REPO), env=e,
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode != 0, f"started with {args}: {p.stdout}{p.stderr}"
    return p.stdout + p.stderr


@pytest.mark.parametrize("notebook,expected", [
    ("kg_zen.ipynb", "no endpoints"),
    ("unknown_kernel_api.ipynb", "no-such-kernel"),
    ("does_not_exist.ipynb", "cannot be read"),
], ids=["no-endpoints", "unknown-kernel", "missing-file"])
def test_unservable_notebook_fails_at_startup(notebook, expected):
    assert expected in run_expecting_failure(["--api", "notebook-http", "--seed-uri", nb(notebook)])


def test_invalid_notebook_json_fails_at_startup(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [}')
    assert "not valid JSON" in run_expecting_failure(["--api", "notebook-http", "--seed-uri", str(bad)])


def test_bad_mode_settings_fail_at_startup():
    assert "API module" in run_expecting_failure(["--api", "kernel_gateway.nope"])
    assert "needs a notebook" in run_expecting_failure(["--api", "notebook-http"])
    assert "mounted twice" in run_expecting_failure(["--notebook", f"/a={nb('pool.ipynb')}", "--notebook", f"/a/={nb('dashboard.ipynb')}"])
    assert "--notebook needs" in run_expecting_failure(["--api", "jupyter-websocket", "--notebook", nb("pool.ipynb")])
    assert "must not be negative" in run_expecting_failure(["--seed-uri", nb("pool.ipynb"), "--api", "notebook-http",
                                                            "--prespawn-count=-1"])
    assert "must be positive" in run_expecting_failure(["--seed-uri", nb("pool.ipynb"), "--api", "notebook-http",
                                                        "--notebook-http-timeout", "0"])
    assert "true or false" in run_expecting_failure(["--seed-uri", nb("pool.ipynb"), "--api", "notebook-http",
                                                     "--allow-notebook-download", "maybe"])


def processes_using(directory: Path) -> list[int]:
    """Processes whose command line names `directory` (kernels name their connection file)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if str(directory).encode() in f.read() and alive(int(entry)):
                        out.append(int(entry))
            except OSError:
                pass
    return out


def test_failing_seed_cells_stop_the_gateway_and_its_kernels(tmp_path):
    notebook = json.loads((NOTEBOOKS / "reload_v1.ipynb").read_text())
    notebook["cells"][0]["source"] = ["import not_a_module_anywhere\n"]
    path = tmp_path / "failing_seed.ipynb"
    path.write_text(json.dumps(notebook))
    runtime = tmp_path / "runtime"
    out = run_expecting_failure(["--api", "notebook-http", "--seed-uri", str(path), "--prespawn-count", "2"],
                                env={"JUPYTER_RUNTIME_DIR": str(runtime)}, timeout=120)
    assert "not_a_module_anywhere" in out
    wait_until(lambda: not processes_using(runtime), 10, what="the seeded kernels to be gone")


# --------------------------------------------------------------------------- notebooks from a URL


@pytest.fixture(scope="module")
def notebook_server():
    """The fixture notebooks over HTTP on 127.0.0.1 (KG_SEED_URI may be an http(s) URL)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(NOTEBOOKS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_notebook_from_url(tmp_path_factory, notebook_server):
    gw = start(tmp_path_factory, "nb_url", args=["--api", "notebook-http", "--seed-uri", f"{notebook_server}/kg_simple_api.ipynb"])
    try:
        assert gw.get("name").text == "Test Name\n"
        assert gw.get("_api/spec/swagger.json").json()["info"]["title"] == "kg_simple_api"
    finally:
        gw.stop()


def test_unreachable_notebook_url_fails_at_startup(notebook_server):
    out = run_expecting_failure(["--api", "notebook-http", "--seed-uri", f"{notebook_server}/no_such.ipynb"])
    assert "HTTP 404" in out
