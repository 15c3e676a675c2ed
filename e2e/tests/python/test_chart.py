"""The three install paths on the real apiserver: the Helm chart (lint,
strict schema validation, values schema, install, least privilege), the
operator running with the chart's own ServiceAccount token and reconciling
examples/, and GitOps (server-side apply again changes nothing; the
operator does not fight the fields a GitOps tool owns). Plus the Argo CD
health check, run on real status."""

import json
import pathlib
import time

import pytest
import yaml
from conftest import E2E_DIR, kubectl
from operator_install import CHART, ROOT, binary, helm, installed_operator, reconciled, run  # noqa: F401 (fixture)

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# Fields a GitOps tool owns, applied as Argo CD applies them.
GITOPS_MANAGER = "argocd-controller"


@pytest.fixture(scope="module")
def schemas(stack_env, tmp_path_factory):
    """kubeconform's strict schemas, from this apiserver's OpenAPI (CRDs installed)."""
    kubectl(stack_env, "apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl(stack_env, "wait", "--for=condition=Established", "crd/mcpkafkaservers.mcpkafka.dev", "crd/mcptoolpolicies.mcpkafka.dev")
    out = tmp_path_factory.mktemp("schemas")
    openapi = out / "openapi-v2.json"
    # The CRDs' schemas reach the aggregated OpenAPI document shortly after they are established.
    for _ in range(60):
        openapi.write_text(kubectl(stack_env, "get", "--raw", "/openapi/v2"))
        if "dev.mcpkafka.v1alpha1.McpKafkaServer" in openapi.read_text():
            break
        time.sleep(1)
    made = run(stack_env["MCPK_PYTHON"], str(E2E_DIR / "kubeconform_schemas.py"), str(openapi), str(out / "strict"))
    assert made.returncode == 0, made.stderr
    return str(out / "strict") + "/{{ .Group }}-{{ .ResourceKind }}-{{ .ResourceAPIVersion }}{{ .StrictSuffix }}.json"


def kubeconform(stack_env, schemas, text, *extra):
    return run(stack_env["MCPK_KUBECONFORM"], "-strict", "-summary", "-schema-location", schemas, *extra, "-", stdin=text)


def test_the_chart_lints_and_renders_strictly_valid_manifests(stack_env, schemas, tmp_path):
    lint = helm(stack_env, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout, lint.stdout

    rendered = helm(stack_env, "template", "mko", str(CHART), "-n", "mcp-kafka-operator").stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    checked = kubeconform(stack_env, schemas, rendered)
    assert checked.returncode == 0 and "Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout, checked.stdout + checked.stderr

    # The same check fails on a field the API does not have (it is strict, not a rubber stamp).
    broken = rendered.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            readOnlyEverything: true")
    assert kubeconform(stack_env, schemas, broken).returncode != 0

    # The optional ServiceMonitor renders when asked (its CRD is not on this apiserver: skipped by kind).
    with_monitor = helm(stack_env, "template", "mko", str(CHART), "--set", "metrics.serviceMonitor.enabled=true").stdout
    assert "kind: ServiceMonitor" in with_monitor
    assert kubeconform(stack_env, schemas, with_monitor, "-skip", "ServiceMonitor").returncode == 0

    # The examples are valid against the CRDs' schemas too.
    for example in EXAMPLES:
        checked = kubeconform(stack_env, schemas, example.read_text())
        assert checked.returncode == 0, f"{example.name}: {checked.stdout}"

    # The config the chart renders is one the operator accepts.
    config = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config)
    accepted = run(str(binary("mcp-kafka-operator")), "check-config", str(path))
    assert accepted.returncode == 0, accepted.stderr
    assert "ghcr.io/mcpkafka/mcp-kafka-sidecar:0.1.0" in accepted.stdout


def test_the_chart_runs_the_operator_hardened(stack_env):
    """kubeconform checks the schema, not these values: assert them on the
    rendered Deployment, for every container and with the pod's defaults."""
    rendered = helm(stack_env, "template", "mko", str(CHART), "-n", "mcp-kafka-operator").stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False
    containers = pod["containers"] + pod.get("initContainers", [])
    assert containers
    for container in containers:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context.get("privileged", False) is False, container["name"]
        assert {"livenessProbe", "readinessProbe"} <= container.keys(), container["name"]
        for mount in container.get("volumeMounts", []):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            # The only writable place may be an emptyDir (scratch), never a host path.
            assert "hostPath" not in volume, mount["name"]


@pytest.mark.parametrize("values, message", [
    (["--set", "replicas=two"], "at '/replicas': got string, want integer"),
    (["--set", "config.environments.qa.mutations=sometimes"], "at '/config/environments/qa/mutations'"),
    (["--set", "config.environments.Prod!.mutations=direct"], "'Prod!' does not match pattern"),
    (["--set", "config.defaultPolicy.allow[0]=drop_everything"], "at '/config/defaultPolicy/allow/0'"),
    (["--set", "replicaCount=2"], "additional properties 'replicaCount' not allowed"),
    (["--set-json", 'config.sidecar.metricsFrom=[{"namespaceSelectr": {}}]'], "at '/config/sidecar/metricsFrom/0'"),
    (["--set-json", "config.sidecar.metricsFrom=[{}]"], "at '/config/sidecar/metricsFrom/0'"),
    (["--set", "config.auth.oidc.issuer=http://sso.example.com"], "at '/config/auth/oidc/issuer'"),
    (["--set", "config.auth.oidc.issuer=https://sso.example.com", "--set", "config.auth.oidc.caFile=/etc/ca.crt"],
     "additional properties 'caFile' not allowed"),
    (["--set", "config.auth.oidc.issuer=https://sso.example.com", "--set", "config.auth.oidc.caBundle=-----BEGIN CERTIFICATE-----",
      "--set-json", 'config.auth.oidc.caConfigMapRef={"name": "trust", "key": "ca.crt"}'], "at '/config/auth/oidc/caConfigMapRef'"),
])
def test_bad_values_fail_with_the_key_named(stack_env, values, message):
    out = helm(stack_env, "template", "mko", str(CHART), *values, check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_the_chart_says_who_may_scrape_the_sidecars_metrics(stack_env, tmp_path):
    """config.sidecar.metricsFrom reaches the operator's config as the
    operator reads it: any namespace by default, the peers given, or no one."""
    def metrics_from(*values):
        rendered = helm(stack_env, "template", "mko", str(CHART), *values).stdout
        config = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")["data"]["config.yaml"]
        path = tmp_path / "config.yaml"
        path.write_text(config)
        accepted = run(str(binary("mcp-kafka-operator")), "check-config", str(path))
        assert accepted.returncode == 0, accepted.stderr
        return yaml.safe_load(accepted.stdout)["sidecar"]["metricsFrom"]

    assert metrics_from() == [{"namespaceSelector": {}}]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert metrics_from("--set-json", f"config.sidecar.metricsFrom={json.dumps(monitoring)}") == monitoring
    assert metrics_from("--set-json", "config.sidecar.metricsFrom=[]") == []


def can_i(stack_env, sa, *args):
    out = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "auth", "can-i", "--as", sa, *args)
    return out.stdout.strip() == "yes"


def effective_permissions(stack_env, subject, namespace):
    """`kubectl auth can-i --list` as `subject` in `namespace`, as a set of
    (resource, resource name or "", verb) and (non-resource URL, "", verb)."""
    out = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "auth", "can-i", "--list", "--as", subject, "-n", namespace)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    urls_at, names_at, verbs_at = (header.index(c) for c in ("Non-Resource URLs", "Resource Names", "Verbs"))
    listed = lambda text: text.strip().strip("[]").split()  # noqa: E731
    found = set()
    for row in rows:
        resource, urls, names, verbs = row[:urls_at].strip(), listed(row[urls_at:names_at]), listed(row[names_at:verbs_at]), listed(row[verbs_at:])
        for verb in verbs:
            found |= {(resource, name, verb) for name in (names or [""]) if resource} | {(url, "", verb) for url in urls}
    return found


