"""Kernels as Kubernetes pods, against an in-test fake API server (tests/fake_kube_api.py) that
follows the documented Pod/Namespace/watch API and runs each pod's container as a local process,
so the kernel in the "pod" is a real ipykernel started by a real launcher through EG's protocol.

What a real cluster would add and this cannot show: scheduling, image pulls, pod networking,
RBAC enforcement, cgroup limits inside containers (see README)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest

from conftest import Gateway, KernelTracker, KernelWS, alive, assert_json_error, execute_ok, free_port, wait_until
from fake_kube_api import FakeKubeAPI
from remote_support import LAUNCHER, write_spec

pytestmark = pytest.mark.timeout(300)

K8S = "enterprise_gateway.services.processproxies.k8s.KubernetesProcessProxy"
IMAGE = "elyra/kernel-py:3.3.0"
# What EG's kernel images do at start (bootstrap-kernel.sh): run the launcher from the pod's env.
BOOTSTRAP = ["sh", "-c", f"exec {shlex.quote(sys.executable)} {shlex.quote(LAUNCHER)} --kernel-id \"$KERNEL_ID\" "
             "--response-address \"$RESPONSE_ADDRESS\" --public-key \"$PUBLIC_KEY\" --port-range \"$PORT_RANGE\""]
# EG's kernelspec argv for Kubernetes (ignored: the gateway creates the pod itself).
EG_ARGV = ["python", "{resource_dir}/scripts/launch_kubernetes.py", "--RemoteProcessProxy.kernel-id", "{kernel_id}",
           "--RemoteProcessProxy.response-address", "{response_address}", "--RemoteProcessProxy.public-key", "{public_key}"]

TEMPLATE = """\
apiVersion: v1
kind: Pod
metadata:
  name: "{{ kernel_pod_name }}"
  annotations:
    ganymede.test/owner: "{{ kernel_username }}"
    ganymede.test/plain: {{ kernel_username }}
spec:
  containers:
  - name: kernel
    image: "{{ kernel_image }}"
    env:
    - name: FROM_TEMPLATE
      value: "{{ kernel_id }}"
