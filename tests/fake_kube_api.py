"""An in-test fake of the Kubernetes API server (core/v1 Pods and Namespaces) with a simulated
one-node kubelet that runs each container as a local process.

No cluster can run in the test environment, so the Kubernetes kernel backend is tested against
this fake. It follows the documented REST API (https://kubernetes.io/docs/reference/kubernetes-api/
and https://kubernetes.io/docs/reference/using-api/api-concepts/): request and response shapes,
`Status` errors, list/watch with `labelSelector`/`fieldSelector`/`resourceVersion`/
`timeoutSeconds`, graceful deletion. tests/test_fake_kube_api.py checks the fake itself.

Usage:

    api = FakeKubeAPI(tmp_path, images={"kernel:1": ["python3", "-m", "kernel"]}).start()
    try:
        api.kubeconfig(tmp_path / "kubeconfig")
        ...  # point the code under test at api.url / the kubeconfig
    finally:
        api.stop()

Simulated node ("fake-node", capacity `node_capacity`): a pod is scheduled if its containers'
requests (requests defaulted from limits) fit in what the node's non-terminated pods leave;
otherwise it stays Pending/Unschedulable and is retried whenever a pod ends or goes away. A
scheduled pod's containers run as local processes (argv = command + args with $(VAR) expanded,
or images[image] + args), each in its own session/process group, output to
<workdir>/<ns>_<pod>.log. Containers are never restarted (as restartPolicy: Never).

Unknown fields in a created pod are dropped and reported as the apiserver does (a `Warning`
header, also collected in `.warnings`; 400 with ?fieldValidation=Strict), using
kubernetes-validate's schemas when it is installed. Otherwise only the standard library is used.
"""

from __future__ import annotations

import copy
import datetime as _dt
import errno
import fractions
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

NODE_NAME = "fake-node"
DEFAULT_NODE_CAPACITY = {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "0"}
DEFAULT_GRACE = 30
KUBE_VERSION = {"major": "1", "minor": "29", "gitVersion": "v1.29.0-fake", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.5",
                "compiler": "gc", "platform": "linux/amd64"}

# ----------------------------------------------------------------------------- small helpers


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(offset_seconds: float = 0.0) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Raised by request handlers: becomes a `Status` response."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
          "message": message, "reason": reason}
    if details is not None:
        st["details"] = details
    st["code"] = code
    return st


def _not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apiserver's utilrand alphabet

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def _subdomain_errors(v: str) -> list[str]:
    errs = []
    if len(v) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.match(v):
        errs.append(SUBDOMAIN_MSG)
    return errs