def documented_permissions(*rule_files):
    """The rules of RBAC rule files in can-i's notation (`resource.group/subresource`)."""
    expected = set()
    for path in rule_files:
        for rule in yaml.safe_load(path.read_text()):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    base, _, sub = resource.partition("/")
                    shown = (f"{base}.{group}" if group else base) + (f"/{sub}" if sub else "")
                    expected |= {(shown, name, verb) for verb in rule["verbs"] for name in rule.get("resourceNames", [""])}
    return expected


def example_servers():
    return [(d["metadata"]["namespace"], d["metadata"]["name"])
            for example in EXAMPLES for d in yaml.safe_load_all(example.read_text()) if d and d["kind"] == "McpKafkaServer"]


def test_helm_install_least_privilege_examples_and_no_gitops_drift(stack_env, installed_operator):
    op = installed_operator
    ns = op.namespace
    # Every object of the release exists.
    for d in op.manifest:
        kubectl(stack_env, "get", d["kind"], d["metadata"]["name"], *(["-n", ns] if d["kind"] not in ("ClusterRole", "ClusterRoleBinding") else []))

    # Least privilege: what it needs, and not more.
    for needed in (["patch", "mcpkafkaservers.mcpkafka.dev", "-A"], ["patch", "mcpkafkaservers.mcpkafka.dev/status", "-A"],
                   ["create", "deployments.apps", "-n", "team-dev"], ["create", "serviceaccounts/token", "-n", "team-dev"],
                   ["bind", "clusterrole/system:auth-delegator"], ["create", "rolebindings", "-n", "team-dev"],
                   ["update", "leases.coordination.k8s.io", "-n", ns]):
        assert can_i(stack_env, op.service_account, *needed), f"the operator cannot {needed}"
    for excess in (["*", "*", "-A"], ["delete", "namespaces"], ["create", "clusterroles"], ["bind", "clusterrole/cluster-admin"],
                   ["escalate", "clusterroles"], ["impersonate", "users"], ["create", "pods/exec", "-n", "team-dev"],
                   ["update", "leases.coordination.k8s.io", "-n", "kube-system"], ["delete", "customresourcedefinitions"],
                   ["update", "nodes"]):
        assert not can_i(stack_env, op.service_account, *excess), f"the operator can {excess}"

    # The operator, with the chart's token and config, reconciles the examples, applied as GitOps would.
    op.start()
    for example in EXAMPLES:
        op.apply(example)
    op.wait_reconciled(example_servers())
    payments = reconciled(stack_env, "team-prod", "payments")
    assert "create_partitions" in payments["status"]["effectiveTools"], "the break-glass window opens it"
    assert "consume_messages" not in payments["status"]["effectiveTools"], "the policy denies it"

    # Effective permissions (`kubectl auth can-i --list`), less what every
    # ServiceAccount has, equal the documented sets: the operator's rule
    # files (RBAC.md); the sidecar's system:auth-delegator; a client's tools
    # on its server only.
    def granted(subject, namespace):
        baseline = effective_permissions(stack_env, f"system:serviceaccount:{namespace}:no-bindings-at-all", namespace)
        return effective_permissions(stack_env, subject, namespace) - baseline

    files = CHART / "files"
    assert granted(op.service_account, ns) == documented_permissions(files / "operator-clusterrole-rules.yaml", files / "operator-lease-rules.yaml")
    sidecar_sa = kubectl(stack_env, "get", "deployment", "-n", "team-dev", "-l", "mcpkafka.dev/server=orders", "-o",
                         "jsonpath={.items[0].spec.template.spec.serviceAccountName}")
    assert granted(f"system:serviceaccount:team-dev:{sidecar_sa}", "team-dev") == {
        ("tokenreviews.authentication.k8s.io", "", "create"), ("subjectaccessreviews.authorization.k8s.io", "", "create")}
    assert granted("system:serviceaccount:team-dev:ci-agent", "team-dev") == {
        ("mcpkafkaservers.mcpkafka.dev/tools", "orders", tool) for tool in ("cluster_status", "list_topics", "describe_topic", "get_consumer_lag")}

    # GitOps: the examples applied again by their manager show no diff,
    # though the operator added its finalizer and status.
    for example in EXAMPLES:
        diff = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "diff", "--server-side",
                   f"--field-manager={GITOPS_MANAGER}", "-f", str(example))
        assert diff.returncode == 0, f"{example.name} drifts:\n{diff.stdout}{diff.stderr}"
    # ...and the chart rendered again and applied server-side changes nothing:
    # once to take co-ownership, then nothing at all (same resourceVersions).
    rendered = helm(stack_env, "template", op.release, str(CHART), "-n", ns, *op.values).stdout
    kubectl(stack_env, "apply", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-n", ns, "-f", "-", stdin=rendered)

    def versions():
        return kubectl(stack_env, "get", "-n", ns, "-f", "-", "-o",
                       "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {end}", stdin=rendered)

    before = versions()
    kubectl(stack_env, "apply", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-n", ns, "-f", "-", stdin=rendered)
    assert versions() == before
    diff = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "diff", "--server-side",
               f"--field-manager={GITOPS_MANAGER}", "-n", ns, "-f", "-", stdin=rendered)
    assert diff.returncode == 0, diff.stdout + diff.stderr


def argocd_health(obj):
    """Runs examples/argocd/health-mcpkafkaserver.lua as Argo CD does (Lua 5.1, `obj` global).
    Real Argo CD runs it in test_argocd.py, on the causes this ground can
    stage; this table adds every condition combination, in milliseconds."""
    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value):
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    script = (ROOT / "examples" / "argocd" / "health-mcpkafkaserver.lua").read_text()
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def condition(type_, status, reason="R", message=None):
    return {"type": type_, "status": status, "reason": reason, "message": message or f"{type_} {status}"}


