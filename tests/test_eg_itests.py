"""Enterprise Gateway's own integration tests (enterprise_gateway.itests, shipped in the 3.3.0 wheel)
run unmodified against Ganymede.

Of the itest classes, these need nothing Ganymede lacks: TestPythonKernelLocal (run in
test_eg_client.py) and TestAuthorization (here). The others need a Spark/YARN cluster
(TestPythonKernelClient/Cluster, the R and Scala Client/Cluster classes), IRkernel or Toree
(TestRKernelLocal, TestScalaKernelLocal), or EG's remote launcher on other hosts
(TestPythonKernelDistributed, the `python_distributed` kernelspec: issue #5).

TestAuthorization needs the `authorization_test` kernelspec, which the wheel ships in
enterprise_gateway/itests/kernels/ (upstream CI mounts that directory as JUPYTER_PATH); our
copy is tests/fixtures/kernelspecs/authorization_test and must stay identical to it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env

itests = pytest.importorskip(
    "enterprise_gateway.itests",
    reason="install with: pip install --no-deps jupyter_enterprise_gateway==3.3.0 (scripts/setup.sh does)",
)

SPECS = Path(__file__).resolve().parent / "fixtures" / "kernelspecs"
WHEEL_KERNELS = Path(itests.__file__).resolve().parent / "kernels"


def test_authorization_kernelspec_is_eg_s():
    ours = (SPECS / "authorization_test" / "kernel.json").read_bytes()
    theirs = (WHEEL_KERNELS / "authorization_test" / "kernel.json").read_bytes()
    assert ours == theirs


def _run_itests(gateway, tmp_path, selector: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = base_env()
    env.update({
        "GATEWAY_HOST": f"127.0.0.1:{gateway.port}",
        "KERNEL_USERNAME": "bob",
        "ITEST_HOSTNAME_PREFIX": socket.gethostname()[:1] or "a",
        "AUTHORIZATION_KERNEL_NAME": "authorization_test",
        "PYTHON_KERNEL_LOCAL_NAME": "python3",
        "REQUEST_TIMEOUT": "90",
    })
    # -p no:cacheprovider and a scratch cwd: EG's own pyproject settings must not apply.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--pyargs", "enterprise_gateway.itests",
         "-k", selector, "-o", "addopts=", f"--timeout={timeout - 30}"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.timeout(300)
def test_eg_itests_authorization(gateway_factory, tmp_path):
    """TestAuthorization: bob may start authorization_test and run a print; bad_guy gets a 403."""
    gw = gateway_factory("itests_auth", args=["--kernelspec-dir", str(SPECS)])
    p = _run_itests(gw, tmp_path, "TestAuthorization")
    tail = p.stdout[-5000:] + "\n" + p.stderr[-2000:]
    assert p.returncode == 0, tail
    assert "test_authorized_users PASSED" in p.stdout, tail
    assert "test_unauthorized_users PASSED" in p.stdout, tail
    assert "2 passed" in p.stdout, tail
    assert gw.get("api/kernels").json() == [], "the itests left a kernel behind"
