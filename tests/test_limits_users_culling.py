"""Issue #4 against the `ganymede` binary: kernel limits under concurrent POSTs, launch timeouts and
failed starts, KERNEL_USERNAME authorization (global and per-kernelspec lists), idle culling.

Expected behaviour is Enterprise Gateway 3.3.0's (the wheel installed in .venv):
- limits: enterprise_gateway/services/kernels/handlers.py `MainKernelHandler.post` (403 "Resource Limit")
  and services/kernels/remotemanager.py `_enforce_kernel_limits` (running + pending starts);
- users: services/processproxies/processproxy.py `_enforce_authorization` / `_raise_authorization_error`
  (403 whose *reason* carries the text, message empty, as `log_and_raise` builds it) and
  services/kernelspecs/handlers.py `apply_user_filter` for `?user=`;
- culling: jupyter_server/services/kernels/kernelmanager.py `cull_kernel_if_idle`.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websocket

import conftest
from conftest import (
    KernelTracker, KernelWS, alive, assert_json_error, execute_ok, wait_until,
)

SPECS = Path(__file__).resolve().parent / "fixtures" / "kernelspecs"
SPEC_ARGS = ["--kernelspec-dir", str(SPECS)]
AUTH_SPEC = "authorization_test"
AUTH_DISPLAY = "Authorization Testing"
PY_DISPLAY = "Python 3 (ipykernel)"


# --------------------------------------------------------------------------- helpers


def procs_with_env(needle: str) -> list[int]:
    """Live processes whose environment contains `needle` (e.g. KERNEL_ID=<uuid>): a kernel and
    everything it spawned inherit it, wherever they moved in the process tree."""
    found = []
    want = needle.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want in env and alive(int(entry)):
            found.append(int(entry))
    return found


def runtime_leftovers(gw, kernel_id: str) -> list[str]:
    rt = gw.workdir / "runtime"
    return sorted(p.name for p in rt.rglob("*") if kernel_id in p.name) if rt.exists() else []


def post_kernel(gw, name: str = "python3", timeout: float = 120, **env):
    body = {"name": name}
    if env:
        body["env"] = {k: str(v) for k, v in env.items()}
    r = gw.post("api/kernels", json=body, timeout=timeout)
    gw.record_children()
    return r


def eg_auth_error(user: str, display_name: str, clause: str) -> str:
    """processproxy.py `_raise_authorization_error`."""
    return (f"User '{user}' is {clause} to start kernel '{display_name}'. "
            "Ensure KERNEL_USERNAME is set to an appropriate value and retry the request.")


NOT_AUTHORIZED = "not authorized"
NOT_IN_SET = "not in the set of users authorized"


def assert_eg_auth_403(r, user: str, display_name: str, clause: str):
    """EG's refusal text in `reason`; the exact body (message "") is test_auth_403_body_is_exactly_eg_s."""
    body = assert_json_error(r, [403])
    assert body.get("reason") == eg_auth_error(user, display_name, clause), body
    return body


def delete_created(gw, responses):
    for r in responses:
        if r.status_code == 201:
            gw.delete(f"api/kernels/{r.json()['id']}", timeout=60)


# --------------------------------------------------------------------------- limits


def _concurrent_posts(gw, envs: list[dict]) -> list:
    barrier = threading.Barrier(len(envs))

    def post(env):
        barrier.wait(30)
        return gw.post("api/kernels", json={"name": "python3", "env": env}, timeout=180)

    with ThreadPoolExecutor(len(envs)) as ex:
        results = list(ex.map(post, envs))
    gw.record_children()
    return results


