"""Checks tests/fake_kube_api.py, the in-test fake Kubernetes API server, against the documented
Kubernetes API before the gateway's Kubernetes backend is tested against it.

Everything is checked over HTTP with `requests` (and, for watch streams, the standard library's
http.client, which urllib is built on, so a stream can be cut from the test thread). No
Kubernetes client library is used, so the fake is not checked against itself. Objects the fake
returns are validated against the official OpenAPI-derived JSON schemas of Kubernetes 1.29
(kubernetes-validate). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import alive, cmdline, descendants_of, wait_until
from fake_kube_api import FakeKubeAPI, expand_vars, parse_quantity

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBE_VERSION = "1.29"
PROC_ENV = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"}
SLEEP30 = ["python3", "-c", "import time; time.sleep(30)"]


# --------------------------------------------------------------------------- helpers


def validate(obj: dict):
    """Schema-check an object: both the lenient and the strict (no unknown fields) schemas."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=False)
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def validate_meta(obj: dict, kind: str):
    """Status and WatchEvent are meta.k8s.io types served with apiVersion "v1": validate() maps
    "v1" to a core schema file that does not exist, so load the meta schema the same way it does."""
    import jsonschema
    from referencing import Registry, Resource
    from kubernetes_validate.utils import schema_contents

    d = f"kubernetes-json-schema/v{KUBE_VERSION}.0-local-strict"
    schema = schema_contents(f"{d}/{kind}-meta-v1.json", KUBE_VERSION)
    defs = schema_contents(f"{d}/_definitions.json", KUBE_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.validators.Draft202012Validator(schema, registry=registry).validate(obj)


def pod_manifest(name: str | None = "p", command=None, image: str = "img:1", labels: dict | None = None,
                 resources: dict | None = None, env: list | None = None, args=None, **spec_extra) -> dict:
    c: dict = {"name": "main", "image": image}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    if resources is not None:
        c["resources"] = resources
    if env is not None:
        c["env"] = env
    meta: dict = {}
    if name is not None:
        meta["name"] = name
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"restartPolicy": "Never", "containers": [c], **spec_extra}}


