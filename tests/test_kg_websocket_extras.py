"""Kernel Gateway's jupyter-websocket extras (issue #8): KG_SEED_URI seeds every new kernel,
KG_PRESPAWN_COUNT keeps started kernels that POST /api/kernels hands out, KG_FORCE_KERNEL_NAME.
Mirrors KG's tests/test_jupyter_websocket.py (TestSeedURI, TestBadSeedURI, TestForceKernel,
test_prespawn_count, test_prespawn_max_conflict) against the ganymede binary.
"""

from __future__ import annotations

import pytest

from conftest import REPO, Gateway, KernelTracker, KernelWS, assert_json_error, execute_ok, wait_until
from test_notebook_http import nb, notebook_server, run_expecting_failure  # noqa: F401 (fixture)


def start(tmp_path_factory, name, env):
    return Gateway(tmp_path_factory.mktemp(name), env=env, name=name).start()


def test_seed_notebook_runs_in_new_kernels(tmp_path_factory):
    gw = start(tmp_path_factory, "ws_seed", {"KG_SEED_URI": nb("kg_zen.ipynb")})
    t = KernelTracker(gw)
    try:
        kid = t.create()["id"]
        with KernelWS(gw, kid) as ws:
            res = execute_ok(ws, "print(this.s)", timeout=90)
            assert "Gur Mra bs Clguba" in res.stdout
    finally:
        t.cleanup()
        gw.stop()


def test_failing_seed_fails_the_post_and_leaves_no_kernel(tmp_path_factory):
    gw = start(tmp_path_factory, "ws_bad_seed", {"KG_SEED_URI": nb("kg_failing_code.ipynb")})
    try:
        r = gw.post("api/kernels", json={})
        assert_json_error(r, [500])
        assert "seeding" in r.json()["reason"].lower()
        assert gw.get("api/kernels").json() == []
    finally:
        gw.stop()


def test_seed_for_an_unknown_kernel_fails_at_startup():
    assert "fakelang2000" in run_expecting_failure([], env={"KG_SEED_URI": nb("kg_unknown_kernel.ipynb")})


def test_prespawned_kernels_are_handed_out_and_refilled(tmp_path_factory):
    gw = start(tmp_path_factory, "ws_prespawn", {"KG_PRESPAWN_COUNT": "2", "KG_SEED_URI": nb("seed_vars.ipynb")})
    t = KernelTracker(gw)
    try:
        ready = wait_until(lambda: len(gw.get("api/kernels").json()) == 2 and gw.get("api/kernels").json(), 90,
                           interval=0.3, what="two prespawned kernels")
        pooled = {k["id"] for k in ready}
        model = t.create()
        assert model["id"] in pooled, "POST /api/kernels started a new kernel instead of a prespawned one"
        with KernelWS(gw, model["id"]) as ws:
            assert execute_ok(ws, "print(SEEDED)", timeout=90).stdout == "seeded-value\n"
        # The pool refills: two ready again beside the one handed out.
        wait_until(lambda: len(gw.get("api/kernels").json()) == 3, 90, interval=0.3, what="the pool to refill")
        # jupyter_server's gateway client sends KERNEL_LAUNCH_TIMEOUT: still served from the pool.
        listed = {k["id"] for k in gw.get("api/kernels").json()}
        second = t.create(env={"KERNEL_LAUNCH_TIMEOUT": "40"})
        assert second["id"] in listed
        # An environment that would change the kernel gets a new kernel, seeded too.
        listed = {k["id"] for k in gw.get("api/kernels").json()}
        third = t.create(env={"KERNEL_WORKING_DIR": str(REPO)})
        assert third["id"] not in listed
        with KernelWS(gw, third["id"]) as ws:
            assert execute_ok(ws, "import os; print(SEEDED, os.getcwd())", timeout=90).stdout == f"seeded-value {REPO}\n"
    finally:
        t.cleanup()
        gw.stop()


def test_force_kernel_name(tmp_path_factory):
    gw = start(tmp_path_factory, "ws_force", {"KG_FORCE_KERNEL_NAME": "python3"})
    t = KernelTracker(gw)
    try:
        model = t.create(name="fake-kernel")
        assert model["name"] == "python3"
    finally:
        t.cleanup()
        gw.stop()


def test_prespawn_beyond_max_kernels_fails_at_startup():
    out = run_expecting_failure([], env={"KG_PRESPAWN_COUNT": "3", "KG_MAX_KERNELS": "2"})
    assert "Cannot prespawn 3 kernels" in out


def test_seed_notebook_from_url(tmp_path_factory, notebook_server):
    """KG's TestRemoteSeedURI, with the notebook served on loopback instead of a gist."""
    gw = start(tmp_path_factory, "ws_seed_url", {"KG_SEED_URI": f"{notebook_server}/kg_zen.ipynb"})
    t = KernelTracker(gw)
    try:
        kid = t.create()["id"]
        with KernelWS(gw, kid) as ws:
            assert "Gur Mra bs Clguba" in execute_ok(ws, "print(this.s)", timeout=90).stdout
    finally:
        t.cleanup()
        gw.stop()