def test_max_kernels_concurrent_posts(gateway_factory):
    """20 concurrent POSTs with EG_MAX_KERNELS=5: exactly 5 kernels, 15 clear 403s; the slot frees on delete."""
    gw = gateway_factory("max5", env={"EG_MAX_KERNELS": "5"})
    results = _concurrent_posts(gw, [{"KERNEL_USERNAME": f"user{i}"} for i in range(20)])
    try:
        codes = sorted(r.status_code for r in results)
        assert codes == [201] * 5 + [403] * 15, [(r.status_code, r.text[:200]) for r in results]
        for r in results:
            if r.status_code == 403:
                body = assert_json_error(r, [403])
                # EG: the handler's "Resource Limit", or the manager's text while starts are pending
                assert body.get("reason") == "Forbidden", body
                assert body.get("message") == "Resource Limit" or re.fullmatch(
                    r"A max kernels limit has been set to 5 and there are currently \d+ active and pending kernels\.",
                    body.get("message", "")), body
        assert len(gw.get("api/kernels").json()) == 5
        assert post_kernel(gw, KERNEL_USERNAME="late").status_code == 403
    finally:
        created = [r for r in results if r.status_code == 201]
        delete_created(gw, created[:1])
    r = post_kernel(gw, KERNEL_USERNAME="late")
    delete_created(gw, [r] + created[1:])
    assert r.status_code == 201, f"a deleted kernel did not free its slot: {r.status_code} {r.text[:300]}"
    assert gw.get("api/kernels").json() == []


def test_max_kernels_per_user_concurrent_posts(gateway_factory):
    """EG_MAX_KERNELS_PER_USER=2: 6 concurrent POSTs by alice give 2 kernels; bob is not affected."""
    gw = gateway_factory("peruser2", env={"EG_MAX_KERNELS_PER_USER": "2"})
    results = _concurrent_posts(gw, [{"KERNEL_USERNAME": "alice"}] * 6 + [{"KERNEL_USERNAME": "bob"}])
    try:
        alice = sorted(r.status_code for r in results[:6])
        assert alice == [201, 201, 403, 403, 403, 403], [(r.status_code, r.text[:200]) for r in results[:6]]
        assert results[6].status_code == 201, results[6].text[:300]
        for r in results[:6]:
            if r.status_code == 403:
                body = assert_json_error(r, [403])
                assert body.get("reason") == "Forbidden", body
                assert re.fullmatch(r"A max kernels per user limit has been set to 2 and user 'alice' currently has "
                                    r"\d+ active and pending kernels\.", body.get("message", "")), body
    finally:
        delete_created(gw, results)
    assert gw.get("api/kernels").json() == []


def test_limit_messages_match_eg(gateway_factory):
    """The 403 bodies are EG's: {"reason": "Forbidden", "message": ...} with EG's texts."""
    gw = gateway_factory("limits_text", env={"EG_MAX_KERNELS": "2", "EG_MAX_KERNELS_PER_USER": "1"})
    made = []
    try:
        made.append(post_kernel(gw, KERNEL_USERNAME="alice"))
        assert made[-1].status_code == 201, made[-1].text
        r = post_kernel(gw, KERNEL_USERNAME="alice")
        made.append(r)
        body = assert_json_error(r, [403])
        # remotemanager.py _enforce_kernel_limits, per-user branch
        assert body == {"reason": "Forbidden", "message": (
            "A max kernels per user limit has been set to 1 and user 'alice' currently has 1 active and pending kernel."
        )}, body
        made.append(post_kernel(gw, KERNEL_USERNAME="bob"))
        assert made[-1].status_code == 201, made[-1].text
        r = post_kernel(gw, KERNEL_USERNAME="carol")
        made.append(r)
        body = assert_json_error(r, [403])
        # handlers.py MainKernelHandler.post (running kernels), or the manager's text when starts are pending
        assert body.get("reason") == "Forbidden", body
        assert body.get("message") == "Resource Limit" or re.fullmatch(
            r"A max kernels limit has been set to 2 and there are currently \d+ active and pending kernels\.",
            body.get("message", "")), body
    finally:
        delete_created(gw, made)


# --------------------------------------------------------------------------- launch timeouts and failures


