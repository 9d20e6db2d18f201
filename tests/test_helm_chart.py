"""The Helm chart in helm/ganymede: rendered and linted by Helm itself, every manifest checked
against the official Kubernetes JSON schemas, and every gateway setting it passes checked
against the options the gateway really reads.

Helm is helm-python-sdk (Helm's Go SDK built into a shared library that the wheel ships; no
`helm` binary). It runs in a child process so that the Go runtime is never loaded into the
pytest process, which runs gateways and kernels and sends them signals. The schemas are
kubernetes-validate's, which ships them. Nothing here opens a network connection: rendering
is offline (`lookup` answers empty) and lint talks to no cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "ganymede"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "demo", "notebooks"
# The oldest Kubernetes minor still in common support, and the newest the schemas know.
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]

# Runs in a child process: renders the chart with each values file (and any extra ones given
# as JSON on stdin) and lints it, and prints the results as JSON.
_HELM_SCRIPT = r"""
import json, sys
import helm_python as helm
chart_dir, cases = sys.argv[1], json.load(sys.stdin)
out = {"sdk": helm.helm_sdk_version(), "cases": {}}
for name, values in cases.items():
    case = {}
    try:
        with helm.Chart.load(chart_dir) as chart:
            case["manifests"] = chart.render(values, name=%(release)r, namespace=%(namespace)r,
                                             is_install=True)
    except helm.HelmError as e:
        case["render_error"] = "%%s: %%s" %% (type(e).__name__, e)
    case["lint"] = helm.lint(chart_dir, values, strict=True, namespace=%(namespace)r)
    out["cases"][name] = case
print(json.dumps(out))
""" % {"release": RELEASE, "namespace": NAMESPACE}


def run_helm(cases: dict[str, dict], tmp_path: Path) -> dict:
    """Render and lint in a child process with its own HOME and Helm directories."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # No cluster: a kubeconfig that does not exist rather than the user's.
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _HELM_SCRIPT, str(CHART)],
        input=json.dumps(cases), capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, f"helm child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(scope="module")
def helm_results(tmp_path_factory) -> dict:
    pytest.importorskip("helm_python")
    cases = {p.name: load_values(p) for p in CI_VALUES}
    cases["bad-kernelspec-name"] = {"kernelspecs": {"no/slashes": {"argv": ["x"]}}}
    return run_helm(cases, tmp_path_factory.mktemp("helm"))