@pytest.mark.parametrize("status, generation, expected", [
    (None, 1, "Progressing"),
    ({"observedGeneration": 1, "conditions": [condition("Ready", "True")]}, 2, "Progressing"),
    ({"observedGeneration": 2, "conditions": [condition("EnvironmentFenced", "False", message="labelled dev"), condition("Ready", "False")]}, 2, "Degraded"),
    ({"observedGeneration": 2, "conditions": [condition("Reconciled", "False", message="missing Secret x"), condition("Ready", "False")]}, 2, "Degraded"),
    ({"observedGeneration": 2, "conditions": [condition("Reconciled", "True"), condition("Ready", "True"), condition("Degraded", "False")]}, 2, "Healthy"),
    ({"observedGeneration": 2, "conditions": [condition("Reconciled", "True"), condition("Ready", "True"), condition("Degraded", "True", message="1 of 2")]}, 2, "Degraded"),
])
def test_argocd_health_follows_the_conditions(status, generation, expected):
    obj = {"metadata": {"name": "s", "generation": generation}}
    if status is not None:
        obj["status"] = status
    assert argocd_health(obj)["status"] == expected


def test_dockerfiles_lint_clean(stack_env):
    """No Docker engine here to build the images: lint them instead."""
    hadolint = pathlib.Path(stack_env["MCPK_PYTHON"]).parent / "hadolint"
    files = [ROOT / "operator" / "Dockerfile", ROOT / "mcp-sidecar" / "Dockerfile"]
    out = run(str(hadolint), "--failure-threshold", "info", *map(str, files))
    assert out.returncode == 0, out.stdout + out.stderr
    for f in files:
        text = f.read_text()
        assert "FROM gcr.io/distroless/" in text and "USER 65532:65532" in text, f"{f.name}: not distroless and non-root"


def readme_block(starting_with: str) -> str:
    """The README's shell block whose first line starts with `starting_with`, verbatim."""
    text = (ROOT / "README.md").read_text()
    for block in text.split("```sh\n")[1:]:
        block = block.split("```", 1)[0]
        if block.startswith(starting_with):
            return block
    raise AssertionError(f"README has no ```sh block starting with {starting_with!r}")