@pytest.fixture(scope="module")
def spec_gateway(gateway_factory):
    """Test kernelspecs, a 30 s default launch timeout (EG_KERNEL_LAUNCH_TIMEOUT)."""
    return gateway_factory("launch", args=SPEC_ARGS, env={"EG_KERNEL_LAUNCH_TIMEOUT": "30"})


def _assert_nothing_left(gw, kid: str):
    wait_until(lambda: not procs_with_env(f"KERNEL_ID={kid}"), 5,
               what=f"every process of kernel {kid} (incl. its children) to be gone")
    assert gw.get(f"api/kernels/{kid}").status_code == 404
    assert kid not in [k["id"] for k in gw.get("api/kernels").json()]
    assert runtime_leftovers(gw, kid) == []


# What a launch timeout may cost beyond the timeout itself: EG's RemoteProcessProxy.handle_timeout
# kills with SIGTERM, polls EG_MAX_POLL_ATTEMPTS (10) x EG_POLL_INTERVAL (0.5 s), then SIGKILL.
KILL_GRACE = 5.5


def _hang(gw, timeout_env: str | None) -> float:
    """POST the never-ready kernelspec (it ignores SIGTERM and has a child); check the error and that
    nothing is left; return how long the POST took."""
    kid = str(uuid.uuid4())
    env = {"KERNEL_ID": kid, "KERNEL_USERNAME": "alice"}
    if timeout_env is not None:
        env["KERNEL_LAUNCH_TIMEOUT"] = timeout_env
    t0 = time.monotonic()
    r = post_kernel(gw, "hang_forever", timeout=90, **env)
    elapsed = time.monotonic() - t0
    body = assert_json_error(r, [500, 503, 504])
    text = f"{body.get('reason')} {body.get('message')}"
    assert "timeout" in text.lower() or "timed out" in text.lower(), body
    assert "hanging without binding any port" in text, f"the kernel's stderr is not in the error: {body}"
    _assert_nothing_left(gw, kid)
    return elapsed


def test_launch_timeout_per_request(spec_gateway):
    """The request's KERNEL_LAUNCH_TIMEOUT (2 s) wins over the gateway's default (30 s)."""
    elapsed = _hang(spec_gateway, "2")
    assert 1.8 <= elapsed < 25, f"KERNEL_LAUNCH_TIMEOUT=2 answered after {elapsed:.1f}s"


def test_launch_timeout_gateway_default(gateway_factory):
    gw = gateway_factory("launch_default", args=SPEC_ARGS, env={"EG_KERNEL_LAUNCH_TIMEOUT": "3"})
    elapsed = _hang(gw, None)
    assert 2.8 <= elapsed < 25, f"EG_KERNEL_LAUNCH_TIMEOUT=3 answered after {elapsed:.1f}s"


def test_launch_timeout_answers_promptly(spec_gateway):
    """The error comes within the timeout plus EG's kill budget, not 10 s later."""
    elapsed = _hang(spec_gateway, "2")
    assert elapsed < 2 + KILL_GRACE, f"KERNEL_LAUNCH_TIMEOUT=2 answered after {elapsed:.1f}s"


def test_failed_start_reports_exit_code_and_stderr(spec_gateway):
    """A kernel importing a missing module: a prompt error with the exit code and ModuleNotFoundError."""
    kid = str(uuid.uuid4())
    t0 = time.monotonic()
    r = post_kernel(spec_gateway, "missing_module", timeout=60, KERNEL_ID=kid, KERNEL_USERNAME="alice",
                    KERNEL_LAUNCH_TIMEOUT="30")
    elapsed = time.monotonic() - t0
    body = assert_json_error(r, [500])
    text = f"{body.get('reason')} {body.get('message')}"
    assert "ModuleNotFoundError: No module named 'ganymede_missing_module_for_tests'" in text, body
    assert re.search(r"exit\w*(\s+(with|code|status))*[\s:=]*1\b", text), f"no exit code 1 in {body}"
    assert elapsed < 15, f"the failure took {elapsed:.1f}s: it waited for the launch timeout"
    _assert_nothing_left(spec_gateway, kid)