class Client:
    def __init__(self, api: FakeKubeAPI, token: str | None = None):
        self.api = api
        self.s = requests.Session()
        self.s.trust_env = False  # never a proxy: 127.0.0.1 only
        self.s.headers["Authorization"] = f"Bearer {token or api.token}"

    def req(self, method, path, **kw) -> requests.Response:
        kw.setdefault("timeout", 15)
        return self.s.request(method, self.api.url + path, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, **kw):
        return self.req("POST", path, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def create_pod(self, manifest: dict, ns: str = "default", expect: int = 201) -> dict:
        r = self.post(f"/api/v1/namespaces/{ns}/pods", json=manifest)
        assert r.status_code == expect, r.text
        return r.json()

    def pod(self, name: str, ns: str = "default") -> dict:
        r = self.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_phase(self, name: str, phase: str, ns: str = "default", timeout: float = 10) -> dict:
        return wait_until(lambda: (lambda p: p if p["status"]["phase"] == phase else None)(self.pod(name, ns)),
                          timeout, what=f"pod {ns}/{name} phase {phase}")


class Watch:
    """A watch stream read on a thread; events collected in .events."""

    def __init__(self, api: FakeKubeAPI, path: str, token: str | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token or api.token}",
                                                "Accept": "application/json"})
        self.resp = self.conn.getresponse()
        self.events: list[dict] = []
        self.ended = threading.Event()
        self.raw_lines: list[bytes] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                self.raw_lines.append(line)
                if line.strip():
                    self.events.append(json.loads(line))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the stream was cut
        finally:
            self.ended.set()

    def wait_for(self, pred, timeout: float = 10, what: str = "watch event"):
        return wait_until(lambda: next((e for e in list(self.events) if pred(e)), None), timeout, what=what)

    def summary(self) -> list[tuple[str, str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", ""), e["object"].get("status", {}).get("phase", ""))
                for e in self.events]

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self._t.join(timeout=5)
        self.conn.close()


def assert_status(r: requests.Response, code: int, reason: str, name: str | None = None, kind: str | None = None):
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    st = r.json()
    assert st["kind"] == "Status" and st["apiVersion"] == "v1", st
    assert st["metadata"] == {} and st["status"] == "Failure" and st["reason"] == reason and st["code"] == code, st
    assert isinstance(st["message"], str) and st["message"], st
    if name is not None:
        assert st["details"]["name"] == name, st
    if kind is not None:
        assert st["details"]["kind"] == kind, st
    validate_meta(st, "status")
    return st


@pytest.fixture
def api(tmp_path):
    a = FakeKubeAPI(tmp_path / "kube", env=PROC_ENV, images={"kernel:1": ["python3", "-c"]},
                    fail_images={"bad/image:1": "ImagePullBackOff"})
    a.start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def k(api):
    c = Client(api)
    yield c
    c.s.close()


# --------------------------------------------------------------------------- unit: helpers


def test_expand_vars_follows_kubernetes_expansion():
    m = {"A": "1", "B": "x y"}
    assert expand_vars("$(A)", m) == "1"
    assert expand_vars("pre$(A)post $(B)", m) == "pre1post x y"
    assert expand_vars("$(MISSING)", m) == "$(MISSING)"
    assert expand_vars("$$(A)", m) == "$(A)"
    assert expand_vars("$$", m) == "$"
    assert expand_vars("$x $( $", m) == "$x $( $"
    assert expand_vars("$(A", m) == "$(A"


def test_parse_quantity():
    assert parse_quantity("500m") * 2 == 1
    assert parse_quantity("2") == 2
    assert parse_quantity("512Mi") == 512 * 2 ** 20
    assert parse_quantity("2Gi") == 2 * 2 ** 30
    assert parse_quantity("1G") == 10 ** 9
    assert parse_quantity("1e3") == 1000
    assert parse_quantity(1) == 1
    with pytest.raises(ValueError):
        parse_quantity("1 cpu")


# --------------------------------------------------------------------------- config, auth, routing


def test_kubeconfig(api, tmp_path):
    path = api.kubeconfig(tmp_path / "cfg" / "kubeconfig", namespace="kernels")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["apiVersion"] == "v1" and cfg["kind"] == "Config"
    ctx_name = cfg["current-context"]
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    assert ctx["namespace"] == "kernels"
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    assert cluster["server"] == api.url and api.url.startswith("http://127.0.0.1:")
    assert user["token"] == api.token


def test_auth_required(api):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {api.token}"}):
        r = requests.get(api.url + "/api/v1/namespaces/default/pods", headers=headers, timeout=10)
        st = assert_status(r, 401, "Unauthorized")
        assert st["message"] == "Unauthorized"
    # an unauthorized create does nothing
    r = requests.post(api.url + "/api/v1/namespaces/default/pods", json=pod_manifest("x", SLEEP30), timeout=10)
    assert_status(r, 401, "Unauthorized")
    assert api.pods() == []
    # an unauthorized watch is refused before streaming
    w = Watch(api, "/api/v1/namespaces/default/pods?watch=true", token="nope")
    try:
        assert w.resp.status == 401
        assert w.ended.wait(5)
        assert json.loads(b"".join(w.raw_lines))["reason"] == "Unauthorized"
    finally:
        w.close()
    # the request log records everything, including refused requests
    assert api.requests[0]["method"] == "GET" and api.requests[0]["path"] == "/api/v1/namespaces/default/pods"
    assert api.requests[0]["headers"].get("Authorization") is None
    assert any(r["method"] == "POST" and r["body"]["metadata"]["name"] == "x" for r in api.requests)


def test_unknown_routes_and_methods(k):
    assert_status(k.get("/api/v1/services"), 404, "NotFound")
    assert_status(k.get("/apis/apps/v1/deployments"), 404, "NotFound")
    assert_status(k.req("PUT", "/api/v1/namespaces/default/pods/x", json={}), 405, "MethodNotAllowed")
    assert_status(k.req("PATCH", "/api/v1/namespaces/default", json={}), 405, "MethodNotAllowed")
    assert_status(k.delete("/api/v1/namespaces/default/pods"), 405, "MethodNotAllowed")
    r = k.get("/version")
    assert r.status_code == 200 and r.json()["major"] == "1"
    r = k.get("/api/v1")
    assert r.status_code == 200 and r.json()["kind"] == "APIResourceList"
    assert {x["name"] for x in r.json()["resources"]} >= {"pods", "namespaces"}


# --------------------------------------------------------------------------- create / get / list


def test_create_get_list(api, k):
    created = k.create_pod(pod_manifest("alpha", SLEEP30, labels={"app": "kernel", "kernel_id": "k1"}))
    assert created["kind"] == "Pod" and created["apiVersion"] == "v1"
    md = created["metadata"]
    assert md["name"] == "alpha" and md["namespace"] == "default"
    assert len(md["uid"]) == 36 and md["uid"].count("-") == 4
    assert md["resourceVersion"].isdigit()
    assert time.strptime(md["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert created["status"]["phase"] == "Pending" and isinstance(created["status"]["conditions"], list)
    assert created["spec"]["terminationGracePeriodSeconds"] == 30  # apiserver defaulting
    validate(created)

    k.create_pod(pod_manifest("beta", SLEEP30, labels={"app": "kernel", "kernel_id": "k2"}))
    k.create_pod(pod_manifest("gamma", SLEEP30, labels={"app": "other"}))
    gen = k.create_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "kernel-"},
                        "spec": {"containers": [{"name": "c", "image": "i:1", "command": SLEEP30}]}})
    gname = gen["metadata"]["name"]
    assert gname.startswith("kernel-") and len(gname) == len("kernel-") + 5 and gname.islower()
    assert gen["metadata"]["generateName"] == "kernel-"

    got = k.pod("alpha")
    assert got["metadata"]["uid"] == md["uid"]
    assert int(got["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])
    validate(got)
    assert_status(k.get("/api/v1/namespaces/default/pods/nope"), 404, "NotFound", "nope", "pods")

    def names(query: str, path="/api/v1/namespaces/default/pods") -> list[str]:
        r = k.get(path, params=query and dict(p.split("=", 1) for p in query.split("&")))
        assert r.status_code == 200, r.text
        lst = r.json()
        assert lst["kind"] == "PodList" and lst["apiVersion"] == "v1"
        assert int(lst["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])
        validate(lst)
        for item in lst["items"]:  # as from a real apiserver: items of a typed list carry no kind
            assert "kind" not in item and item["metadata"]["namespace"]
        return sorted(i["metadata"]["name"] for i in lst["items"])

    assert names("") == sorted(["alpha", "beta", "gamma", gname])
    assert names("labelSelector=app=kernel") == ["alpha", "beta"]
    assert names("labelSelector=app==kernel") == ["alpha", "beta"]
    assert names("labelSelector=app!=kernel") == sorted(["gamma", gname])  # != also matches a missing label
    assert names("labelSelector=kernel_id") == ["alpha", "beta"]
    assert names("labelSelector=!kernel_id") == sorted(["gamma", gname])
    assert names("labelSelector=app=kernel,kernel_id=k2") == ["beta"]
    assert names("labelSelector=kernel_id in (k1,k9)") == ["alpha"]
    assert names("fieldSelector=metadata.name=beta") == ["beta"]
    assert names("fieldSelector=metadata.name!=beta,metadata.namespace=default") == sorted(["alpha", "gamma", gname])
    assert names("labelSelector=app=kernel&fieldSelector=metadata.name=alpha") == ["alpha"]
    wait_until(lambda: len(names("fieldSelector=status.phase=Running")) == 4, 10, what="pods running")
    assert names("fieldSelector=status.phase=Pending") == []
    assert names("", "/api/v1/namespaces/elsewhere/pods") == []  # a list in a missing namespace is empty

    # across namespaces
    r = k.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    assert r.status_code == 201, r.text
    k.create_pod(pod_manifest("delta", SLEEP30, labels={"app": "kernel"}), ns="team")
    assert names("labelSelector=app=kernel", "/api/v1/pods") == ["alpha", "beta", "delta"]
    assert names("fieldSelector=metadata.namespace=team", "/api/v1/pods") == ["delta"]

    # bad selectors are 400 BadRequest
    assert_status(k.get("/api/v1/pods", params={"fieldSelector": "spec.containers=x"}), 400, "BadRequest")
    assert_status(k.get("/api/v1/pods", params={"labelSelector": "a=(b"}), 400, "BadRequest")

    assert {p["metadata"]["name"] for p in api.pods()} == {"alpha", "beta", "gamma", gname, "delta"}
    assert {p["metadata"]["name"] for p in api.pods("team")} == {"delta"}


def test_create_errors(api, k):
    k.create_pod(pod_manifest("dup", SLEEP30))
    r = k.post("/api/v1/namespaces/default/pods", json=pod_manifest("dup", SLEEP30))
    st = assert_status(r, 409, "AlreadyExists", "dup", "pods")
    assert st["message"] == 'pods "dup" already exists'

    r = k.post("/api/v1/namespaces/missing/pods", json=pod_manifest("x", SLEEP30))
    st = assert_status(r, 404, "NotFound", "missing", "namespaces")
    assert st["message"] == 'namespaces "missing" not found'

    def invalid(manifest, field, name=""):
        r = k.post("/api/v1/namespaces/default/pods", json=manifest)
        st = assert_status(r, 422, "Invalid", name, "Pod")
        assert any(c["field"] == field for c in st["details"]["causes"]), st
        assert st["message"].startswith(f'Pod "{name}" is invalid: '), st
        return st

    invalid(pod_manifest(None, SLEEP30), "metadata.name")
    invalid(pod_manifest("Bad_Name", SLEEP30), "metadata.name", "Bad_Name")
    invalid(pod_manifest("x" * 254, SLEEP30), "metadata.name", "x" * 254)
    m = pod_manifest("nocontainers")
    m["spec"]["containers"] = []
    invalid(m, "spec.containers", "nocontainers")
    m = pod_manifest("nospec")
    del m["spec"]
    invalid(m, "spec.containers", "nospec")
    m = pod_manifest("noimage", SLEEP30)
    del m["spec"]["containers"][0]["image"]
    invalid(m, "spec.containers[0].image", "noimage")
    m = pod_manifest("noname", SLEEP30)
    del m["spec"]["containers"][0]["name"]
    invalid(m, "spec.containers[0].name", "noname")
    invalid(pod_manifest("badlabel", SLEEP30, labels={"user": "a@b.c"}), "metadata.labels", "badlabel")
    invalid(pod_manifest("gpu", SLEEP30, resources={"requests": {"nvidia.com/gpu": "1"}}),
            "spec.containers[0].resources.limits", "gpu")
    invalid(pod_manifest("env", SLEEP30, env=[{"name": "1BAD", "value": "x"}]), "spec.containers[0].env[0].name", "env")

    # wrong kind / apiVersion / JSON types / namespace / media type: 400 (decode errors), as the apiserver does
    m = pod_manifest("x", SLEEP30)
    m["kind"] = "Namespace"
    assert_status(k.post("/api/v1/namespaces/default/pods", json=m), 400, "BadRequest")
    m = pod_manifest("x", SLEEP30)
    m["apiVersion"] = "apps/v1"
    assert_status(k.post("/api/v1/namespaces/default/pods", json=m), 400, "BadRequest")
    assert_status(k.post("/api/v1/namespaces/default/pods", json=pod_manifest("x", SLEEP30, env=[{"name": "A", "value": 5}])),
                  400, "BadRequest")
    m = pod_manifest("x", SLEEP30)
    m["metadata"]["namespace"] = "other"
    assert_status(k.post("/api/v1/namespaces/default/pods", json=m), 400, "BadRequest")
    assert_status(k.post("/api/v1/namespaces/default/pods", data="{not json", headers={"Content-Type": "application/json"}),
                  400, "BadRequest")
    assert_status(k.post("/api/v1/namespaces/default/pods", data=json.dumps(pod_manifest("x", SLEEP30)),
                         headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")

    assert [p["metadata"]["name"] for p in api.pods()] == ["dup"]


def test_unknown_fields_warn_or_fail(api, k):
    m = pod_manifest("typo", SLEEP30)
    m["spec"]["containers"][0]["evn"] = [{"name": "A", "value": "1"}]
    m["metadata"]["label"] = {"a": "b"}
    # default fieldValidation (Warn): created, unknown fields dropped... and reported
    r = k.post("/api/v1/namespaces/default/pods", json=m)
    assert r.status_code == 201, r.text
    assert r.headers["Warning"] == ('299 - "unknown field \\"metadata.label\\"", '
                                    '299 - "unknown field \\"spec.containers[0].evn\\""')
    assert api.warnings == ["metadata.label", "spec.containers[0].evn"]
    stored = r.json()
    assert "label" not in stored["metadata"] and "evn" not in stored["spec"]["containers"][0]
    validate(stored)
    m["metadata"]["name"] = "typo2"
    r = k.post("/api/v1/namespaces/default/pods", json=m, params={"fieldValidation": "Strict"})
    st = assert_status(r, 400, "BadRequest")
    assert 'unknown field "spec.containers[0].evn"' in st["message"]
    r = k.post("/api/v1/namespaces/default/pods", json=m, params={"fieldValidation": "Ignore"})
    assert r.status_code == 201 and "Warning" not in r.headers
    # a correct manifest (as the tests here send) has none
    k.create_pod(pod_manifest("clean", SLEEP30, labels={"a": "b"}, env=[{"name": "A", "value": "1"}],
                              resources={"limits": {"cpu": "100m"}}))
    assert len(api.warnings) == 2


# --------------------------------------------------------------------------- lifecycle


def test_running_pod_delete_and_watch(api, k):
    start = Watch(api, "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dkernel")
    try:
        assert start.resp.status == 200
        assert start.resp.getheader("Content-Type") == "application/json"
        assert start.resp.getheader("Transfer-Encoding") == "chunked"
        created = k.create_pod(pod_manifest("sleeper", SLEEP30, labels={"app": "kernel"}))
        k.create_pod(pod_manifest("unrelated", SLEEP30, labels={"app": "other"}))
        pod = k.wait_phase("sleeper", "Running")
        validate(pod)
        st = pod["status"]
        assert st["podIP"] == "127.0.0.1" and st["hostIP"] == "127.0.0.1" and st["startTime"]
        assert pod["spec"]["nodeName"]
        cs = st["containerStatuses"][0]
        assert cs["name"] == "main" and cs["ready"] is True and cs["restartCount"] == 0
        assert cs["state"]["running"]["startedAt"]
        conds = {c["type"]: c["status"] for c in st["conditions"]}
        assert conds["PodScheduled"] == "True" and conds["Ready"] == "True"

        pid = api.pod_pid("default", "sleeper")
        assert pid and alive(pid)
        assert "time.sleep(30)" in cmdline(pid)
        assert os.getpgid(pid) == pid  # its own process group (start_new_session)

        t0 = time.monotonic()
        r = k.delete("/api/v1/namespaces/default/pods/sleeper", params={"gracePeriodSeconds": "5"})
        assert r.status_code == 200, r.text
        deleted = r.json()
        assert deleted["kind"] == "Pod" and deleted["metadata"]["deletionTimestamp"]
        assert deleted["metadata"]["deletionGracePeriodSeconds"] == 5
        validate(deleted)
        ev = start.wait_for(lambda e: e["type"] == "DELETED", what="DELETED event")
        assert time.monotonic() - t0 < 4, "SIGTERM ends a plain sleep at once, not after the grace period"
        validate(ev["object"])
        validate_meta(ev, "watchevent")
        assert ev["object"]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 128 + signal.SIGTERM
        wait_until(lambda: not alive(pid), 5, what="container process to go")
        assert_status(k.get("/api/v1/namespaces/default/pods/sleeper"), 404, "NotFound", "sleeper", "pods")
        assert_status(k.delete("/api/v1/namespaces/default/pods/sleeper"), 404, "NotFound", "sleeper", "pods")

        seq = [t for t, n, _ in start.summary() if n == "sleeper"]
        assert seq[0] == "ADDED" and seq[-1] == "DELETED" and set(seq[1:-1]) == {"MODIFIED"}, start.summary()
        assert all(n == "sleeper" for _, n, _ in start.summary()), "label selector applies to events"
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in start.events]
        assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
        phases = [p for _, _, p in start.summary()]
        assert "Running" in phases
        # the MODIFIED event that announced the deletion
        assert any(e["type"] == "MODIFIED" and e["object"]["metadata"].get("deletionTimestamp") for e in start.events)
        assert created["metadata"]["uid"] == ev["object"]["metadata"]["uid"]
    finally:
        start.close()


def test_watch_resource_version_timeout_and_filters(api, k):
    k.create_pod(pod_manifest("w1", SLEEP30, labels={"app": "kernel"}))
    k.wait_phase("w1", "Running")
    lst = k.get("/api/v1/namespaces/default/pods").json()
    rv = lst["metadata"]["resourceVersion"]

    # no resourceVersion: synthetic ADDED for what exists, then live events; timeoutSeconds ends it
    w0 = Watch(api, "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1")
    # resourceVersion given: only later events
    w1 = Watch(api, f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=20")
    # resourceVersion=0: like absent
    w2 = Watch(api, "/api/v1/pods?watch=true&resourceVersion=0&timeoutSeconds=20")
    # field selector on phase: pods enter as ADDED when they start to match, leave as DELETED
    w3 = Watch(api, "/api/v1/namespaces/default/pods?watch=true&fieldSelector=status.phase%3DRunning&timeoutSeconds=20")
    # a selector that matches nothing
    w4 = Watch(api, "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dnone&timeoutSeconds=20")
    # a single object, as clients watch one pod
    w5 = Watch(api, "/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name%3Dw2&timeoutSeconds=20")
    try:
        t0 = time.monotonic()
        assert w0.ended.wait(5), "timeoutSeconds should close the stream"
        assert 0.9 <= time.monotonic() - t0 < 3
        assert w0.summary() == [("ADDED", "w1", "Running")]
        validate_meta(w0.events[0], "watchevent")

        k.create_pod(pod_manifest("w2", ["python3", "-c", "import time; time.sleep(0.5)"], labels={"app": "kernel"}))
        k.wait_phase("w2", "Succeeded")
        r = k.delete("/api/v1/namespaces/default/pods/w1", params={"gracePeriodSeconds": "1"})
        assert r.status_code == 200
        w1.wait_for(lambda e: e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "w1")

        names1 = [(t, n) for t, n, _ in w1.summary()]
        assert ("ADDED", "w1") not in names1, "events at or before resourceVersion are not replayed"
        assert names1[0] == ("ADDED", "w2")
        assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in w1.events)
        assert [p for t, n, p in w1.summary() if n == "w2"][-1] == "Succeeded"

        w2.wait_for(lambda e: e["type"] == "DELETED")
        assert w2.summary()[0] == ("ADDED", "w1", "Running")

        w3.wait_for(lambda e: e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "w1")
        s3 = [(t, n) for t, n, _ in w3.summary()]
        assert s3[0] == ("ADDED", "w1")
        assert ("ADDED", "w2") in s3 and ("DELETED", "w2") in s3, s3  # Running, then left the selector
        assert all(p == "Running" for _, _, p in w3.summary()), "filtered watch sends objects that match"

        w5.wait_for(lambda e: e["object"]["status"].get("phase") == "Succeeded")
        assert {n for _, n, _ in w5.summary()} == {"w2"}
        assert w4.events == []
        for w in (w1, w2, w3, w5):
            for e in w.events:
                validate_meta(e, "watchevent")
                validate(e["object"])
    finally:
        for w in (w0, w1, w2, w3, w4, w5):
            w.close()
    # closed watches are noticed by the server: their connections go away
    wait_until(lambda: len(api._conns) <= 1, 5, what="watch connections to close")


def test_watch_too_old_resource_version(tmp_path):
    api = FakeKubeAPI(tmp_path, env=PROC_ENV, history_limit=3).start()
    try:
        k = Client(api)
        for i in range(4):  # resourceVersions 2..5: only 3..5 are kept
            k.post("/api/v1/namespaces", json={"metadata": {"name": f"ns{i}"}})
        w = Watch(api, "/api/v1/namespaces/default/pods?watch=true&resourceVersion=1")
        assert w.ended.wait(5)
        assert len(w.events) == 1 and w.events[0]["type"] == "ERROR"
        st = w.events[0]["object"]
        assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"
        validate_meta(st, "status")
        w.close()
    finally:
        api.stop()


def test_grace_period_then_sigkill(api, k):
    ignore_term = ["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                    "print('ready', flush=True); time.sleep(30)"]
    k.create_pod(pod_manifest("stubborn", ignore_term))
    k.wait_phase("stubborn", "Running")
    wait_until(lambda: "ready" in api.log_path("default", "stubborn").read_text(), 10, what="SIGTERM ignored")
    pid = api.pod_pid("default", "stubborn")
    t0 = time.monotonic()
    # DeleteOptions in the body (the apiserver then ignores query parameters)
    r = k.delete("/api/v1/namespaces/default/pods/stubborn", params={"gracePeriodSeconds": "30"},
                 json={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1})
    assert r.status_code == 200 and r.json()["metadata"]["deletionGracePeriodSeconds"] == 1
    assert alive(pid)
    wait_until(lambda: not api.pods(), 10, what="pod removal")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4, elapsed
    assert not alive(pid)
    last = api.events()[-1]
    assert last["type"] == "DELETED"
    term = last["object"]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "Error"
    assert last["object"]["status"]["phase"] == "Failed"


def test_delete_grace_zero_is_immediate(api, k):
    k.create_pod(pod_manifest("now", SLEEP30))
    k.wait_phase("now", "Running")
    pid = api.pod_pid("default", "now")
    w = Watch(api, "/api/v1/namespaces/default/pods?watch=true&resourceVersion="
              + k.pod("now")["metadata"]["resourceVersion"])
    try:
        r = k.delete("/api/v1/namespaces/default/pods/now", params={"gracePeriodSeconds": "0"})
        assert r.status_code == 200 and r.json()["metadata"]["deletionGracePeriodSeconds"] == 0
        assert not alive(pid), "the process is gone when DELETE returns"
        assert api.pods() == []
        w.wait_for(lambda e: e["type"] == "DELETED")
        assert [t for t, _, _ in w.summary()] == ["DELETED"]
    finally:
        w.close()


def test_exit_codes(api, k):
    k.create_pod(pod_manifest("fails", ["python3", "-c", "import sys; print('bye'); sys.exit(3)"]))
    k.create_pod(pod_manifest("works", ["python3", "-c", "pass"]))
    p = k.wait_phase("fails", "Failed")
    validate(p)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error" and term["startedAt"] and term["finishedAt"]
    assert p["status"]["containerStatuses"][0]["ready"] is False
    assert "bye" in api.log_path("default", "fails").read_text()
    r = k.get("/api/v1/namespaces/default/pods/fails/log")
    assert r.status_code == 200 and "bye" in r.text
    p = k.wait_phase("works", "Succeeded")
    validate(p)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    # a terminated pod is deleted at once
    r = k.delete("/api/v1/namespaces/default/pods/works")
    assert r.status_code == 200
    assert api.pods() == [k.pod("fails")]


def test_start_error(api, k):
    k.create_pod(pod_manifest("noexe", ["/nonexistent/binary"]))
    p = k.wait_phase("noexe", "Failed")
    validate(p)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128


def test_unschedulable_then_scheduled(tmp_path):
    api = FakeKubeAPI(tmp_path, env=PROC_ENV, node_capacity={"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "0"}).start()
    k = Client(api)
    try:
        k.create_pod(pod_manifest("gpu", SLEEP30, resources={"limits": {"nvidia.com/gpu": "1"}}))
        k.create_pod(pod_manifest("big", SLEEP30, resources={"requests": {"cpu": "1500m", "memory": "512Mi"}}))
        k.wait_phase("big", "Running")
        k.create_pod(pod_manifest("waits", SLEEP30, resources={"limits": {"cpu": "1", "memory": "1G"}}))

        def unschedulable(name):
            p = k.pod(name)
            c = next((c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"), None)
            return p if c and c["status"] == "False" else None

        p = wait_until(lambda: unschedulable("gpu"), 10, what="gpu pod unschedulable")
        validate(p)
        c = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
        assert c["reason"] == "Unschedulable"
        assert c["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
        assert p["status"]["phase"] == "Pending" and "containerStatuses" not in p["status"]
        # requests defaulted from limits, as the apiserver does
        assert p["spec"]["containers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "1"}

        p = wait_until(lambda: unschedulable("waits"), 10, what="cpu pod unschedulable")
        c = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
        assert c["message"] == "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        assert api.pod_pid("default", "waits") is None

        # freeing the node lets the pending pod run (the scheduler retries)
        assert k.delete("/api/v1/namespaces/default/pods/big", params={"gracePeriodSeconds": "1"}).status_code == 200
        k.wait_phase("waits", "Running")
        assert k.pod("gpu")["status"]["phase"] == "Pending"
        # an unscheduled pod is deleted at once
        assert k.delete("/api/v1/namespaces/default/pods/gpu").status_code == 200
        assert "gpu" not in [p["metadata"]["name"] for p in api.pods()]
    finally:
        k.s.close()
        api.stop()


def test_fail_images(api, k):
    k.create_pod(pod_manifest("badimg", SLEEP30, image="bad/image:1"))
    k.create_pod(pod_manifest("noentry", None, image="unknown/image:2"))

    def waiting(name):
        p = k.pod(name)
        cs = p["status"].get("containerStatuses") or [{}]
        return p if "waiting" in cs[0].get("state", {}) and cs[0]["state"]["waiting"]["reason"] != "ContainerCreating" else None

    p = wait_until(lambda: waiting("badimg"), 10, what="image pull failure")
    validate(p)
    cs = p["status"]["containerStatuses"][0]
    assert p["status"]["phase"] == "Pending"
    assert cs["state"]["waiting"] == {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "bad/image:1"'}
    assert cs["ready"] is False and cs["restartCount"] == 0 and cs["name"] == "main" and cs["image"] == "bad/image:1"
    assert api.pod_pid("default", "badimg") is None
    p = wait_until(lambda: waiting("noentry"), 10, what="unknown image failure")
    assert p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    time.sleep(0.3)
    assert k.pod("badimg")["status"]["phase"] == "Pending"
    assert k.delete("/api/v1/namespaces/default/pods/badimg", params={"gracePeriodSeconds": "5"}).status_code == 200
    wait_until(lambda: [p["metadata"]["name"] for p in api.pods()] == ["noentry"], 5, what="removal")


def test_oom_kill(api, k):
    k.create_pod(pod_manifest("hog", ["sh", "-c", "sleep 30 & exec python3 -c 'import time; time.sleep(30)'"]))
    k.wait_phase("hog", "Running")
    pid = api.pod_pid("default", "hog")
    wait_until(lambda: descendants_of(pid) or None, 5, what="child in the container")
    group = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
    assert len(group) >= 2
    api.oom_kill("default", "hog")
    p = k.wait_phase("hog", "Failed")
    validate(p)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    wait_until(lambda: not any(alive(int(x)) for x in group), 5, what="the whole group to die")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_var_expansion_env_and_entrypoint(api, k):
    show = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd()}))"
    k.create_pod(pod_manifest(
        "expand", ["python3", "-c", show, "$(KERNEL_ID)"],
        args=["--conn=$(CONN)", "$$(KERNEL_ID)", "$(UNDEFINED)", "x$(KERNEL_ID)y", "$$"],
        env=[{"name": "KERNEL_ID", "value": "abc-123"},
             {"name": "CONN", "value": "/tmp/$(KERNEL_ID).json"},
             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]))
    k.wait_phase("expand", "Succeeded")
    out = json.loads(api.log_path("default", "expand").read_text().strip().splitlines()[-1])
    assert out["argv"] == ["abc-123", "--conn=/tmp/abc-123.json", "$(KERNEL_ID)", "$(UNDEFINED)", "xabc-123y", "$"]
    env = out["env"]
    assert env["KERNEL_ID"] == "abc-123" and env["CONN"] == "/tmp/abc-123.json"
    assert "POD_NAME" not in env  # valueFrom is not simulated
    assert env["PATH"] == PROC_ENV["PATH"]  # the fake's env
    assert Path(out["cwd"]).is_relative_to(api.workdir)

    # no command: the image's entrypoint (images[image]) + args
    k.create_pod(pod_manifest("entry", None, image="kernel:1", args=["print('from entrypoint $(X)')"],
                              env=[{"name": "X", "value": "ok"}]))
    k.wait_phase("entry", "Succeeded")
    assert "from entrypoint ok" in api.log_path("default", "entry").read_text()


def test_namespaces(api, k):
    r = k.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kernels"}})
    assert r.status_code == 201, r.text
    ns = r.json()
    assert ns["kind"] == "Namespace" and ns["status"]["phase"] == "Active" and ns["metadata"]["uid"]
    validate(ns)
    assert_status(k.post("/api/v1/namespaces", json={"metadata": {"name": "kernels"}}), 409, "AlreadyExists",
                  "kernels", "namespaces")
    assert_status(k.post("/api/v1/namespaces", json={"metadata": {"name": "Not.A.Label"}}), 422, "Invalid")
    got = k.get("/api/v1/namespaces/kernels").json()
    assert got["metadata"]["uid"] == ns["metadata"]["uid"]
    validate(got)
    lst = k.get("/api/v1/namespaces").json()
    assert lst["kind"] == "NamespaceList" and {i["metadata"]["name"] for i in lst["items"]} == {"default", "kernels"}
    validate(lst)
    assert_status(k.get("/api/v1/namespaces/nope"), 404, "NotFound", "nope", "namespaces")

    # ignores SIGTERM: the namespace stays Terminating for the pod's grace period (2 s)
    k.create_pod(pod_manifest("inns", ["python3", "-c", "import signal, time; "
                                       "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"],
                              terminationGracePeriodSeconds=2), ns="kernels")
    k.wait_phase("inns", "Running", ns="kernels")
    pid = api.pod_pid("kernels", "inns")
    r = k.delete("/api/v1/namespaces/kernels")
    assert r.status_code == 200 and r.json()["kind"] == "Namespace"
    assert r.json()["status"]["phase"] == "Terminating"
    validate(r.json())
    st = assert_status(k.post("/api/v1/namespaces/kernels/pods", json=pod_manifest("late", SLEEP30)), 403, "Forbidden")
    assert "being terminated" in st["message"]
    assert k.get("/api/v1/namespaces/kernels").json()["status"]["phase"] == "Terminating"
    wait_until(lambda: k.get("/api/v1/namespaces/kernels").status_code == 404, 10, what="namespace removal")
    assert api.pods("kernels") == [] and not alive(pid)
    assert_status(k.delete("/api/v1/namespaces/kernels"), 404, "NotFound", "kernels", "namespaces")


def test_stop_leaves_no_process(tmp_path):
    api = FakeKubeAPI(tmp_path, env=PROC_ENV).start()
    k = Client(api)
    pids: list[int] = []
    kids: set[int] = set()
    w = None
    try:
        for i in range(3):
            k.create_pod(pod_manifest(f"s{i}", ["sh", "-c", "sleep 30 & sleep 30 & wait"]))
        k.create_pod(pod_manifest("stubborn", ["python3", "-c", "import signal, time; "
                                               "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"]))
        for name in ("s0", "s1", "s2", "stubborn"):
            k.wait_phase(name, "Running")
            pids.append(api.pod_pid("default", name))
        # a pod being deleted gracefully when the server stops
        k.delete("/api/v1/namespaces/default/pods/stubborn", params={"gracePeriodSeconds": "20"})
        for p in pids:
            kids |= wait_until(lambda p=p: descendants_of(p) if p != pids[-1] else {p}, 5, what="children")
        w = Watch(api, "/api/v1/pods?watch=true")
    finally:
        k.s.close()
        t0 = time.monotonic()
        api.stop()
    assert time.monotonic() - t0 < 5
    everything = set(pids) | kids
    wait_until(lambda: not any(alive(p) for p in everything), 5, what="all simulated processes to go")
    assert w is not None and w.ended.wait(5), "watch streams end when the server stops"
    w.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(api.url + "/api/v1/pods", timeout=2)
    api.stop()  # idempotent