"""


def validate(pod: dict) -> None:
    kubernetes_validate.validate(pod, "1.29", strict=True)


def pod_bodies(fake: FakeKubeAPI) -> list[dict]:
    return [r["body"] for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/pods")]


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k8s-specs")
    write_spec(root, "k8s_python", EG_ARGV, K8S, config={"image_name": IMAGE})
    write_spec(root, "k8s_badimage", EG_ARGV, K8S, config={"image_name": "bad/image:1"})
    d = write_spec(root, "k8s_template", EG_ARGV, K8S, config={
        "image_name": IMAGE,
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}]})
    (d / "kernel-pod.yaml").write_text(TEMPLATE)
    return root


def start_fake(tmp: Path) -> FakeKubeAPI:
    return FakeKubeAPI(tmp / "kube", namespaces=("default", "notebooks"), images={IMAGE: BOOTSTRAP},
                       fail_images={"bad/image:1": "ImagePullBackOff"},
                       env={"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}).start()


def start_gateway(tmp: Path, fake: FakeKubeAPI, specs: Path, name: str, env: dict | None = None, args=()) -> Gateway:
    kubeconfig = fake.kubeconfig(tmp / f"{name}-kubeconfig", namespace="notebooks")
    e = {"GANYMEDE_KUBECONFIG": str(kubeconfig), "EG_RESPONSE_IP": "127.0.0.1", "EG_RESPONSE_PORT": str(free_port())}
    e.update(env or {})
    return Gateway(tmp / name, args=["--kernelspec-dir", str(specs), *args], env=e, name=name).start()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    f = start_fake(tmp_path_factory.mktemp("k8s-fake"))
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fake, specs):
    tmp = tmp_path_factory.mktemp("k8s-gw")
    cfg = tmp / "profiles.yaml"
    cfg.write_text("resource_profiles:\n  small: {cpus: 0.5, memory: 512Mi}\n  gpu: {cpus: 1, memory: 1Gi, gpus: 1}\n")
    g = start_gateway(tmp, fake, specs, "k8s_gw", args=["--config", str(cfg)])
    yield g
    g.stop()


@pytest.fixture
def kernels(gw, fake):
    t = KernelTracker(gw)
    yield t
    t.cleanup()
    wait_until(lambda: not [p for p in fake.pods() if p["metadata"]["labels"].get("kernel_id") in t.ids], 30,
               what="the kernels' pods to be deleted")


def test_kernel_runs_as_a_pod(gw, fake, kernels):
    before = len(fake.requests)
    m = kernels.create("k8s_python", env={"KERNEL_USERNAME": "alice", "KERNEL_EXTRA": "x y"})
    kid = m["id"]
    (body,) = [b for b in pod_bodies(fake) if b["metadata"]["labels"]["kernel_id"] == kid]
    validate(body)
    assert body["metadata"]["namespace"] == "notebooks"  # the kubeconfig context's
    assert body["metadata"]["name"] == f"alice-{kid}"
    assert body["metadata"]["labels"]["component"] == "kernel"
    assert body["spec"]["restartPolicy"] == "Never"
    container = body["spec"]["containers"][0]
    assert container["image"] == IMAGE
    env = {e["name"]: e["value"] for e in container["env"]}
    for name in ("RESPONSE_ADDRESS", "PUBLIC_KEY", "KERNEL_ID", "PORT_RANGE", "KERNEL_LANGUAGE", "KERNEL_USERNAME",
                 "KERNEL_NAMESPACE"):
        assert env.get(name), f"{name} missing from the pod's env: {env}"
    assert env["KERNEL_ID"] == kid and env["KERNEL_LANGUAGE"] == "python" and env["KERNEL_EXTRA"] == "x y"
    assert not any(k.startswith(("EG_", "GANYMEDE_")) or k in ("PATH", "HOME") for k in env), env
    # Event-driven: one create and one watch, no polling of the pod.
    calls = [(r["method"], r["path"], r["query"].get("watch")) for r in fake.requests[before:]]
    gets = [c for c in calls if c[0] == "GET" and not c[2]]
    assert len([c for c in calls if c[2]]) >= 1 and len(gets) <= 1, calls

    model = gw.get(f"api/kernels/{kid}").json()
    assert model["execution_state"] in ("idle", "starting", "busy")
    with KernelWS(gw, kid) as ws:
        res = execute_ok(ws, "import os; print(os.environ['KERNEL_ID'], os.getpid())")
        assert kid in res.stdout
        pid = int(res.stdout.split()[1])
        assert pid == fake.pod_pid("notebooks", body["metadata"]["name"])
        # Interrupt through the launcher's comm port.
        msg_id = ws.send_execute("import time; time.sleep(60)")
        time.sleep(1.5)
        assert gw.post(f"api/kernels/{kid}/interrupt").status_code == 204
        res = ws.collect_execution(msg_id, timeout=30)
        assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()

    assert gw.delete(f"api/kernels/{kid}").status_code == 204
    kernels.ids.remove(kid)
    assert any(r["method"] == "DELETE" and r["path"].endswith(f"/pods/{body['metadata']['name']}") for r in fake.requests)
    wait_until(lambda: not alive(pid), 15, what="the pod's process to end")
    assert not fake.pods("notebooks") or all(p["metadata"]["labels"].get("kernel_id") != kid for p in fake.pods("notebooks"))


def test_image_pull_failure_is_a_clear_error(gw, fake, kernels):
    t0 = time.monotonic()
    r = gw.post("api/kernels", json={"name": "k8s_badimage"}, timeout=90)
    assert_json_error(r, [500])
    assert "ImagePullBackOff" in r.json()["message"], r.text
    assert time.monotonic() - t0 < 20, "the failure was only noticed at the launch timeout"
    (body,) = [b for b in pod_bodies(fake) if b["spec"]["containers"][0]["image"] == "bad/image:1"][-1:]
    name = body["metadata"]["name"]
    assert any(r["method"] == "DELETE" and r["path"].endswith(f"/pods/{name}") for r in fake.requests), "the failed pod was left"


def test_profile_maps_to_requests_and_limits_and_gpu_unschedulable(gw, fake, kernels):
    m = kernels.create("k8s_python", env={"KERNEL_RESOURCE_PROFILE": "small"})
    (body,) = [b for b in pod_bodies(fake) if b["metadata"]["labels"]["kernel_id"] == m["id"]]
    validate(body)
    res = body["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "500m", "memory": str(512 << 20)} and res["requests"] == res["limits"]

    r = gw.post("api/kernels", json={"name": "k8s_python", "env": {"KERNEL_RESOURCE_PROFILE": "gpu"}}, timeout=90)
    assert_json_error(r, [500])
    assert "Unschedulable" in r.json()["message"] and "nvidia.com/gpu" in r.json()["message"], r.text
    gpu = [b for b in pod_bodies(fake) if b["spec"]["containers"][0].get("resources", {}).get("limits", {}).get("nvidia.com/gpu")]
    assert gpu and gpu[-1]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    validate(gpu[-1])


def test_prohibited_uid_is_403(gw, fake):
    before = len(pod_bodies(fake))
    r = gw.post("api/kernels", json={"name": "k8s_python", "env": {"KERNEL_UID": "0"}}, timeout=30)
    assert_json_error(r, [403])
    assert "KERNEL_UID" in r.json()["message"]
    r = gw.post("api/kernels", json={"name": "k8s_python", "env": {"KERNEL_GID": "zero"}}, timeout=30)
    assert_json_error(r, [400])
    assert len(pod_bodies(fake)) == before, "no pod is created for a refused request"


def test_template_values_cannot_inject(gw, fake, kernels):
    # (Newlines are refused for every env value; flow syntax is enough to turn text into structure.)
    hostile = '{hostPID: true, "x": "y"} #"'
    m = kernels.create("k8s_template", env={"KERNEL_USERNAME": hostile, "KERNEL_UID": "1000", "KERNEL_GID": "100"})
    (body,) = [b for b in pod_bodies(fake) if b["metadata"]["labels"]["kernel_id"] == m["id"]]
    validate(body)
    assert body["metadata"]["annotations"]["ganymede.test/owner"] == hostile
    assert body["metadata"]["annotations"]["ganymede.test/plain"] == hostile
    assert "hostNetwork" not in body["spec"] and "hostPID" not in body["spec"]
    assert body["spec"]["securityContext"] == {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}
    c = body["spec"]["containers"][0]
    assert {"name": "FROM_TEMPLATE", "value": m["id"]} in c["env"]
    assert c["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
    assert body["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    with KernelWS(gw, m["id"]) as ws:
        execute_ok(ws, "print('ok')")


def test_oom_killed_pod_is_reported_and_restarted(gw, fake, kernels):
    m = kernels.create("k8s_python", env={"KERNEL_RESOURCE_PROFILE": "small"})
    kid = m["id"]
    (pod,) = [p for p in fake.pods("notebooks") if p["metadata"]["labels"]["kernel_id"] == kid]
    with KernelWS(gw, kid) as ws:
        execute_ok(ws, "x = 1")
        fake.oom_kill("notebooks", pod["metadata"]["name"])
        states = ws.collect(lambda m: m["channel"] == "iopub" and m["header"]["msg_type"] == "status",
                            lambda kept: any(k["content"]["execution_state"] == "restarting" for k in kept), timeout=30,
                            what="status: restarting")
        restarting = [s for s in states if s["content"]["execution_state"] == "restarting"][0]
        # The pod's OOMKilled, with the profile's memory grant, is the reason clients are given.
        assert "out of memory" in restarting["content"].get("reason", ""), restarting["content"]
    wait_until(lambda: len([p for p in fake.pods("notebooks") if p["metadata"]["labels"]["kernel_id"] == kid
                            and p["status"].get("phase") == "Running"]) == 1, 60, what="the replacement pod")
    log = gw.log_path.read_text(errors="replace")
    assert "OOMKilled" in log or "out of memory" in log, log[-3000:]
    with KernelWS(gw, kid) as ws:
        execute_ok(ws, "print('back')")


def test_per_kernel_namespace_created_and_deleted(tmp_path, fake, specs):
    g = start_gateway(tmp_path, fake, specs, "k8s_ns", env={"EG_SHARED_NAMESPACE": "false"})
    t = KernelTracker(g)
    try:
        m = t.create("k8s_python", env={"KERNEL_USERNAME": "bob"})
        ns = f"bob-{m['id']}"
        assert any(r["method"] == "POST" and r["path"] == "/api/v1/namespaces" and r["body"]["metadata"]["name"] == ns
                   for r in fake.requests)
        assert [p for p in fake.pods(ns)], "the pod is in the kernel's own namespace"
        with KernelWS(g, m["id"]) as ws:
            execute_ok(ws, "print(1)")
        assert g.delete(f"api/kernels/{m['id']}").status_code == 204
        t.ids.remove(m["id"])
        assert any(r["method"] == "DELETE" and r["path"] == f"/api/v1/namespaces/{ns}" for r in fake.requests)
    finally:
        t.cleanup()
        g.stop()


def test_gateway_restart_reattaches_the_pod(tmp_path, fake, specs):
    root = tmp_path / "persist"
    args = ["--session-persistence", "true", "--persistence-root", str(root)]
    first = start_gateway(tmp_path, fake, specs, "k8s_first", args=args)
    first.expected_exit = True
    m = KernelTracker(first).create("k8s_python")
    kid = m["id"]
    with KernelWS(first, kid) as ws:
        execute_ok(ws, "x = 42")
    (pod,) = [p for p in fake.pods("notebooks") if p["metadata"]["labels"]["kernel_id"] == kid]
    pid = fake.pod_pid("notebooks", pod["metadata"]["name"])
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert alive(pid), "the pod outlives the gateway"
    second = start_gateway(tmp_path, fake, specs, "k8s_second", args=args)
    t = KernelTracker(second)
    t.adopt(kid)
    try:
        assert kid in [k["id"] for k in second.get("api/kernels").json()]
        with KernelWS(second, kid) as ws:
            res = execute_ok(ws, "print(x)")
            assert "42" in res.stdout
            msg_id = ws.send_execute("import time; time.sleep(60)")
            time.sleep(1.5)
            assert second.post(f"api/kernels/{kid}/interrupt").status_code == 204
            res = ws.collect_execution(msg_id, timeout=30)
            assert res.error and res.error["ename"] == "KeyboardInterrupt", res.summary()
        assert second.delete(f"api/kernels/{kid}").status_code == 204
        t.ids.remove(kid)
        wait_until(lambda: not alive(pid), 15, what="the pod's process to end")
    finally:
        t.cleanup()
        second.stop()


def test_without_a_cluster_the_start_fails_clearly(tmp_path, specs):
    g = Gateway(tmp_path / "nok8s", args=["--kernelspec-dir", str(specs)], name="nok8s").start()
    try:
        r = g.post("api/kernels", json={"name": "k8s_python"}, timeout=30)
        assert_json_error(r, [500])
        assert "No Kubernetes API is configured" in r.json()["message"], r.text
    finally:
        g.stop()