def test_failed_start_keeps_only_last_stderr_lines(spec_gateway):
    kid = str(uuid.uuid4())
    r = post_kernel(spec_gateway, "noisy_failure", timeout=60, KERNEL_ID=kid, KERNEL_USERNAME="alice",
                    KERNEL_LAUNCH_TIMEOUT="30")
    body = assert_json_error(r, [500])
    text = f"{body.get('reason')} {body.get('message')}"
    assert "noise line 299" in text, body
    assert "noise line 0\n" not in text + "\n" and "noise line 10\n" not in text, "the whole stderr was copied"
    assert re.search(r"exit\w*(\s+(with|code|status))*[\s:=]*3\b", text), f"no exit code 3 in {body}"
    assert len(r.content) < 16384
    _assert_nothing_left(spec_gateway, kid)


def test_failed_starts_do_not_count_against_limits(gateway_factory):
    """A failed start releases its pending slot (EG's TrackPendingRequests.decrement)."""
    gw = gateway_factory("fail_limit", args=SPEC_ARGS, env={"EG_MAX_KERNELS": "1"})
    for _ in range(2):
        r = post_kernel(gw, "missing_module", KERNEL_USERNAME="alice", KERNEL_LAUNCH_TIMEOUT="30")
        assert_json_error(r, [500])
    r = post_kernel(gw, KERNEL_USERNAME="alice")
    delete_created(gw, [r])
    assert r.status_code == 201, r.text[:300]


# --------------------------------------------------------------------------- users


def start_with_eg_user_defaults(gateway_factory, name: str, **kw):
    """A gateway whose environment has no EG_UNAUTHORIZED_USERS at all, so EG's default (root)
    applies: conftest.base_env() clears it when the suite runs as root."""
    plain = conftest.base_env

    def without_user_lists():
        env = plain()
        env.pop("EG_UNAUTHORIZED_USERS", None)
        env.pop("EG_AUTHORIZED_USERS", None)
        return env

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "base_env", without_user_lists)
        return gateway_factory(name, **kw)


@pytest.fixture(scope="module")
def users_gateway(gateway_factory):
    """EG's defaults: no authorized list, unauthorized = {root}."""
    return start_with_eg_user_defaults(gateway_factory, "users_default", args=SPEC_ARGS)


@pytest.fixture(scope="module")
def users_global_gateway(gateway_factory):
    return gateway_factory("users_global", args=SPEC_ARGS,
                           env={"EG_AUTHORIZED_USERS": "alice,dave", "EG_UNAUTHORIZED_USERS": "mallory,bob"})


def test_root_refused_by_default(users_gateway):
    r = post_kernel(users_gateway, KERNEL_USERNAME="root")
    delete_created(users_gateway, [r])
    assert_eg_auth_403(r, "root", PY_DISPLAY, NOT_AUTHORIZED)


def test_auth_403_body_is_exactly_eg_s(users_gateway):
    """log_and_raise(403, reason=text) -> JSONErrorsMixin: {"reason": text, "message": ""}."""
    r = post_kernel(users_gateway, AUTH_SPEC, KERNEL_USERNAME="bad_guy")
    delete_created(users_gateway, [r])
    body = assert_eg_auth_403(r, "bad_guy", AUTH_DISPLAY, NOT_AUTHORIZED)
    assert body == {"reason": eg_auth_error("bad_guy", AUTH_DISPLAY, NOT_AUTHORIZED), "message": ""}, body


def test_missing_username_is_gateway_user(users_gateway):
    """Without KERNEL_USERNAME EG checks the gateway's own user (KernelSessionManager.get_kernel_username)."""
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the gateway runs as root")
    r = users_gateway.post("api/kernels", json={"name": "python3"}, timeout=120)
    delete_created(users_gateway, [r])
    assert_eg_auth_403(r, "root", PY_DISPLAY, NOT_AUTHORIZED)