def objects(case: dict) -> list[dict]:
    """Every rendered Kubernetes object (NOTES.txt is not a manifest)."""
    docs = []
    for path, text in sorted(case["manifests"].items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(case: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in objects(case):
        out.setdefault(d["kind"], []).append(d)
    return out


def gateway_container(case: dict) -> dict:
    [deployment] = by_kind(case)["Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(case: dict) -> dict[str, dict]:
    return {e["name"]: e for e in gateway_container(case)["env"]}


def case_for(helm_results: dict, name: str) -> dict:
    case = helm_results["cases"][name]
    assert "render_error" not in case, case.get("render_error")
    return case


# --------------------------------------------------------------------------- what the gateway reads


def gateway_options() -> tuple[set[str], set[str]]:
    """(environment names, config-file keys) the gateway reads, from its Swift sources.

    `settings.string("cull_idle_timeout", env: ["EG_CULL_IDLE_TIMEOUT"])` reads
    GANYMEDE_CULL_IDLE_TIMEOUT, then EG_CULL_IDLE_TIMEOUT, then the file's cull_idle_timeout.
    """
    env: set[str] = {"GANYMEDE_CONFIG"}
    keys: set[str] = set()
    call = re.compile(r'\b(?:settings\.|\b)(?:string|int|double|bool|stringAllowingEmpty)\(\s*"([a-z_]+)",\s*env:\s*\[([^\]]*)\]')
    file_key = re.compile(r'\bfile\["([a-z_]+)"\]')
    for source in (REPO / "Sources" / "ganymede").glob("*.swift"):
        text = source.read_text()
        for key, names in call.findall(text):
            keys.add(key)
            env.add("GANYMEDE_" + key.upper())
            env.update(re.findall(r'"([A-Z0-9_]+)"', names))
        keys.update(file_key.findall(text))
    return env, keys


def test_the_option_scan_finds_the_known_options():
    env, keys = gateway_options()
    for name in ["GANYMEDE_PORT", "GANYMEDE_IP", "GANYMEDE_AUTH_TOKEN", "EG_AUTH_TOKEN", "EG_CULL_IDLE_TIMEOUT",
                 "EG_MAX_KERNELS", "EG_MAX_KERNELS_PER_USER", "GANYMEDE_KERNELSPEC_DIRS", "EG_CERTFILE"]:
        assert name in env, name
    for key in ["resource_profiles", "max_resources_per_user", "allow_custom_resources", "users", "jwt"]:
        assert key in keys, key


# --------------------------------------------------------------------------- render, lint, schemas


def test_values_files_cover_the_cases():
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "ingress-tls-values.yaml", "clusterwide-rbac-values.yaml",
            "secret-profiles-culling-values.yaml"} <= names


@pytest.mark.parametrize("values_file", [p.name for p in CI_VALUES])
def test_lint_is_clean(helm_results, values_file):
    lint = helm_results["cases"][values_file]["lint"]
    assert lint["total_charts_linted"] == 1
    assert not lint["errors"], lint
    # Severity 2 = warning, 3 = error; infos (e.g. "icon is recommended") are fine.
    assert [m for m in lint["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", [p.name for p in CI_VALUES])
def test_every_manifest_matches_the_kubernetes_schema(helm_results, values_file, kube_version):
    docs = objects(case_for(helm_results, values_file))
    assert docs
    for doc in docs:
        where = f"{values_file}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            # strict: unknown fields fail too (a typo in a template is not silently dropped).
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where} against {kube_version}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: {e.message}")


def test_schema_validation_catches_a_broken_manifest(helm_results):
    """The validation above is not vacuous: a bad probe port and an unknown field fail."""
    [deployment] = by_kind(case_for(helm_results, "default-values.yaml"))["Deployment"]
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [8888]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBE_VERSIONS[-1], strict=True)


def test_a_bad_kernelspec_name_fails_the_render(helm_results):
    case = helm_results["cases"]["bad-kernelspec-name"]
    assert "not a kernelspec name" in case.get("render_error", ""), case.get("render_error")


@pytest.mark.parametrize("values_file", [p.name for p in CI_VALUES])
def test_every_setting_passed_is_one_the_gateway_reads(helm_results, values_file):
    known_env, known_keys = gateway_options()
    case = case_for(helm_results, values_file)
    extra = {e["name"] for e in load_values(CHART / "ci" / values_file).get("gateway", {}).get("extraEnv", [])}
    for name in env_of(case):
        if name in extra or name == "HOME":
            continue
        assert name in known_env, f"{values_file}: the gateway reads no {name}"
    [config_map] = [c for c in by_kind(case)["ConfigMap"] if c["metadata"]["name"].endswith("-config")]
    config = yaml.safe_load(config_map["data"]["ganymede.yaml"]) or {}
    for key in config:
        assert key in known_keys, f"{values_file}: the gateway reads no config key {key}"
    args = gateway_container(case)["args"]
    assert args[:4] == ["--config", "/etc/ganymede/config/ganymede.yaml",
                        "--kernelspec-dir", "/etc/ganymede/kernelspecs"]


# --------------------------------------------------------------------------- what each case renders


def test_default_values(helm_results):
    case = case_for(helm_results, "default-values.yaml")
    kinds = by_kind(case)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"]
    container = gateway_container(case)
    assert container["livenessProbe"]["httpGet"] == {"path": "/api/health", "port": "http", "scheme": "HTTP"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/api/health/ready", "port": "http", "scheme": "HTTP"}
    assert container["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    env = env_of(case)
    assert env["GANYMEDE_IP"]["value"] == "0.0.0.0" and env["GANYMEDE_PORT"]["value"] == "8888"
    # Unset values leave the gateway's defaults alone.
    for name in ["EG_CULL_IDLE_TIMEOUT", "EG_MAX_KERNELS", "EG_MAX_KERNELS_PER_USER", "EG_UNAUTHORIZED_USERS"]:
        assert name not in env
    [secret] = kinds["Secret"]
    ref = env["GANYMEDE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "token"}
    import base64
    assert len(base64.b64decode(secret["data"]["token"])) == 48  # generated
    [role] = kinds["Role"]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": [""],
                              "resources": ["pods", "services", "configmaps", "secrets", "events", "persistentvolumeclaims"],
                              "verbs": ["get", "list", "watch", "create", "delete", "patch"]}]
    [binding] = kinds["RoleBinding"]
    [sa] = kinds["ServiceAccount"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # A read-only root needs writable /tmp (the runtime dir) and home.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/home/ganymede"} <= mounts
    assert "Ingress" not in kinds


def test_ingress_and_tls(helm_results):
    case = case_for(helm_results, "ingress-tls-values.yaml")
    kinds = by_kind(case)
    [ingress] = kinds["Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["gateway.example.org"], "secretName": "gateway-example-org-tls"}]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    [service] = kinds["Service"]
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"number": 8888}}
    assert service["spec"]["type"] == "LoadBalancer"
    container = gateway_container(case)
    # The probes follow the base URL and the gateway's own TLS.
    assert container["livenessProbe"]["httpGet"]["path"] == "/gateway/api/health"
    assert container["readinessProbe"]["httpGet"] == {"path": "/gateway/api/health/ready", "port": "http", "scheme": "HTTPS"}
    env = env_of(case)
    assert env["GANYMEDE_BASE_URL"]["value"] == "/gateway/"
    assert env["GANYMEDE_CERTFILE"]["value"] == "/etc/ganymede/tls/tls.crt"
    assert env["GANYMEDE_KEYFILE"]["value"] == "/etc/ganymede/tls/tls.key"
    volumes = {v["name"]: v for v in kinds["Deployment"][0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "ganymede-serving-cert"
    assert "https://gateway.example.org/gateway" in case["manifests"]["ganymede/templates/NOTES.txt"]


def test_cluster_wide_rbac(helm_results):
    case = case_for(helm_results, "clusterwide-rbac-values.yaml")
    kinds = by_kind(case)
    assert "Role" not in kinds and "RoleBinding" not in kinds
    [role] = kinds["ClusterRole"]
    [binding] = kinds["ClusterRoleBinding"]
    assert "namespace" not in role["metadata"] and "namespace" not in binding["metadata"]
    assert role["metadata"]["name"] == "gw"
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"pods", "namespaces", "rolebindings"} <= resources
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gw"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ganymede-launcher", "namespace": NAMESPACE}]
    [sa] = kinds["ServiceAccount"]
    assert sa["metadata"]["name"] == "ganymede-launcher"
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == "ganymede-launcher"


def test_existing_secret_profiles_culling(helm_results):
    case = case_for(helm_results, "secret-profiles-culling-values.yaml")
    kinds = by_kind(case)
    assert "Secret" not in kinds
    env = env_of(case)
    assert env["GANYMEDE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "notebook-gateway-token", "key": "auth-token"}
    values = {name: e.get("value") for name, e in env.items()}
    assert values["EG_CULL_IDLE_TIMEOUT"] == "3600" and values["EG_CULL_INTERVAL"] == "60"
    assert values["EG_CULL_CONNECTED"] == "true" and values["EG_CULL_BUSY"] == "false"
    assert values["EG_MAX_KERNELS"] == "40" and values["EG_MAX_KERNELS_PER_USER"] == "2"
    assert values["EG_UNAUTHORIZED_USERS"] == ""  # set, and empty: nobody refused
    assert values["GANYMEDE_KERNEL_LAUNCH_TIMEOUT"] == "120"
    assert values["TZ"] == "Europe/Paris"
    container = gateway_container(case)
    assert container["image"] == "registry.example.org/ganymede:0.1.0-rc1"
    assert container["args"][4:] == ["--ws-ping-interval", "20"]
    configs = {c["metadata"]["name"]: c for c in kinds["ConfigMap"]}
    config = yaml.safe_load(configs["demo-ganymede-config"]["data"]["ganymede.yaml"])
    assert config["resource_profiles"] == {"small": {"cpus": "500m", "memory": "1Gi"}, "large": {"cpus": 2, "memory": "8Gi"}}
    assert config["replay_buffer_bytes"] == 16777216
    assert config["queue_resource_requests"] is True
    specs = configs["demo-ganymede-kernelspecs"]["data"]
    assert sorted(specs) == ["python3-large.kernel.json", "python3-small.kernel.json"]
    small = json.loads(specs["python3-small.kernel.json"])
    assert small["argv"][-1] == "{connection_file}" and small["metadata"]["resources"]["default_profile"] == "small"
    volumes = {v["name"]: v for v in kinds["Deployment"][0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kernelspecs"]["configMap"]["items"] == [
        {"key": "python3-large.kernel.json", "path": "python3-large/kernel.json"},
        {"key": "python3-small.kernel.json", "path": "python3-small/kernel.json"},
    ]
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert container["resources"]["limits"] == {"memory": "16Gi"}


# --------------------------------------------------------------------------- the real gateway takes it


@pytest.mark.parametrize("values_file", [p.name for p in CI_VALUES])
def test_the_gateway_accepts_what_the_chart_passes(helm_results, values_file, gateway_factory, tmp_path):
    """Lays out the pod's files as the chart mounts them (the config file and the kernelspecs
    from their ConfigMaps) and starts the real gateway with the container's args and env
    (on 127.0.0.1 and a free port instead of 0.0.0.0:8888, and a test token instead of the
    Secret): it must start, pass both probes at the probes' paths, and serve the chart's
    kernelspecs and resource profiles."""
    import requests
    from conftest import TOKEN

    case = case_for(helm_results, values_file)
    container = gateway_container(case)
    configs = {c["metadata"]["name"].rsplit("-", 1)[-1]: c.get("data") or {} for c in by_kind(case)["ConfigMap"]}
    config_path = tmp_path / "config" / "ganymede.yaml"
    config_path.parent.mkdir()
    config_path.write_text(configs["config"]["ganymede.yaml"])
    spec_dir = tmp_path / "kernelspecs"
    spec_dir.mkdir()
    for key, text in configs["kernelspecs"].items():
        name = key.removesuffix(".kernel.json")
        (spec_dir / name).mkdir()
        (spec_dir / name / "kernel.json").write_text(text)
    mounts = {"/etc/ganymede/config/ganymede.yaml": str(config_path), "/etc/ganymede/kernelspecs": str(spec_dir)}
    args = [mounts.get(a, a) for a in container["args"]]

    env = {}
    for e in container["env"]:
        if e["name"] in ("GANYMEDE_IP", "GANYMEDE_PORT"):
            continue  # the harness passes --ip 127.0.0.1 --port <free>, which win
        if e["name"] in ("GANYMEDE_CERTFILE", "GANYMEDE_KEYFILE"):
            continue  # the TLS Secret is not here; the gateway's TLS has tests of its own
        if "valueFrom" in e:
            continue
        env[e["name"]] = e["value"]
    env["HOME"] = str(tmp_path)
    env["GANYMEDE_AUTH_TOKEN"] = TOKEN
    base = env.get("GANYMEDE_BASE_URL", "/")

    gw = gateway_factory(values_file.removesuffix("-values.yaml"), args=args, env=env, token=TOKEN, base_url=base)
    probes = {p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    root = f"http://127.0.0.1:{gw.port}"
    # The probes need no token.
    assert requests.get(root + probes["livenessProbe"], timeout=10).status_code == 200
    ready = requests.get(root + probes["readinessProbe"], timeout=10)
    assert ready.status_code == 200, ready.text
    assert requests.get(gw.url("api/kernelspecs"), timeout=10).status_code in (401, 403)  # the token is needed
    specs = requests.get(gw.url("api/kernelspecs"), headers=gw.auth_headers(), timeout=10).json()["kernelspecs"]
    for key in configs["kernelspecs"]:
        assert key.removesuffix(".kernel.json") in specs, sorted(specs)
    profiles = load_values(CHART / "ci" / values_file).get("resourceProfiles")
    if profiles:
        r = requests.get(gw.url("api/resources"), headers=gw.auth_headers(), timeout=10)
        assert r.status_code == 200, r.text
        assert set(profiles) <= set(r.json()["profiles"]), r.json()


# --------------------------------------------------------------------------- the image the chart runs
# The image cannot be built here (no container registry for the base images); these check the
# Dockerfile with BuildKit's own parser (PyPI `dockerfile`) and against the chart and repo.

_DOCKERFILE_SCRIPT = r"""
import json, sys, dockerfile
print(json.dumps([{"cmd": c.cmd, "flags": list(c.flags), "value": list(c.value), "json": c.json}
                  for c in dockerfile.parse_file(sys.argv[1])]))
"""


@pytest.fixture(scope="module")
def dockerfile_commands() -> list[dict]:
    pytest.importorskip("dockerfile")
    # A child process: the parser is Go code, kept out of the pytest process like Helm's.
    proc = subprocess.run([sys.executable, "-c", _DOCKERFILE_SCRIPT, str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _dockerignored(rel: str) -> bool:
    import fnmatch
    patterns = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    parts = rel.split("/")
    return any(fnmatch.fnmatch("/".join(parts[:i]), p) for p in patterns for i in range(1, len(parts) + 1))


def test_dockerfile_matches_the_chart_and_the_repo(dockerfile_commands):
    cmds = dockerfile_commands
    froms = [c["value"] for c in cmds if c["cmd"] == "FROM"]
    assert froms[0][0].startswith("swift:6.") and froms[0][1:] == ["AS", "build"]
    assert froms[-1][0] == "debian:bookworm-slim"
    runtime = cmds[max(i for i, c in enumerate(cmds) if c["cmd"] == "FROM"):]
    build = cmds[:max(i for i, c in enumerate(cmds) if c["cmd"] == "FROM")]
    assert any("swift build -c release --product ganymede" in " ".join(c["value"]) for c in build if c["cmd"] == "RUN")
    runtime_runs = " ".join(" ".join(c["value"]) for c in runtime if c["cmd"] == "RUN")
    for pkg in ["libzmq5", "python3-ipykernel"]:
        assert pkg in runtime_runs
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # The user the chart runs as, and its home (a writable emptyDir in the pod).
    [user] = [c["value"][0] for c in runtime if c["cmd"] == "USER"]
    uid, gid = (int(x) for x in user.split(":"))
    assert (uid, gid) == (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) and uid != 0
    assert f"--uid {uid}" in runtime_runs and f"--home-dir {values['scratch']['homeDir']}" in runtime_runs
    [expose] = [c["value"] for c in runtime if c["cmd"] == "EXPOSE"]
    assert expose == [str(values["gateway"]["port"])]
    # Every file copied from the build context exists and is not excluded by .dockerignore.
    for c in cmds:
        if c["cmd"] == "COPY" and not any(f.startswith("--from") for f in c["flags"]):
            for src in c["value"][:-1]:
                assert (REPO / src).exists(), src
                assert not _dockerignored(src), f"{src} is excluded by .dockerignore"
    # The bundled kernelspec lands where the gateway looks next to its executable.
    assert ["kernelspecs/python3", "/usr/local/share/ganymede/kernelspecs/python3"] in [c["value"] for c in runtime if c["cmd"] == "COPY"]
    [entry] = [c for c in runtime if c["cmd"] == "ENTRYPOINT"]
    assert entry["json"] and entry["value"][-1] == "/usr/local/bin/ganymede"
    for excluded in [".build", ".venv", "Benchmarks/.venv-bench", ".build-release/x"]:
        assert _dockerignored(excluded), excluded