def _dns_label_errors(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.match(v):
        errs.append(LABEL_MSG)
    return errs


def _qualified_name_errors(key: str) -> list[str]:
    """Label and annotation keys: [prefix/]name (k8s.io/apimachinery IsQualifiedName)."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = _subdomain_errors(prefix)
        if errs:
            return ["prefix part " + e for e in errs]
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
                "and '/' (e.g. 'example.com/MyName')"]
    if not name:
        return ["name part must be non-empty"]
    if len(name) > 63:
        return ["name part must be no more than 63 characters"]
    if not _QUALIFIED_NAME_RE.match(name):
        return ["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    return []


def _label_value_errors(v: str) -> list[str]:
    if len(v) > 63:
        return ["must be no more than 63 characters"]
    if not _LABEL_VALUE_RE.match(v):
        return ["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
    return []


# ----------------------------------------------------------------------------- quantities

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": fractions.Fraction(1, 10 ** 9), "u": fractions.Fraction(1, 10 ** 6),
            "m": fractions.Fraction(1, 1000), "": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9,
            "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}


def parse_quantity(q: Any) -> fractions.Fraction:
    """A resource.Quantity ("500m", "2", "512Mi", "1G", "1e3") as an exact number."""
    if isinstance(q, bool):
        raise ValueError(f"invalid quantity {q!r}")
    if isinstance(q, (int, float)):
        return fractions.Fraction(q)
    if not isinstance(q, str):
        raise ValueError(f"invalid quantity {q!r}")
    m = _QUANTITY_RE.match(q.strip())
    if not m:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    num, suffix = m.groups()
    try:
        value = fractions.Fraction(num)
    except ValueError:
        raise ValueError(f"unable to parse quantity's suffix: {q!r}") from None
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix in _DECIMAL:
        return value * _DECIMAL[suffix]
    em = re.match(r"^[eE]([-+]?[0-9]+)$", suffix)
    if em:
        return value * fractions.Fraction(10) ** int(em.group(1))
    raise ValueError("unable to parse quantity's suffix")


def _is_extended_resource(name: str) -> bool:
    return "/" in name and not name.startswith(("kubernetes.io/", "requests."))


# ----------------------------------------------------------------------------- $(VAR) expansion


def expand_vars(s: str, mapping: dict[str, str]) -> str:
    """Kubernetes' third_party/forked/golang/expansion.Expand: $(VAR) from mapping; unknown
    references stay as written; $$ is an escaped $ (so $$(VAR) gives the literal $(VAR))."""
    out = []
    checkpoint = 0
    cursor = 0
    n = len(s)
    while cursor < n:
        if s[cursor] == "$" and cursor + 1 < n:
            out.append(s[checkpoint:cursor])
            rest = s[cursor + 1:]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close >= 0:
                    name = rest[1:close]
                    out.append(mapping[name] if name in mapping else f"$({name})")
                    advance = close + 1
                else:
                    out.append("$(")
                    advance = 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(s[checkpoint:])
    return "".join(out)


# ----------------------------------------------------------------------------- selectors


class _Requirement:
    def __init__(self, key: str, op: str, values: list[str]):
        self.key, self.op, self.values = key, op, values

    def matches(self, labels: dict) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "==", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op in (">", "<"):
            if not has:
                return False
            try:
                lv = int(v)
            except ValueError:
                return False
            return lv > int(self.values[0]) if self.op == ">" else lv < int(self.values[0])
        return False


def _split_top_level_commas(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def parse_label_selector(sel: str) -> list[_Requirement]:
    """labels.Parse: equality-based (k=v, k==v, k!=v), set-based (k in (a,b), k notin (a,b)),
    existence (k, !k) and k>n / k<n; comma = AND."""
    reqs: list[_Requirement] = []
    if sel is None or sel.strip() == "":
        return reqs
    for part in _split_top_level_commas(sel):
        p = part.strip()
        m = (re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)", p)
             or re.fullmatch(rf"({_KEY})\s*(>|<)\s*([0-9]+)", p))
        if m:
            key, op, val = m.groups()
            reqs.append(_Requirement(key, op, [val]))
        elif (m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)", p)):
            key, op, vals = m.groups()
            values = [v.strip() for v in vals.split(",")]
            if any(not _LABEL_VALUE_RE.match(v) for v in values):
                raise ApiError(400, "BadRequest", f"unable to parse requirement: invalid label value in {p!r}")
            reqs.append(_Requirement(key, op, values))
        elif (m := re.fullmatch(rf"!\s*({_KEY})", p)):
            reqs.append(_Requirement(m.group(1), "!exists", []))
        elif (m := re.fullmatch(rf"({_KEY})", p)):
            reqs.append(_Requirement(m.group(1), "exists", []))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: found '{p}', expected: "
                                              "identifier, '!', 'in', 'notin', '=', '==', '!='")
        for r in reqs[-1:]:
            errs = _qualified_name_errors(r.key)
            if errs:
                raise ApiError(400, "BadRequest", f"unable to parse requirement: key: Invalid value: "
                                                  f"\"{r.key}\": {errs[0]}")
            if r.op in ("=", "==", "!=") and _label_value_errors(r.values[0]):
                raise ApiError(400, "BadRequest", f"unable to parse requirement: values[0][{r.key}]: "
                                                  f"Invalid value: \"{r.values[0]}\": "
                                                  f"{_label_value_errors(r.values[0])[0]}")
    return reqs


POD_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
    "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
    "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
    "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", ""),
    "spec.hostNetwork": lambda o: "true" if o.get("spec", {}).get("hostNetwork") else "false",
    "status.phase": lambda o: o.get("status", {}).get("phase", ""),
    "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
    "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
}
NAMESPACE_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "status.phase": lambda o: o.get("status", {}).get("phase", ""),
}


def parse_field_selector(sel: str | None, fields: dict) -> list[tuple[str, str, str]]:
    out = []
    if sel is None or sel.strip() == "":
        return out
    for part in sel.split(","):
        p = part.strip()
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", p)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid selector: '{sel}'; can't understand '{p}'")
        field, op, value = m.groups()
        if field not in fields:
            raise ApiError(400, "BadRequest", f'field label not supported: {field}')
        out.append((field, op, value))
    return out


# ----------------------------------------------------------------------------- pod runtime


class _PodRuntime:
    """Kubelet-side state of one pod (keyed by uid)."""

    def __init__(self, ns: str, name: str, uid: str):
        self.ns, self.name, self.uid = ns, name, uid
        self.procs: list[subprocess.Popen | None] = []
        self.exit_codes: dict[int, int] = {}
        self.oom: set[int] = set()
        self.wake = threading.Event()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.scheduling = True
        self.bound = False
        self.terminal = False
        self.deleting = False          # graceful deletion requested
        self.kill_deadline: float | None = None
        self.immediate = False         # immediate deletion / server stop: kill, no status updates
        self.removed = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver/1.29"

    def setup(self):
        super().setup()
        self.server.api._conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.api._conns.discard(self.connection)

    def log_message(self, fmt, *args):  # keep pytest output clean; the request list has it all
        self.server.api._log(f"{self.address_string()} {fmt % args}")

    def _any(self):
        self.server.api._dispatch(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


# ----------------------------------------------------------------------------- the fake


class FakeKubeAPI:
    def __init__(self, workdir: Path, token: str = "fake-token", namespaces=("default",),
                 node_capacity: dict | None = None,
                 images: dict[str, list[str]] | None = None,
                 fail_images: dict[str, str] | None = None,
                 env: dict[str, str] | None = None,
                 history_limit: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.node_capacity = dict(DEFAULT_NODE_CAPACITY if node_capacity is None else node_capacity)
        self.images = {k: list(v) for k, v in (images or {}).items()}
        self.fail_images = dict(fail_images or {})
        self.env = dict(env or {})
        self.history_limit = history_limit   # keep only this many watch events (older rv -> 410 Expired)
        self.requests: list[dict] = []
        self.warnings: list[str] = []      # unknown fields in created pods (the apiserver's Warning header)
        self.url = ""
        self.port: int | None = None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 0
        self._objects: dict[tuple[str, str, str], dict] = {}   # (resource, ns, name) -> object
        self._history: list[dict] = []                         # watch events, increasing rv
        self._runtimes: dict[str, _PodRuntime] = {}            # pod uid -> runtime
        self._stopping = False
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._log_path = self.workdir / "fake_kube_api.log"
        self._log_lock = threading.Lock()
        for ns in namespaces:
            self._commit("namespaces", "", ns, self._new_namespace(ns), "ADDED")

    # ------------------------------------------------------------------ public API

    def start(self) -> "FakeKubeAPI":
        try:
            from conftest import free_port  # the tests' allocator: never hands out a port twice
        except Exception:  # pragma: no cover - used outside the test suite
            free_port = None
        last_err: Exception | None = None
        for _ in range(20):
            port = free_port() if free_port else 0
            try:
                self._server = _Server(("127.0.0.1", port), _Handler)
                break
            except OSError as e:
                last_err = e
                if e.errno != errno.EADDRINUSE:
                    raise
        else:
            raise RuntimeError(f"could not bind the fake Kubernetes API: {last_err}")
        self._server.api = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._serve_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                              name="fake-kube-api", daemon=True)
        self._serve_thread.start()
        self._log(f"listening on {self.url}")
        return self

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        q = json.dumps  # JSON strings are valid YAML scalars
        path.write_text(
            "apiVersion: v1\n"
            "kind: Config\n"
            "preferences: {}\n"
            "clusters:\n"
            "- name: fake\n"
            "  cluster:\n"
            f"    server: {q(self.url)}\n"
            "users:\n"
            "- name: fake-user\n"
            "  user:\n"
            f"    token: {q(self.token)}\n"
            "contexts:\n"
            "- name: fake\n"
            "  context:\n"
            "    cluster: fake\n"
            "    user: fake-user\n"
            f"    namespace: {q(namespace)}\n"
            "current-context: fake\n"
        )
        return path

    def pods(self, namespace=None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self._objects.items())
                    if r == "pods" and (namespace is None or ns == namespace)]

    def namespaces(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (r, _, _), o in sorted(self._objects.items()) if r == "namespaces"]

    def events(self) -> list[dict]:
        """The watch-event history: {"rv", "type", "resource", "namespace", "object", "prev"}."""
        with self._lock:
            return copy.deepcopy(self._history)

    def pod_pid(self, namespace, name, container: int = 0) -> int | None:
        with self._lock:
            rt = self._runtime_for(namespace, name)
            if rt is None or container >= len(rt.procs) or rt.procs[container] is None:
                return None
            return rt.procs[container].pid

    def log_path(self, namespace, name) -> Path:
        return self.workdir / f"{namespace}_{name}.log"

    def oom_kill(self, namespace, name, container: int = 0):
        with self._lock:
            rt = self._runtime_for(namespace, name)
            if rt is None or container >= len(rt.procs) or rt.procs[container] is None:
                raise KeyError(f"pod {namespace}/{name} has no running container {container}")
            proc = rt.procs[container]
            rt.oom.add(container)
            if container not in rt.exit_codes and proc.returncode is None:
                _killpg(proc.pid, signal.SIGKILL)
            rt.wake.set()

    def stop(self):
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            runtimes = list(self._runtimes.values())
            for rt in runtimes:
                rt.immediate = True
                rt.wake.set()
            self._cond.notify_all()
        for rt in runtimes:
            for p in rt.procs:
                if p is not None and p.returncode is None:
                    _killpg(p.pid, signal.SIGKILL)
        for rt in runtimes:
            if rt.thread is not None:
                rt.thread.join(timeout=10)
            for p in rt.procs:  # belt and braces if a kubelet thread is stuck
                if p is not None and p.returncode is None:
                    _killpg(p.pid, signal.SIGKILL)
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
        if self._server is not None:
            self._server.shutdown()
            for c in list(self._conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
            if self._serve_thread is not None:
                self._serve_thread.join(timeout=5)
        self._log("stopped")

    # ------------------------------------------------------------------ store

    def _log(self, line: str):
        with self._log_lock:
            with open(self._log_path, "a", encoding="utf-8") as f:
                f.write(f"{_dt.datetime.now().isoformat(timespec='milliseconds')} {line}\n")

    def _commit(self, resource: str, ns: str, name: str, obj: dict, etype: str) -> dict:
        """Store (or, for DELETED, remove) an object; bump the global resourceVersion; record the
        watch event. Returns a deep copy of the object as stored/sent."""
        with self._cond:
            key = (resource, ns, name)
            prev = self._objects.get(key)
            self._rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._rv)
            if etype == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
            self._history.append({"rv": self._rv, "type": etype, "resource": resource, "namespace": ns,
                                  "object": copy.deepcopy(obj), "prev": copy.deepcopy(prev)})
            if self.history_limit is not None and len(self._history) > self.history_limit:
                del self._history[: len(self._history) - self.history_limit]
            self._cond.notify_all()
            return copy.deepcopy(obj)

    def _runtime_for(self, ns: str, name: str) -> _PodRuntime | None:
        pod = self._objects.get(("pods", ns, name))
        return None if pod is None else self._runtimes.get(pod["metadata"]["uid"])

    @staticmethod
    def _new_namespace(name: str) -> dict:
        return {"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                             "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    # ------------------------------------------------------------------ HTTP

    def _dispatch(self, h: _Handler):
        parsed = urllib.parse.urlsplit(h.path)
        path = parsed.path
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        raw = self._read_body(h)
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        with self._lock:
            self.requests.append({"method": h.command, "path": path, "query": query, "body": body,
                                  "headers": dict(h.headers.items())})
        try:
            if path in ("/healthz", "/livez", "/readyz"):
                return self._send_text(h, 200, "ok")
            auth = h.headers.get("Authorization", "")
            if auth != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(h, h.command, path, query, raw, body)
        except ApiError as e:
            self._send_json(h, e.code, status_object(e.code, e.reason, e.message, e.details))
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as e:  # a bug in the fake: answer 500 and keep the traceback
            self._log("500: " + traceback.format_exc())
            try:
                self._send_json(h, 500, status_object(500, "InternalError", f"fake apiserver error: {e!r}"))
            except OSError:
                h.close_connection = True

    def _read_body(self, h: _Handler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = h.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(chunks)
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n > 0 else b""

    def _send_json(self, h: _Handler, code: int, obj: Any, headers: dict | None = None):
        data = json.dumps(obj).encode() + b"\n"
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _send_text(self, h: _Handler, code: int, text: str):
        data = text.encode()
        h.send_response(code)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    _ROUTES = [
        (re.compile(r"^/api/v1/namespaces$"), "namespaces"),
        (re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$"), "namespace"),
        (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$"), "pods"),
        (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"), "pod"),
        (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/status$"), "pod_status"),
        (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$"), "pod_log"),
        (re.compile(r"^/api/v1/pods$"), "allpods"),
        (re.compile(r"^/api/v1/watch/namespaces/(?P<ns>[^/]+)/pods$"), "watch_pods"),
        (re.compile(r"^/api/v1/watch/pods$"), "watch_allpods"),
        (re.compile(r"^/api/v1/watch/namespaces$"), "watch_namespaces"),
    ]

    def _route(self, h, method, path, query, raw, body):
        path = path.rstrip("/") or "/"
        if path == "/version":
            return self._allow(method, "GET") or self._send_json(h, 200, KUBE_VERSION)
        if path == "/api":
            return self._allow(method, "GET") or self._send_json(h, 200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]})
        if path == "/api/v1":
            return self._allow(method, "GET") or self._send_json(h, 200, _API_RESOURCES)
        for rx, kind in self._ROUTES:
            m = rx.match(path)
            if not m:
                continue
            g = m.groupdict()
            if "ns" in g:
                g["ns"] = urllib.parse.unquote(g["ns"])
            if "name" in g:
                g["name"] = urllib.parse.unquote(g["name"])
            watch = query.get("watch", "").lower() in ("true", "1")
            if kind == "namespaces":
                if method == "GET":
                    return self._list_or_watch(h, "namespaces", None, query, watch)
                if method == "POST":
                    return self._create_namespace(h, body, raw)
            elif kind == "namespace":
                if method == "GET":
                    return self._send_json(h, 200, self._get("namespaces", "", g["name"]))
                if method == "DELETE":
                    return self._delete_namespace(h, g["name"])
            elif kind == "pods":
                if method == "GET":
                    return self._list_or_watch(h, "pods", g["ns"], query, watch)
                if method == "POST":
                    return self._create_pod(h, g["ns"], body, raw, query)
            elif kind == "pod":
                if method == "GET":
                    return self._send_json(h, 200, self._get("pods", g["ns"], g["name"]))
                if method == "DELETE":
                    code, obj = self._delete_pod(g["ns"], g["name"], self._grace_from(query, body, raw))
                    return self._send_json(h, code, obj)
            elif kind == "pod_status":
                if method == "GET":
                    return self._send_json(h, 200, self._get("pods", g["ns"], g["name"]))
            elif kind == "pod_log":
                if method == "GET":
                    return self._pod_log(h, g["ns"], g["name"], query)
            elif kind == "allpods":
                if method == "GET":
                    return self._list_or_watch(h, "pods", None, query, watch)
            elif kind == "watch_pods":
                if method == "GET":
                    return self._list_or_watch(h, "pods", g["ns"], query, True)
            elif kind == "watch_allpods":
                if method == "GET":
                    return self._list_or_watch(h, "pods", None, query, True)
            elif kind == "watch_namespaces":
                if method == "GET":
                    return self._list_or_watch(h, "namespaces", None, query, True)
            raise ApiError(405, "MethodNotAllowed",
                           f"the server does not allow this method on the requested resource", {})
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _allow(method, *allowed):
        if method not in allowed:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})
        return None

    def _get(self, resource, ns, name) -> dict:
        with self._lock:
            obj = self._objects.get((resource, ns, name))
            if obj is None:
                raise _not_found(resource, name)
            return copy.deepcopy(obj)

    # ------------------------------------------------------------------ list / watch

    def _matcher(self, resource, ns, query):
        reqs = parse_label_selector(query.get("labelSelector"))
        fields = POD_FIELDS if resource == "pods" else NAMESPACE_FIELDS
        freqs = parse_field_selector(query.get("fieldSelector"), fields)

        def match(obj: dict, obj_ns: str) -> bool:
            if ns is not None and obj_ns != ns:
                return False
            labels = obj["metadata"].get("labels") or {}
            if not all(r.matches(labels) for r in reqs):
                return False
            for field, op, value in freqs:
                actual = fields[field](obj)
                if (actual == value) != (op in ("=", "==")):
                    return False
            return True

        return match

    def _list_or_watch(self, h, resource, ns, query, watch):
        match = self._matcher(resource, ns, query)
        if watch:
            return self._watch(h, resource, ns, query, match)
        kind = "PodList" if resource == "pods" else "NamespaceList"
        with self._lock:
            items = []
            for (r, ons, _), obj in sorted(self._objects.items()):
                if r == resource and match(obj, ons):
                    item = copy.deepcopy(obj)
                    # typed lists from the real apiserver carry no kind/apiVersion in their items
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                    items.append(item)
            rv = str(self._rv)
        self._send_json(h, 200, {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                                 "items": items})

    def _watch(self, h, resource, ns, query, match):
        timeout = query.get("timeoutSeconds")
        try:
            deadline = time.monotonic() + float(timeout) if timeout not in (None, "") else None
        except ValueError:
            raise ApiError(400, "BadRequest", f'invalid value for timeoutSeconds: "{timeout}"') from None
        rv_param = query.get("resourceVersion", "")
        initial: list[dict] = []
        error_event = None
        with self._lock:
            if rv_param in ("", "0"):
                cursor = self._rv
                for (r, ons, _), obj in sorted(self._objects.items()):
                    if r == resource and match(obj, ons):
                        initial.append({"type": "ADDED", "object": copy.deepcopy(obj)})
            else:
                try:
                    cursor = int(rv_param)
                except ValueError:
                    raise ApiError(400, "BadRequest", f'invalid resource version "{rv_param}"') from None
                oldest = self._history[0]["rv"] if self._history else self._rv + 1
                if cursor + 1 < oldest:
                    error_event = {"type": "ERROR", "object": status_object(
                        410, "Expired", f"too old resource version: {cursor} ({oldest - 1})")}
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Cache-Control", "no-cache, private")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(ev: dict):
            data = json.dumps(ev).encode() + b"\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            if error_event is not None:
                send(error_event)
                h.wfile.write(b"0\r\n\r\n")
                return
            for ev in initial:
                send(ev)
            while True:
                pending: list[dict] = []
                with self._cond:
                    while True:
                        if self._stopping:
                            break
                        if self._history and self._history[-1]["rv"] > cursor:
                            pending = [e for e in self._history if e["rv"] > cursor]
                            cursor = self._history[-1]["rv"]
                            break
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                        if _peer_closed(h.connection):
                            h.close_connection = True
                            return
                        wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                        self._cond.wait(wait)
                for e in pending:
                    if e["resource"] != resource:
                        continue
                    ev = _filter_event(e, match)
                    if ev is not None:
                        send(ev)
                if self._stopping:
                    h.close_connection = True
                    break
                if not pending and deadline is not None and time.monotonic() >= deadline:
                    break
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True

    # ------------------------------------------------------------------ namespaces

    def _create_namespace(self, h, body, raw):
        body = self._require_json_object(h, body, raw, "Namespace")
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not isinstance(name, str):
            raise ApiError(400, "BadRequest", "Namespace in version \"v1\" cannot be handled as a Namespace: "
                                              "metadata.name must be a string")
        if not name:
            raise _invalid("Namespace", "", [("metadata.name", "FieldValueRequired",
                                               "Required value: name or generateName is required")])
        errs = _dns_label_errors(name)
        if errs:
            raise _invalid("Namespace", name, [("metadata.name", "FieldValueInvalid",
                                                 f'Invalid value: "{name}": {errs[0]}')])
        with self._lock:
            if ("namespaces", "", name) in self._objects:
                raise ApiError(409, "AlreadyExists", f'namespaces "{name}" already exists',
                               {"name": name, "kind": "namespaces"})
            obj = self._new_namespace(name)
            labels = meta.get("labels")
            if isinstance(labels, dict):
                obj["metadata"]["labels"] = {**labels, "kubernetes.io/metadata.name": name}
            if isinstance(meta.get("annotations"), dict):
                obj["metadata"]["annotations"] = dict(meta["annotations"])
            stored = self._commit("namespaces", "", name, obj, "ADDED")
        self._send_json(h, 201, stored)

    def _delete_namespace(self, h, name):
        with self._lock:
            obj = self._objects.get(("namespaces", "", name))
            if obj is None:
                raise _not_found("namespaces", name)
            if obj["metadata"].get("deletionTimestamp"):
                return self._send_json(h, 200, copy.deepcopy(obj))
            obj = copy.deepcopy(obj)
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["status"]["phase"] = "Terminating"
            stored = self._commit("namespaces", "", name, obj, "MODIFIED")
        threading.Thread(target=self._finalize_namespace, args=(name,), daemon=True,
                         name=f"ns-finalizer-{name}").start()
        self._send_json(h, 200, stored)

    def _finalize_namespace(self, name):
        try:
            for pod in self.pods(name):
                try:
                    self._delete_pod(name, pod["metadata"]["name"], None)
                except ApiError:
                    pass
            while not self._stopping:
                with self._lock:
                    if not any(r == "pods" and ns == name for (r, ns, _) in self._objects):
                        obj = copy.deepcopy(self._objects[("namespaces", "", name)])
                        obj["spec"]["finalizers"] = []
                        self._commit("namespaces", "", name, obj, "DELETED")
                        return
                time.sleep(0.05)
        except Exception:
            self._log("namespace finalizer: " + traceback.format_exc())

    # ------------------------------------------------------------------ pods

    def _require_json_object(self, h, body, raw, kind) -> dict:
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           f'the body of the request was in an unknown format - accepted media types include: '
                           f'application/json, application/yaml, application/vnd.kubernetes.protobuf')
        if not raw:
            raise ApiError(400, "BadRequest", "the server rejected our request for an unknown reason")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"{kind} in version \"v1\" cannot be handled as a {kind}: "
                                              "the request body is not a JSON object")
        if "kind" in body and body["kind"] != kind:
            raise ApiError(400, "BadRequest", f"{body['kind']} in version \"{body.get('apiVersion', 'v1')}\" "
                                              f"cannot be handled as a {kind}: the object provided is unrecognized "
                                              f"(must be of type {kind})")
        if "apiVersion" in body and body["apiVersion"] != "v1":
            raise ApiError(400, "BadRequest", f"the API version in the data ({body['apiVersion']}) does not match "
                                              f"the expected API version (v1)")
        if "metadata" in body and not isinstance(body["metadata"], (dict, type(None))):
            raise ApiError(400, "BadRequest", f"{kind} in version \"v1\" cannot be handled as a {kind}: "
                                              "json: cannot unmarshal into Go struct field .metadata of type "
                                              "v1.ObjectMeta")
        return body

    def _create_pod(self, h, ns, body, raw, query):
        body = self._require_json_object(h, body, raw, "Pod")
        _check_pod_types(body)
        pod = copy.deepcopy(body)
        unknown = unknown_fields(pod, "Pod", drop=True)
        if query.get("fieldValidation") == "Ignore":
            unknown = []
        if unknown and query.get("fieldValidation") == "Strict":
            raise ApiError(400, "BadRequest", "strict decoding error: "
                           + ", ".join(f'unknown field "{f}"' for f in unknown))
        pod["kind"], pod["apiVersion"] = "Pod", "v1"
        meta = pod.setdefault("metadata", {}) or {}
        pod["metadata"] = meta
        if meta.get("namespace") not in (None, "", ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"][:58] + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
        name = meta.get("name") or ""
        causes = _validate_pod(pod)
        if causes:
            raise _invalid("Pod", name, causes)
        _default_pod(pod)
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink", "generation"):
            meta.pop(k, None)
        meta["namespace"] = ns
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        pod["status"] = {"phase": "Pending", "conditions": [], "qosClass": _qos_class(pod)}
        with self._lock:
            nsobj = self._objects.get(("namespaces", "", ns))
            if nsobj is None:
                raise _not_found("namespaces", ns)
            if nsobj["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: unable to create new content in '
                                                 f'namespace {ns} because it is being terminated',
                               {"name": name, "kind": "pods"})
            if ("pods", ns, name) in self._objects:
                raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists', {"name": name, "kind": "pods"})
            if self._stopping:
                raise ApiError(503, "ServiceUnavailable", "the fake apiserver is shutting down")
            stored = self._commit("pods", ns, name, pod, "ADDED")
            rt = _PodRuntime(ns, name, meta["uid"])
            self._runtimes[rt.uid] = rt
            rt.thread = threading.Thread(target=self._kubelet, args=(rt,), daemon=True, name=f"kubelet-{ns}-{name}")
            rt.thread.start()
        if unknown:
            with self._lock:
                self.warnings.extend(unknown)
        warn = {"Warning": ", ".join(f'299 - "unknown field \\"{f}\\""' for f in unknown)} if unknown else None
        self._send_json(h, 201, stored, warn)

    def _grace_from(self, query, body, raw) -> int | None:
        """DeleteOptions.gracePeriodSeconds: from the body when there is one (the apiserver then
        ignores the query parameters), else from the query."""
        if raw:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body is not a valid DeleteOptions object")
            if body.get("kind") not in (None, "DeleteOptions"):
                raise ApiError(400, "BadRequest", f"the object provided is unrecognized (must be of type "
                                                  f"DeleteOptions): {body.get('kind')}")
            g = body.get("gracePeriodSeconds")
            if g is not None and (isinstance(g, bool) or not isinstance(g, int)):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal into Go struct field "
                                                  "DeleteOptions.gracePeriodSeconds of type int64")
            return g
        g = query.get("gracePeriodSeconds")
        if g is None or g == "":
            return None
        try:
            return int(g)
        except ValueError:
            raise ApiError(400, "BadRequest", f'invalid value for gracePeriodSeconds: "{g}"') from None

    def _delete_pod(self, ns, name, grace: int | None) -> tuple[int, dict]:
        with self._lock:
            pod = self._objects.get(("pods", ns, name))
            if pod is None:
                raise _not_found("pods", name)
            rt = self._runtimes.get(pod["metadata"]["uid"])
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)
            if grace < 0:
                grace = 1
            if (not pod["spec"].get("nodeName") or pod["status"].get("phase") in ("Succeeded", "Failed")
                    or (rt is not None and rt.terminal)):
                grace = 0  # never scheduled or already terminated: deleted at once (pod strategy)
            pod = copy.deepcopy(pod)
            if grace > 0:
                cur = pod["metadata"].get("deletionGracePeriodSeconds")
                if cur is not None and cur <= grace:
                    return 200, pod  # already terminating at least as fast
                pod["metadata"]["deletionTimestamp"] = _ts(grace)
                pod["metadata"]["deletionGracePeriodSeconds"] = grace
                stored = self._commit("pods", ns, name, pod, "MODIFIED")
                if rt is not None:
                    rt.deleting = True
                    rt.kill_deadline = time.monotonic() + grace
                    rt.wake.set()
                return 200, stored
            # immediate deletion: kill the containers now, then remove the object
            if rt is not None:
                rt.immediate = True
                rt.wake.set()
        if rt is not None:
            rt.done.wait(timeout=15)
        with self._lock:
            cur = self._objects.get(("pods", ns, name))
            if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
                raise _not_found("pods", name)
            cur = copy.deepcopy(cur)
            cur["metadata"]["deletionTimestamp"] = _now()
            cur["metadata"]["deletionGracePeriodSeconds"] = 0
            stored = self._commit("pods", ns, name, cur, "DELETED")
            if rt is not None:
                rt.removed = True
                self._runtimes.pop(rt.uid, None)
        self._capacity_changed()
        return 200, stored

    def _pod_log(self, h, ns, name, query):
        with self._lock:
            pod = self._get("pods", ns, name)
        path = self.log_path(ns, name)
        if not path.exists():
            c = pod["spec"]["containers"][0]["name"]
            st = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {})
            reason = st.get("waiting", {}).get("reason", "ContainerCreating")
            raise ApiError(400, "BadRequest", f'container "{c}" in pod "{name}" is waiting to start: {reason}')
        text = path.read_text(errors="replace")
        if query.get("tailLines"):
            n = int(query["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-n:]) if n > 0 else ""
        self._send_text(h, 200, text)

    # ------------------------------------------------------------------ scheduler

    def _requested(self, pod: dict) -> dict[str, fractions.Fraction]:
        total: dict[str, fractions.Fraction] = {}
        for c in pod["spec"]["containers"]:
            res = c.get("resources") or {}
            req = dict(res.get("limits") or {})
            req.update(res.get("requests") or {})
            for k, v in req.items():
                total[k] = total.get(k, 0) + parse_quantity(v)
        return total

    def _insufficient(self, pod: dict) -> list[str]:
        used: dict[str, fractions.Fraction] = {}
        for (r, _, _), other in self._objects.items():
            if (r == "pods" and other is not pod and other["spec"].get("nodeName")
                    and other["status"].get("phase") not in ("Succeeded", "Failed")
                    and other["metadata"]["uid"] != pod["metadata"]["uid"]):
                for k, v in self._requested(other).items():
                    used[k] = used.get(k, 0) + v
        out = []
        for k, v in sorted(self._requested(pod).items()):
            if v <= 0:
                continue
            cap = parse_quantity(self.node_capacity.get(k, "0"))
            if v > cap - used.get(k, 0):
                out.append(k)
        return out

    def _capacity_changed(self):
        with self._lock:
            for rt in self._runtimes.values():
                if rt.scheduling:
                    rt.wake.set()

    # ------------------------------------------------------------------ kubelet

    def _update_pod(self, rt: _PodRuntime, mutate) -> bool:
        """Apply mutate(pod) to the stored pod and commit a MODIFIED event (under the lock)."""
        with self._lock:
            if rt.immediate or rt.removed or self._stopping:
                return False
            pod = self._objects.get(("pods", rt.ns, rt.name))
            if pod is None or pod["metadata"]["uid"] != rt.uid:
                return False
            pod = copy.deepcopy(pod)
            mutate(pod)
            self._commit("pods", rt.ns, rt.name, pod, "MODIFIED")
            return True

    def _pod(self, rt: _PodRuntime) -> dict | None:
        pod = self._objects.get(("pods", rt.ns, rt.name))
        return pod if pod is not None and pod["metadata"]["uid"] == rt.uid else None

    def _kubelet(self, rt: _PodRuntime):
        try:
            self._kubelet_run(rt)
        except Exception:
            self._log(f"kubelet {rt.ns}/{rt.name}: " + traceback.format_exc())
            for p in rt.procs:
                if p is not None and p.returncode is None:
                    _killpg(p.pid, signal.SIGKILL)
                    p.wait()
        finally:
            rt.done.set()

    def _finish_graceful_delete(self, rt: _PodRuntime):
        with self._lock:
            if rt.immediate or rt.removed or self._stopping:
                return
            pod = self._pod(rt)
            if pod is not None:
                self._commit("pods", rt.ns, rt.name, pod, "DELETED")
            rt.removed = True
            self._runtimes.pop(rt.uid, None)
        self._capacity_changed()

    def _kubelet_run(self, rt: _PodRuntime):
        # ---- scheduling
        last_msg = None
        while True:
            rt.wake.clear()
            with self._lock:
                if rt.immediate or self._stopping:
                    return
                pod = self._pod(rt)
                if pod is None:
                    return
                try:
                    missing = self._insufficient(pod)
                except ValueError:
                    missing = ["invalid quantity"]
                if not missing:
                    def bind(p):
                        p["spec"]["nodeName"] = NODE_NAME
                        _set_condition(p, "PodScheduled", "True")
                        _set_condition(p, "PodReadyToStartContainers", "False")
                        _set_condition(p, "Initialized", "True")
                        _set_condition(p, "Ready", "False", "ContainersNotReady",
                                       f"containers with unready status: [{_names(p)}]")
                        _set_condition(p, "ContainersReady", "False", "ContainersNotReady",
                                       f"containers with unready status: [{_names(p)}]")
                        p["status"]["hostIP"] = "127.0.0.1"
                        p["status"]["hostIPs"] = [{"ip": "127.0.0.1"}]
                        p["status"]["startTime"] = _now()
                        p["status"]["containerStatuses"] = [
                            _container_status(c, {"waiting": {"reason": "ContainerCreating"}})
                            for c in p["spec"]["containers"]]
                    rt.scheduling = False
                    rt.bound = True
                    self._update_pod(rt, bind)
                    break
                msg = "0/1 nodes are available: " + ", ".join(f"1 Insufficient {r}" for r in missing) + "."
                if msg != last_msg:
                    last_msg = msg
                    self._update_pod(rt, lambda p: _set_condition(p, "PodScheduled", "False", "Unschedulable", msg))
            rt.wake.wait()

        # ---- image "pull"
        pod = copy.deepcopy(self._pod(rt) or {})
        if not pod:
            return
        containers = pod["spec"]["containers"]
        plans: list[tuple[list[str] | None, str | None]] = []
        for c in containers:
            image = c["image"]
            if image in self.fail_images:
                plans.append((None, self.fail_images[image]))
            elif not c.get("command") and image not in self.images:
                plans.append((None, "ErrImagePull"))
            else:
                plans.append((self._argv(c), None))
        if any(reason for _, reason in plans):
            def waiting(p):
                for i, (_, reason) in enumerate(plans):
                    if reason:
                        img = containers[i]["image"]
                        p["status"]["containerStatuses"][i]["state"] = {"waiting": {
                            "reason": reason, "message": f'Back-off pulling image "{img}"'}}
                        p["status"]["containerStatuses"][i]["imageID"] = ""  # required; empty until pulled
            self._update_pod(rt, waiting)
            while True:
                rt.wake.clear()
                if rt.immediate or self._stopping:
                    return
                if rt.deleting:
                    return self._finish_graceful_delete(rt)
                rt.wake.wait()

        # ---- start the containers
        podenv_base = dict(self.env)
        poddir = self.workdir / "pods" / f"{rt.ns}_{rt.name}"
        poddir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(rt.ns, rt.name)
        started: dict[int, str] = {}
        start_errors: dict[int, str] = {}
        with open(log_path, "ab") as logf:
            for i, c in enumerate(containers):
                with self._lock:
                    if rt.immediate or self._stopping:
                        break
                env = dict(podenv_base)
                env["HOSTNAME"] = rt.name
                env.update(_container_env(c))
                argv = plans[i][0]
                try:
                    proc = subprocess.Popen(argv, cwd=str(poddir), env=env, stdin=subprocess.DEVNULL,
                                            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
                except OSError as e:
                    proc = None
                    start_errors[i] = (f"failed to create containerd task: failed to create shim task: OCI runtime "
                                       f"create failed: runc create failed: unable to start container process: "
                                       f"exec: {argv[0] if argv else ''!r}: {e.strerror}")
                with self._lock:
                    rt.procs.append(proc)
                    if proc is not None:
                        started[i] = _now()
                    if rt.immediate or self._stopping:
                        if proc is not None:
                            _killpg(proc.pid, signal.SIGKILL)
        for i in start_errors:
            rt.exit_codes[i] = 128

        def running(p):
            for i, c in enumerate(containers):
                cs = p["status"]["containerStatuses"][i]
                cs["imageID"] = _image_id(c["image"])
                cs["containerID"] = "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex
                if i in started:
                    cs["state"] = {"running": {"startedAt": started[i]}}
                    cs["ready"] = True
                    cs["started"] = True
                elif i in start_errors:
                    cs["state"] = {"terminated": {"exitCode": 128, "reason": "StartError",
                                                  "message": start_errors[i], "startedAt": "1970-01-01T00:00:00Z",
                                                  "finishedAt": _now(), "containerID": cs["containerID"]}}
            _set_condition(p, "PodReadyToStartContainers", "True")
            _refresh_phase(p)

        if len(rt.procs) == len(containers):
            self._update_pod(rt, running)

        # ---- supervise
        term_sent = False
        while True:
            rt.wake.clear()
            for i, proc in enumerate(rt.procs):
                if proc is None or i in rt.exit_codes:
                    continue
                if not _exited(proc):
                    continue
                _killpg(proc.pid, signal.SIGKILL)  # the rest of the container (group still reserved: zombie leader)
                rc = proc.wait()
                code = rc if rc >= 0 else 128 - rc
                rt.exit_codes[i] = code
                oom = i in rt.oom
                finished = _now()

                def terminated(p, i=i, code=code, oom=oom, finished=finished):
                    cs = p["status"]["containerStatuses"][i]
                    reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
                    cs["state"] = {"terminated": {"exitCode": code, "reason": reason,
                                                  "startedAt": started.get(i, finished), "finishedAt": finished,
                                                  "containerID": cs.get("containerID", "")}}
                    cs["ready"] = False
                    cs["started"] = False
                    _refresh_phase(p)
                self._update_pod(rt, terminated)
            if all(p is None or i in rt.exit_codes for i, p in enumerate(rt.procs)):
                break
            with self._lock:
                immediate = rt.immediate or self._stopping
                deleting, deadline = rt.deleting, rt.kill_deadline
            live = [p for i, p in enumerate(rt.procs) if p is not None and i not in rt.exit_codes]
            if immediate:
                for p in live:
                    _killpg(p.pid, signal.SIGKILL)
            elif deleting:
                if not term_sent:
                    term_sent = True
                    for p in live:
                        _killpg(p.pid, signal.SIGTERM)
                if deadline is not None and time.monotonic() >= deadline:
                    for p in live:
                        _killpg(p.pid, signal.SIGKILL)
            rt.wake.wait(0.05)
        with self._lock:
            rt.terminal = True
            deleting = rt.deleting
        if len(rt.procs) < len(containers):
            return  # stopped/removed while starting
        self._capacity_changed()
        if deleting:
            self._finish_graceful_delete(rt)

    def _argv(self, c: dict) -> list[str]:
        mapping = _env_mapping(c)
        cmd = c.get("command")
        if cmd:
            argv = [expand_vars(a, mapping) for a in cmd]
        else:
            argv = list(self.images[c["image"]])
        argv += [expand_vars(a, mapping) for a in (c.get("args") or [])]
        return argv


# ----------------------------------------------------------------------------- pod helpers

_API_RESOURCES = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["ns"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ],
}


def _peer_closed(sock: socket.socket) -> bool:
    try:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _killpg(pid: int, sig: int):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exited(proc: subprocess.Popen) -> bool:
    """True when the process has exited, without reaping it (so its process group id stays
    reserved and the rest of the group can still be killed safely)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None and info.si_pid != 0


def _image_id(image: str) -> str:
    import hashlib
    repo = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@")[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _names(p: dict) -> str:
    return " ".join(c["name"] for c in p["spec"]["containers"])


def _set_condition(p: dict, ctype: str, status: str, reason: str | None = None, message: str | None = None):
    conds = p["status"].setdefault("conditions", [])
    for c in conds:
        if c["type"] == ctype:
            if c["status"] != status:
                c["lastTransitionTime"] = _now()
            c["status"] = status
            break
    else:
        c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": _now()}
        conds.append(c)
    for k, v in (("reason", reason), ("message", message)):
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v


def _refresh_phase(p: dict):
    """Pod phase from container states (restartPolicy: Never semantics)."""
    states = [cs["state"] for cs in p["status"]["containerStatuses"]]
    if all("terminated" in s for s in states):
        ok = all(s["terminated"]["exitCode"] == 0 for s in states)
        p["status"]["phase"] = "Succeeded" if ok else "Failed"
        reason = "PodCompleted" if ok else "PodFailed"
        _set_condition(p, "PodReadyToStartContainers", "False")
        _set_condition(p, "Ready", "False", reason)
        _set_condition(p, "ContainersReady", "False", reason)
    elif any("running" in s for s in states) or any("terminated" in s for s in states):
        p["status"]["phase"] = "Running"
        p["status"]["podIP"] = "127.0.0.1"
        p["status"]["podIPs"] = [{"ip": "127.0.0.1"}]
        unready = [cs["name"] for cs in p["status"]["containerStatuses"] if not cs.get("ready")]
        if unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            _set_condition(p, "Ready", "False", "ContainersNotReady", msg)
            _set_condition(p, "ContainersReady", "False", "ContainersNotReady", msg)
        else:
            _set_condition(p, "Ready", "True")
            _set_condition(p, "ContainersReady", "True")


def _container_status(c: dict, state: dict) -> dict:
    return {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "state": state, "lastState": {}}


def _env_mapping(c: dict) -> dict[str, str]:
    """Container env with `value` (each value expanded against the entries before it)."""
    mapping: dict[str, str] = {}
    for e in c.get("env") or []:
        if "valueFrom" in e and e.get("value") in (None, ""):
            continue
        mapping[e["name"]] = expand_vars(e.get("value") or "", mapping)
    return mapping


def _container_env(c: dict) -> dict[str, str]:
    return _env_mapping(c)


def _qos_class(pod: dict) -> str:
    any_set = False
    guaranteed = True
    for c in pod["spec"]["containers"]:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and parse_quantity(req[r]) != parse_quantity(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_pod(pod: dict):
    """The defaults the apiserver fills in (a subset)."""
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    for c in spec["containers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        tag = c["image"].split("@")[0].split("/")[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest and "@" not in c["image"] else "IfNotPresent")
        res = c.setdefault("resources", {})
        lim = res.get("limits") or {}
        if lim:
            req = res.setdefault("requests", {})
            for k, v in lim.items():
                req.setdefault(k, v)


def _invalid(kind: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    parts = [f"{field}: {msg}" for field, _, msg in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {joined}',
                    {"name": name, "kind": kind,
                     "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


def _bad_type(field: str, go_type: str) -> ApiError:
    return ApiError(400, "BadRequest", f'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal '
                                       f'into Go struct field {field} of type {go_type}')


def _check_pod_types(pod: dict):
    """What the apiserver's JSON decoder would reject with 400 (wrong JSON types)."""
    meta = pod.get("metadata") or {}
    for k in ("name", "generateName", "namespace"):
        if k in meta and meta[k] is not None and not isinstance(meta[k], str):
            raise _bad_type(f"ObjectMeta.metadata.{k}", "string")
    for k in ("labels", "annotations"):
        v = meta.get(k)
        if v is None:
            continue
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise _bad_type(f"ObjectMeta.metadata.{k}", "map[string]string")
    spec = pod.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise _bad_type("Pod.spec", "v1.PodSpec")
    g = spec.get("terminationGracePeriodSeconds")
    if g is not None and (isinstance(g, bool) or not isinstance(g, int)):
        raise _bad_type("PodSpec.spec.terminationGracePeriodSeconds", "int64")
    containers = spec.get("containers")
    if containers is None:
        return
    if not isinstance(containers, list):
        raise _bad_type("PodSpec.spec.containers", "[]v1.Container")
    for c in containers:
        if not isinstance(c, dict):
            raise _bad_type("PodSpec.spec.containers", "v1.Container")
        for k in ("name", "image", "workingDir"):
            if k in c and c[k] is not None and not isinstance(c[k], str):
                raise _bad_type(f"Container.spec.containers.{k}", "string")
        for k in ("command", "args"):
            v = c.get(k)
            if v is not None and (not isinstance(v, list) or not all(isinstance(a, str) for a in v)):
                raise _bad_type(f"Container.spec.containers.{k}", "[]string")
        env = c.get("env")
        if env is not None:
            if not isinstance(env, list):
                raise _bad_type("Container.spec.containers.env", "[]v1.EnvVar")
            for e in env:
                if not isinstance(e, dict):
                    raise _bad_type("Container.spec.containers.env", "v1.EnvVar")
                for k in ("name", "value"):
                    if k in e and e[k] is not None and not isinstance(e[k], str):
                        raise _bad_type(f"EnvVar.spec.containers.env.{k}", "string")
        res = c.get("resources")
        if res is not None:
            if not isinstance(res, dict):
                raise _bad_type("Container.spec.containers.resources", "v1.ResourceRequirements")
            for k in ("requests", "limits"):
                v = res.get(k)
                if v is None:
                    continue
                if not isinstance(v, dict):
                    raise _bad_type(f"ResourceRequirements.spec.containers.resources.{k}", "v1.ResourceList")
                for q in v.values():
                    try:
                        parse_quantity(q)
                    except ValueError as e:
                        raise ApiError(400, "BadRequest", f'Pod in version "v1" cannot be handled as a Pod: {e}')


def _validate_pod(pod: dict) -> list[tuple[str, str, str]]:
    """A subset of the apiserver's pod validation (422 Invalid causes: field, reason, message)."""
    causes: list[tuple[str, str, str]] = []
    meta = pod["metadata"]
    name = meta.get("name") or ""
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "Required value: name or generateName is required"))
    else:
        for e in _subdomain_errors(name):
            causes.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {e}'))
    for k, v in (meta.get("labels") or {}).items():
        for e in _qualified_name_errors(k):
            causes.append(("metadata.labels", "FieldValueInvalid", f'Invalid value: "{k}": {e}'))
        for e in _label_value_errors(v):
            causes.append((f"metadata.labels", "FieldValueInvalid", f'Invalid value: "{v}": {e}'))
    for k in (meta.get("annotations") or {}):
        for e in _qualified_name_errors(k.lower()):
            causes.append(("metadata.annotations", "FieldValueInvalid", f'Invalid value: "{k}": {e}'))
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    seen = set()
    for i, c in enumerate(containers):
        f = f"spec.containers[{i}]"
        cname = c.get("name") or ""
        if not cname:
            causes.append((f"{f}.name", "FieldValueRequired", "Required value"))
        else:
            for e in _dns_label_errors(cname):
                causes.append((f"{f}.name", "FieldValueInvalid", f'Invalid value: "{cname}": {e}'))
            if cname in seen:
                causes.append((f"{f}.name", "FieldValueDuplicate", f'Duplicate value: "{cname}"'))
            seen.add(cname)
        if not (c.get("image") or "").strip():
            causes.append((f"{f}.image", "FieldValueRequired", "Required value"))
        for j, e in enumerate(c.get("env") or []):
            en = e.get("name") or ""
            if not en:
                causes.append((f"{f}.env[{j}].name", "FieldValueRequired", "Required value"))
            elif not _ENV_NAME_RE.match(en):
                causes.append((f"{f}.env[{j}].name", "FieldValueInvalid",
                               f'Invalid value: "{en}": a valid environment variable name must consist of '
                               f"alphabetic characters, digits, '_', '-', or '.', and must not start with a digit "
                               f"(e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
                               f"validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"))
            if e.get("value") not in (None, "") and e.get("valueFrom") is not None:
                causes.append((f"{f}.env[{j}].valueFrom", "FieldValueInvalid",
                               "Invalid value: \"\": may not be specified when `value` is not empty"))
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for k, v in req.items():
            rv = parse_quantity(v)
            if rv < 0:
                causes.append((f"{f}.resources.requests[{k}]", "FieldValueInvalid",
                               f'Invalid value: "{v}": must be greater than or equal to 0'))
            if _is_extended_resource(k):
                if k not in lim:
                    causes.append((f"{f}.resources.limits", "FieldValueRequired",
                                   "Required value: Limit must be set for non overcommitable resources"))
                elif parse_quantity(lim[k]) != rv:
                    causes.append((f"{f}.resources.requests", "FieldValueInvalid",
                                   f'Invalid value: "{v}": must be equal to {k} limit of {lim[k]}'))
            elif k in lim and rv > parse_quantity(lim[k]):
                causes.append((f"{f}.resources.requests", "FieldValueInvalid",
                               f'Invalid value: "{v}": must be less than or equal to {k} limit of {lim[k]}'))
        for k, v in lim.items():
            if parse_quantity(v) < 0:
                causes.append((f"{f}.resources.limits[{k}]", "FieldValueInvalid",
                               f'Invalid value: "{v}": must be greater than or equal to 0'))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: "{rp}": supported values: "Always", "OnFailure", "Never"'))
    g = spec.get("terminationGracePeriodSeconds")
    if g is not None and g < 0:
        causes.append(("spec.terminationGracePeriodSeconds", "FieldValueInvalid",
                       f"Invalid value: {g}: must be greater than or equal to 0"))
    return causes


def _filter_event(e: dict, match) -> dict | None:
    """The apiserver's watch-cache filtering: an object that starts matching the selectors
    arrives as ADDED, one that stops matching as DELETED (with its previous content)."""
    ns = e["namespace"]
    prev_ok = e["prev"] is not None and match(e["prev"], ns)
    if e["type"] == "DELETED":
        return {"type": "DELETED", "object": copy.deepcopy(e["object"])} if prev_ok else None
    cur_ok = match(e["object"], ns)
    if cur_ok and (e["type"] == "ADDED" or not prev_ok):
        return {"type": "ADDED", "object": copy.deepcopy(e["object"])}
    if cur_ok and prev_ok:
        return {"type": "MODIFIED", "object": copy.deepcopy(e["object"])}
    if prev_ok:
        old = copy.deepcopy(e["prev"])
        old["metadata"]["resourceVersion"] = e["object"]["metadata"]["resourceVersion"]
        return {"type": "DELETED", "object": old}
    return None


_STRICT_VALIDATORS: dict[str, Any] = {}


def unknown_fields(obj: dict, kind: str, drop: bool = False) -> list[str]:
    """Fields of obj the Kubernetes 1.29 schema does not know ("spec.containers[0].evn"), as the
    apiserver reports them (Warning header, or 400 with fieldValidation=Strict); drop=True
    removes them from obj, as the apiserver does not store them. Needs kubernetes-validate (its
    strict schemas); without it nothing is reported."""
    try:
        v = _STRICT_VALIDATORS.get(kind)
        if v is None:
            import jsonschema
            from referencing import Registry, Resource
            from kubernetes_validate.utils import schema_contents
            d = "kubernetes-json-schema/v1.29.0-local-strict"
            schema = schema_contents(f"{d}/{kind.lower()}-v1.json", "1.29")
            defs = schema_contents(f"{d}/_definitions.json", "1.29")
            registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
            v = _STRICT_VALIDATORS[kind] = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    except Exception:
        return []
    out = []
    found: list[tuple[dict, str]] = []

    def walk(errors):
        for e in errors:
            if e.context:
                walk(e.context)
            if e.validator != "additionalProperties" or not isinstance(e.instance, dict):
                continue
            allowed = set((e.schema.get("properties") or {}).keys())
            base = ""
            for part in e.absolute_path:
                base += f"[{part}]" if isinstance(part, int) else (f".{part}" if base else str(part))
            for k in e.instance:
                if k not in allowed:
                    out.append(f"{base}.{k}" if base else k)
                    found.append((e.instance, k))

    try:
        walk(v.iter_errors(obj))
    except Exception:
        return []
    if drop:
        for d, k in found:
            d.pop(k, None)
    return sorted(set(out))