def test_kernelspec_lists_default_globals(users_gateway):
    """authorization_test: authorized bob,alice,bad_guy; unauthorized bad_guy (EG's itest kernelspec)."""
    gw = users_gateway
    r = post_kernel(gw, AUTH_SPEC, KERNEL_USERNAME="bad_guy")
    delete_created(gw, [r])
    assert_eg_auth_403(r, "bad_guy", AUTH_DISPLAY, NOT_AUTHORIZED)
    r = post_kernel(gw, AUTH_SPEC, KERNEL_USERNAME="carol")
    delete_created(gw, [r])
    assert_eg_auth_403(r, "carol", AUTH_DISPLAY, NOT_IN_SET)
    r = post_kernel(gw, AUTH_SPEC, KERNEL_USERNAME="root")
    delete_created(gw, [r])
    assert_eg_auth_403(r, "root", AUTH_DISPLAY, NOT_AUTHORIZED)
    tracker = KernelTracker(gw)
    try:
        k = tracker.create(AUTH_SPEC, env={"KERNEL_USERNAME": "bob"})
        with KernelWS(gw, k["id"]) as ws:
            assert execute_ok(ws, "import os; print(os.environ['KERNEL_USERNAME'])").stdout == "bob\n"
        # The kernelspec's lists are its own: bad_guy may use python3.
        tracker.create("python3", env={"KERNEL_USERNAME": "bad_guy"})
    finally:
        tracker.cleanup()


def test_global_lists(users_global_gateway):
    """EG_UNAUTHORIZED_USERS replaces the root default and is unioned with a kernelspec's list;
    a kernelspec's authorized_users replaces EG_AUTHORIZED_USERS."""
    gw = users_global_gateway
    cases = [
        ("python3", "mallory", PY_DISPLAY, NOT_AUTHORIZED),
        ("python3", "erin", PY_DISPLAY, NOT_IN_SET),
        ("python3", "root", PY_DISPLAY, NOT_IN_SET),  # root is no longer unauthorized, but not authorized either
        (AUTH_SPEC, "bob", AUTH_DISPLAY, NOT_AUTHORIZED),  # global unauthorized applies to the kernelspec too
        (AUTH_SPEC, "dave", AUTH_DISPLAY, NOT_IN_SET),  # the kernelspec's authorized list replaces the global one
        (AUTH_SPEC, "bad_guy", AUTH_DISPLAY, NOT_AUTHORIZED),
    ]
    for spec, user, display, clause in cases:
        r = post_kernel(gw, spec, KERNEL_USERNAME=user)
        delete_created(gw, [r])
        assert_eg_auth_403(r, user, display, clause)
    tracker = KernelTracker(gw)
    try:
        tracker.create("python3", env={"KERNEL_USERNAME": "dave"})
        tracker.create(AUTH_SPEC, env={"KERNEL_USERNAME": "alice"})
    finally:
        tracker.cleanup()


def test_unauthorized_users_env_replaces_root_default(gateway_factory):
    gw = gateway_factory("users_noroot", env={"EG_UNAUTHORIZED_USERS": "mallory"})
    r = post_kernel(gw, KERNEL_USERNAME="root")
    delete_created(gw, [r])
    assert r.status_code == 201, r.text[:300]
    r = post_kernel(gw, KERNEL_USERNAME="mallory")
    delete_created(gw, [r])
    assert_eg_auth_403(r, "mallory", PY_DISPLAY, NOT_AUTHORIZED)


def _spec_names(gw, user: str | None) -> set[str]:
    r = gw.get("api/kernelspecs", params={"user": user} if user is not None else None)
    assert r.status_code == 200, r.text
    return set(r.json()["kernelspecs"])


