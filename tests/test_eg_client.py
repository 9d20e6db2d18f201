"""Enterprise Gateway's own Python client (enterprise_gateway.client.gateway_client) and itests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conftest import base_env

gateway_client = pytest.importorskip(
    "enterprise_gateway.client.gateway_client",
    reason="install with: pip install --no-deps jupyter_enterprise_gateway==3.3.0 (scripts/setup.sh does)",
)
GatewayClient = gateway_client.GatewayClient


@pytest.fixture(scope="module")
def eg_client(gateway):
    # host is passed explicitly: DEFAULT_GATEWAY_HOST is read from GATEWAY_HOST at import time.
    return GatewayClient(host=f"127.0.0.1:{gateway.port}")


@pytest.fixture(scope="module")
def eg_kernel(eg_client, gateway):
    k = eg_client.start_kernel("python3", timeout=90)
    yield k
    if k.kernel_socket is not None or not k.shutting_down:
        try:
            eg_client.shutdown_kernel(k)
        except Exception:
            gateway.delete(f"api/kernels/{k.kernel_id}")


def test_hello(eg_kernel):
    out, err = eg_kernel.execute("print('hello')")
    assert not err, out
    assert out.strip() == "hello"


def test_state(eg_kernel):
    assert eg_kernel.get_state() in ("idle", "busy", "starting")


def test_interrupt(eg_kernel):
    eg_kernel.execute("x = 123")
    out, err = eg_kernel.execute("print(x)")
    assert (out.strip(), err) == ("123", False)
    eg_kernel.start_interrupt_thread(wait_time=1)
    out, err = eg_kernel.execute(["import time\n", "print('begin')\n", "time.sleep(30)\n", "print('end')\n"],
                                 timeout=45)
    eg_kernel.terminate_interrupt_thread()
    assert err, out
    assert "KeyboardInterrupt" in out
    out, err = eg_kernel.execute("print(x + 1)")
    assert (out.strip(), err) == ("124", False)


def test_restart(eg_kernel):
    eg_kernel.execute("state = 'kept?'")
    assert eg_kernel.execute("print(state)")[0].strip() == "kept?"
    assert eg_kernel.restart(timeout=90)
    out, err = eg_kernel.execute("print(state)", timeout=90)
    assert err and "NameError" in out, out


def test_shutdown(eg_client, gateway):
    k = eg_client.start_kernel("python3", timeout=90)
    try:
        assert k.execute("print(6*7)")[0].strip() == "42"
    finally:
        eg_client.shutdown_kernel(k)  # raises unless DELETE -> 204
    assert gateway.get(f"api/kernels/{k.kernel_id}").status_code == 404


def test_start_unknown_kernelspec(eg_client):
    with pytest.raises(RuntimeError, match="Error starting kernel"):
        eg_client.start_kernel("no-such-kernelspec")


@pytest.mark.timeout(300)
def test_eg_itests_python_local(gateway, tmp_path):
    """EG's shipped integration tests (TestPythonKernelLocal) run unmodified against Ganymede."""
    env = base_env()
    env.update({
        "GATEWAY_HOST": f"127.0.0.1:{gateway.port}",
        "KERNEL_USERNAME": "bob",
        "ITEST_HOSTNAME_PREFIX": socket.gethostname()[:1] or "a",
        "PYTHON_KERNEL_LOCAL_NAME": "python3",
        "REQUEST_TIMEOUT": "90",
    })
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", "enterprise_gateway.itests",
         "-k", "TestPythonKernelLocal", "-o", "addopts=", "--timeout=200"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=280,
    )
    tail = (p.stdout[-4000:] + "\n" + p.stderr[-2000:])
    assert p.returncode == 0, tail
    assert " 5 passed" in p.stdout or "5 passed" in p.stdout, tail