def test_kernelspecs_user_filter_default_globals(users_gateway):
    gw = users_gateway
    everything = _spec_names(gw, None)
    assert {"python3", AUTH_SPEC, "hang_forever"} <= everything
    assert _spec_names(gw, "") == everything
    assert _spec_names(gw, "bob") == everything
    assert _spec_names(gw, "bad_guy") == everything - {AUTH_SPEC}
    assert _spec_names(gw, "carol") == everything - {AUTH_SPEC}
    assert _spec_names(gw, "root") == set()
    # the default kernel name is still reported
    assert gw.get("api/kernelspecs", params={"user": "root"}).json()["default"] == "python3"


def test_kernelspecs_user_filter_global_lists(users_global_gateway):
    gw = users_global_gateway
    everything = _spec_names(gw, None)
    others = everything - {AUTH_SPEC}
    assert _spec_names(gw, "alice") == everything
    assert _spec_names(gw, "dave") == others
    assert _spec_names(gw, "bob") == set()
    assert _spec_names(gw, "erin") == set()


def test_kernelspec_by_name_user_filter(users_gateway):
    gw = users_gateway
    assert gw.get(f"api/kernelspecs/{AUTH_SPEC}", params={"user": "bob"}).status_code == 200
    r = gw.get(f"api/kernelspecs/{AUTH_SPEC}", params={"user": "bad_guy"})
    body = assert_json_error(r, [403])
    # kernelspecs/handlers.py KernelSpecHandler.get: HTTPError(403, text) -> reason "Forbidden", message text
    assert body == {"reason": "Forbidden",
                    "message": f"User bad_guy is not authorized to use kernel spec {AUTH_SPEC}"}, body


def test_authorized_kernel_refused_does_not_leak(users_gateway):
    """A refused start leaves no process, no runtime files and no pending slot."""
    kid = str(uuid.uuid4())
    r = post_kernel(users_gateway, AUTH_SPEC, KERNEL_USERNAME="bad_guy", KERNEL_ID=kid)
    delete_created(users_gateway, [r])
    assert r.status_code == 403
    _assert_nothing_left(users_gateway, kid)


# --------------------------------------------------------------------------- culling


CULL_ENV = {"EG_CULL_IDLE_TIMEOUT": "2", "EG_CULL_INTERVAL": "1"}


def _status(gw, kid: str) -> int:
    return gw.get(f"api/kernels/{kid}").status_code


def _start_busy(gw, kid: str, seconds: int, keep_open: bool = False) -> KernelWS | None:
    ws = KernelWS(gw, kid)
    msg_id = ws.send_execute(f"import time; time.sleep({seconds})")
    ws.collect(lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "busy"
               and m["parent_header"].get("msg_id") == msg_id, lambda kept: bool(kept), 30, "busy")
    if keep_open:
        return ws
    ws.close()
    return None


def _kernel_pids_of(gw, kid):
    return procs_with_env(f"KERNEL_ID={kid}")


def test_cull_idle_kernels_only(gateway_factory):
    """timeout 2 s, interval 1 s: the idle unconnected kernel is culled and its id answers 404 saying so;
    a busy one (cull_busy off) and a connected one (cull_connected off) survive until they are neither."""
    gw = gateway_factory("cull", env=CULL_ENV)
    t = KernelTracker(gw)
    try:
        # Each kernel is set up right after its start: the 2 s timeout runs from its last activity.
        busy = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        busy_for = 15
        _start_busy(gw, busy, busy_for)
        busy_until = time.monotonic() + busy_for - 1.5
        connected = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        conn_ws = KernelWS(gw, connected)
        execute_ok(conn_ws, "pass")
        idle = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        idle_pids = _kernel_pids_of(gw, idle)
        assert idle_pids
        t0 = time.monotonic()
        wait_until(lambda: _status(gw, idle) == 404, 12, interval=0.2, what="the idle kernel to be culled")
        r = gw.get(f"api/kernels/{idle}")
        body = assert_json_error(r, [404])
        text = f"{body.get('reason')} {body.get('message')}"
        assert "cull" in text.lower(), f"the 404 does not say the kernel was culled: {body}"
        assert re.search(r"\d{2}:\d{2}:\d{2}", text), f"the 404 does not say when: {body}"
        assert idle not in [k["id"] for k in gw.get("api/kernels").json()]
        wait_until(lambda: not any(alive(p) for p in idle_pids), 10, what="the culled kernel's process to exit")
        # keep watching the other two for a while after the idle one went
        assert time.monotonic() < busy_until, "the machine is too slow for this test's timing"
        while time.monotonic() < min(t0 + 5, busy_until):
            assert _status(gw, busy) == 200, "a busy kernel was culled with cull_busy off"
            assert _status(gw, connected) == 200, "a connected kernel was culled with cull_connected off"
            time.sleep(0.5)
        # the sleep ends, the kernel goes idle and is culled in turn
        wait_until(lambda: _status(gw, busy) == 404, busy_for + 10, interval=0.2, what="the formerly busy kernel to be culled")
        assert _status(gw, connected) == 200
        conn_ws.close()
        wait_until(lambda: _status(gw, connected) == 404, 12, interval=0.2,
                   what="the kernel to be culled once its WebSocket closed")
        # "for a while after": the reason is still there
        time.sleep(1)
        body = assert_json_error(gw.get(f"api/kernels/{idle}"), [404])
        assert "cull" in f"{body.get('reason')} {body.get('message')}".lower()
    finally:
        t.cleanup()


def test_cull_connected(gateway_factory):
    """EG_CULL_CONNECTED=true: an idle kernel with an open WebSocket is culled; a busy one is not."""
    gw = gateway_factory("cull_connected", env={**CULL_ENV, "EG_CULL_CONNECTED": "true"})
    t = KernelTracker(gw)
    sockets = []
    try:
        busy = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        sockets.append(_start_busy(gw, busy, 30, keep_open=True))
        idle = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        ws = KernelWS(gw, idle)
        sockets.append(ws)
        execute_ok(ws, "pass")
        t0 = time.monotonic()
        wait_until(lambda: _status(gw, idle) == 404, 12, interval=0.2, what="the connected idle kernel to be culled")
        # its client is let go: the gateway closes the WebSocket
        closed, deadline = False, time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                ws.recv(max(0.1, deadline - time.monotonic()))
        except (ConnectionError, websocket.WebSocketConnectionClosedException):
            closed = True
        except TimeoutError:
            pass
        assert closed, "the culled kernel's WebSocket stayed open"
        while time.monotonic() - t0 < 5:
            assert _status(gw, busy) == 200, "a busy kernel was culled with cull_busy off"
            time.sleep(0.5)
    finally:
        for s in sockets:
            if s is not None:
                s.close()
        t.cleanup()


def test_cull_busy(gateway_factory):
    """EG_CULL_BUSY=true: a kernel busy for longer than the timeout, with no WebSocket, is culled."""
    gw = gateway_factory("cull_busy", env={**CULL_ENV, "EG_CULL_BUSY": "true"})
    t = KernelTracker(gw)
    try:
        busy = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        pids = _kernel_pids_of(gw, busy)
        _start_busy(gw, busy, 60)
        wait_until(lambda: _status(gw, busy) == 404, 12, interval=0.2, what="the busy kernel to be culled")
        wait_until(lambda: not any(alive(p) for p in pids), 10, what="the culled kernel's process to exit")
    finally:
        t.cleanup()


def test_culling_off_by_default(gateway):
    """No EG_CULL_IDLE_TIMEOUT: nothing is culled (EG's cull_idle_timeout defaults to 0)."""
    t = KernelTracker(gateway)
    try:
        kid = t.create("python3", env={"KERNEL_USERNAME": "alice"})["id"]
        time.sleep(4)
        assert _status(gateway, kid) == 200
    finally:
        t.cleanup()
