"""GitOps proven by Argo CD itself (e2e/stack argocd up; e2e/lib/argocd.sh):
its application controller and repo server sync the chart and tenants'
servers from the ground's own git repository, as a platform team's GitOps
repository would hold them, and these tests read what Argo CD reports in
its Application objects.

On the ground with the node (the default; the tests run inside its network
namespace) the chart's operator Pods and the servers' sidecar Pods run for
real, and the Applications go Healthy. On the lighter ground
(MCPK_NODE=0) no Pod runs: the operator runs as its Pod would (the chart's
ServiceAccount token and config, as Argo CD applied them), and Argo CD sees
the Deployments it synced as not yet available."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from conftest import kubectl
from operator_install import ROOT, reconciled, run, start_operator_as_its_pod, stop_operator
from test_chart import readme_block

ARGOCD_NS = "argocd"
# The chart's Application, as examples/argocd/application.yaml names it.
CHART_APP = "mcp-kafka-operator"
OPERATOR_NS = "mcp-kafka-operator"
OPERATOR_FULLNAME = "mcp-kafka-operator"
CRDS = ("mcpkafkaservers.mcpkafka.dev", "mcptoolpolicies.mcpkafka.dev")
def on_node(stack_env):
    return "MCPK_NODE_NAME" in stack_env


def pod_bootstrap(stack_env):
    """Where the servers' sidecars reach the ground's broker: from a Pod on
    the node, or (no node) anywhere, since no Pod runs."""
    return stack_env.get("MCPK_KAFKA_POD_BOOTSTRAP", "kafka-bootstrap.kafka.svc:9092")


# How long the no-drift watch lasts, and how often it forces a refresh.
WATCH_SECONDS = int(os.environ.get("MCPK_ARGOCD_WATCH_SECONDS", "180"))
REFRESH_SECONDS = 30


def git(*args, cwd):
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GIT_AUTHOR_NAME": "platform", "GIT_AUTHOR_EMAIL": "platform@example.invalid",
                              "GIT_COMMITTER_NAME": "platform", "GIT_COMMITTER_EMAIL": "platform@example.invalid"})
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


class GitOpsRepo:
    """A working copy of the ground's GitOps repository. Each test module
    starts `main` afresh: the chart and the examples as this checkout has
    them, as a platform team copies them into its repository."""

    def __init__(self, bare: str, workdir: pathlib.Path):
        self.url = f"file://{bare}"
        self.dir = workdir
        git("init", "-q", "-b", "main", str(workdir), cwd=workdir.parent)
        git("remote", "add", "origin", bare, cwd=workdir)
        shutil.copytree(ROOT / "charts", workdir / "charts")
        shutil.copytree(ROOT / "examples", workdir / "examples")

    def write(self, path: str, text: str):
        target = self.dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str):
        (self.dir / path).unlink()

    def push(self, message: str) -> str:
        git("add", "-A", cwd=self.dir)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.dir)
        git("push", "-q", "--force", "origin", "main", cwd=self.dir)
        return git("rev-parse", "HEAD", cwd=self.dir)


def application(stack_env, name):
    out = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "get", "applications.argoproj.io", name,
              "-n", ARGOCD_NS, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def refresh(stack_env, name):
    """What the CLI's `argocd app get --refresh` does: Argo CD compares git
    and the cluster again now, instead of at its next resync."""
    kubectl(stack_env, "annotate", "applications.argoproj.io", name, "-n", ARGOCD_NS, "--overwrite",
            "argocd.argoproj.io/refresh=normal")


def summary(app):
    status = (app or {}).get("status", {})
    return {"sync": status.get("sync", {}).get("status"), "revision": status.get("sync", {}).get("revision"),
            "health": status.get("health", {}).get("status"), "message": status.get("health", {}).get("message"),
            "operation": status.get("operationState", {}).get("phase")}


def wait_for(stack_env, name, predicate, what, timeout=240):
    deadline = time.monotonic() + timeout
    last_refresh = time.monotonic()
    while True:
        app = application(stack_env, name)
        if app is not None and predicate(app):
            return app
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: not {what} after {timeout}s: {json.dumps(summary(app))}\n"
                                 f"conditions: {(app or {}).get('status', {}).get('conditions')}")
        if time.monotonic() - last_refresh > REFRESH_SECONDS:
            refresh(stack_env, name)
            last_refresh = time.monotonic()
        time.sleep(1)


def synced_at(revision):
    def predicate(app):
        s = summary(app)
        return s["sync"] == "Synced" and s["revision"] == revision and s["operation"] == "Succeeded"
    return predicate


def resource_health(app, kind, name):
    for r in app["status"].get("resources", []):
        if r["kind"] == kind and r["name"] == name:
            return r.get("health", {})
    raise AssertionError(f"{kind}/{name} is not among the application's resources: {app['status'].get('resources')}")


def apply(stack_env, doc):
    kubectl(stack_env, "apply", "--server-side", "--field-manager=platform-bootstrap", "-f", "-", stdin=yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def argocd(stack_env):
    if "MCPK_ARGOCD_GIT_REPO" not in stack_env:
        pytest.fail("Argo CD is not running on the test ground: start it with `e2e/stack argocd up` (e2e/test does)", pytrace=False)
    return stack_env


@pytest.fixture(scope="module")
def gitops(argocd, tmp_path_factory):
    repo = GitOpsRepo(argocd["MCPK_ARGOCD_GIT_REPO"], tmp_path_factory.mktemp("gitops") / "platform")
    repo.push("the chart and the examples")
    return repo


def pods_on_node(stack_env, app):
    """On the ground with the node, Pods run only in namespaces that ask for
    it (README, "Pods on the node"): the namespace the Application creates
    carries the ground's opt-in annotation, through Argo CD's
    managedNamespaceMetadata, as a platform team adds its own."""
    if on_node(stack_env):
        managed = app["spec"].setdefault("syncPolicy", {}).setdefault("managedNamespaceMetadata", {})
        managed.setdefault("annotations", {})[stack_env["MCPK_POD_OPT_IN_ANNOTATION"]] = ""
    return app


def chart_application(stack_env, repo_url):
    """examples/argocd/application.yaml with only its repoURL changed (and
    the node's opt-in, see pods_on_node)."""
    doc = yaml.safe_load((ROOT / "examples" / "argocd" / "application.yaml").read_text())
    doc["spec"]["source"]["repoURL"] = repo_url
    return pods_on_node(stack_env, doc)


@pytest.fixture(scope="module")
def operator_by_argocd(argocd, gitops, tmp_path_factory):
    """The chart synced by Argo CD from the example Application, the health
    check installed as the README says, and the operator running as the
    Pod of the Deployment Argo CD applied would."""
    stack_env = argocd
    # The README's command, as written, on the argocd-cm Argo CD's install
    # made: it adds the health check and leaves the other keys alone; run
    # again, it writes nothing.
    command = readme_block("kubectl -n argocd create configmap argocd-cm")
    key = "resource.customizations.health.mcpkafka.dev_McpKafkaServer"

    def argocd_cm():
        return json.loads(kubectl(stack_env, "get", "configmap", "argocd-cm", "-n", ARGOCD_NS, "-o", "json"))

    def run_readme():
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "KUBECONFIG": stack_env["KUBECONFIG"],
                                  "PATH": f"{pathlib.Path(stack_env['MCPK_KUBECTL']).parent}:{os.environ['PATH']}"})
        assert out.returncode == 0, out.stderr

    others = {k: v for k, v in (argocd_cm().get("data") or {}).items() if k != key}
    run_readme()
    cm = argocd_cm()
    lua = (ROOT / "examples" / "argocd" / "health-mcpkafkaserver.lua").read_text()
    assert cm["data"] == {**others, key: lua}
    run_readme()
    assert argocd_cm()["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    apply(stack_env, chart_application(stack_env, gitops.url))
    process = None
    try:
        head = git("rev-parse", "HEAD", cwd=gitops.dir)
        app = wait_for(stack_env, CHART_APP, synced_at(head), "synced")
        config_map = json.loads(kubectl(stack_env, "get", "configmap", f"{OPERATOR_FULLNAME}-config", "-n", OPERATOR_NS, "-o", "json"))
        tmp = tmp_path_factory.mktemp("operator")
        if not on_node(stack_env):
            process, log = start_operator_as_its_pod(stack_env, OPERATOR_NS, OPERATOR_FULLNAME, [config_map], tmp)
        yield {"app": app, "log": tmp / "operator.log", "process": process}
    finally:
        if process is not None:
            stop_operator(process, log)
        # Deleting the Application deletes what it synced (its finalizer),
        # but for the CRDs, which say Delete=false: other tests' servers are
        # instances of them.
        crds = {c: kubectl(stack_env, "get", "crd", c, "-o", "jsonpath={.metadata.uid}") for c in CRDS}
        kubectl(stack_env, "delete", "applications.argoproj.io", CHART_APP, "-n", ARGOCD_NS, "--wait=true", "--timeout=120s")
        assert run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "get", "deployment",
                   OPERATOR_FULLNAME, "-n", OPERATOR_NS).returncode != 0, "the Application's deletion leaves its Deployment"
        assert {c: kubectl(stack_env, "get", "crd", c, "-o", "jsonpath={.metadata.uid}") for c in CRDS} == crds
        kubectl(stack_env, "delete", "namespace", OPERATOR_NS, "--ignore-not-found", "--wait=false")


SERVERS_APP = "mcp-kafka-servers-dev"


def servers_application(stack_env, repo_url, namespace):
    """The ApplicationSet example's template for one environment (dev), as
    its list generator renders it, into `namespace`."""
    appset = yaml.safe_load((ROOT / "examples" / "argocd" / "applicationset.yaml").read_text())
    text = yaml.safe_dump(appset["spec"]["template"])
    for key, value in {"{{.environment}}": "dev", "{{.namespace}}": namespace}.items():
        text = text.replace(key, value)
    doc = yaml.safe_load(text)
    doc["spec"]["source"]["repoURL"] = repo_url
    # Deleting the Application deletes what it synced (Argo CD's own finalizer).
    doc["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    return pods_on_node(stack_env, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                    "metadata": {**doc["metadata"], "namespace": ARGOCD_NS}, "spec": doc["spec"]})


def server_yaml(stack_env, name, environment="dev", tools=("cluster_status", "list_topics"), extra_kafka=""):
    return f"""apiVersion: mcpkafka.dev/v1alpha1
kind: McpKafkaServer
metadata: {{name: {name}}}
spec:
  environment: {environment}
  replicas: 1
  kafka:
    bootstrapServers: ["{pod_bootstrap(stack_env)}"]{extra_kafka}
  tools: [{", ".join(tools)}]
"""


# The health check's message for a reconciled server, without and with a node.
WAITING_FOR_SIDECAR = {"status": "Progressing", "message": "no sidecar replica is available yet"}
READY = "Healthy"


def server_settled(stack_env, health):
    """A reconciled, unfenced server's health once its sidecar had time:
    waiting for it without a node, Healthy with one."""
    return health.get("status") == READY if on_node(stack_env) else health == WAITING_FOR_SIDECAR


def test_the_charts_application_syncs_and_reports_the_operators_rollout(argocd, operator_by_argocd):
    """The chart's example Application, only its repoURL changed: Synced and
    Succeeded, every object server-side applied by argocd-controller. With
    no kubelet the operator's Deployment never becomes available: Argo CD
    says Progressing, for that Deployment."""
    stack_env = argocd
    app = operator_by_argocd["app"]
    s = summary(app)
    assert (s["sync"], s["operation"]) == ("Synced", "Succeeded"), s
    kinds = {(r["kind"], r["name"]) for r in app["status"]["resources"]}
    assert ("Deployment", OPERATOR_FULLNAME) in kinds and ("CustomResourceDefinition", "mcpkafkaservers.mcpkafka.dev") in kinds, kinds
    deployment = json.loads(kubectl(stack_env, "get", "deployment", OPERATOR_FULLNAME, "-n", OPERATOR_NS, "-o", "json",
                                    "--show-managed-fields"))
    managers = {(m["manager"], m["operation"]) for m in deployment["metadata"]["managedFields"]}
    assert ("argocd-controller", "Apply") in managers, managers
    app = wait_for(stack_env, CHART_APP, lambda a: summary(a)["health"] is not None, "assessed")
    if "MCPK_NODE_NAME" in stack_env:
        wait_for(stack_env, CHART_APP, lambda a: summary(a)["health"] == "Healthy", "Healthy")
    else:
        assert summary(app)["health"] == "Progressing", summary(app)
        assert summary(app)["message"] == f"Caused by apps/Deployment:{OPERATOR_NS}/{OPERATOR_FULLNAME}", summary(app)
        health = resource_health(app, "Deployment", OPERATOR_FULLNAME)
        assert health.get("status") == "Progressing", health
        assert "rollout" in health.get("message", ""), health


def healths(app):
    return {r["name"]: r.get("health", {}) for r in app["status"].get("resources", []) if r["kind"] == "McpKafkaServer"}


@pytest.fixture
def dev_servers(argocd, gitops):
    """The dev environment's Application of the ApplicationSet example,
    into a namespace of the test's own; deleted (with what it synced) at
    the end, and its files taken out of git."""
    namespace = f"argo-dev-{uuid.uuid4().hex[:6]}"
    written = []

    def write(name, text):
        gitops.write(f"deploy/dev/{name}.yaml", text)
        written.append(name)

    yield namespace, write
    kubectl(argocd, "delete", "applications.argoproj.io", SERVERS_APP, "-n", ARGOCD_NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    for name in written:
        if (gitops.dir / f"deploy/dev/{name}.yaml").exists():
            gitops.remove(f"deploy/dev/{name}.yaml")
    gitops.push("no dev servers")
    kubectl(argocd, "delete", "namespace", namespace, "--ignore-not-found", "--wait=false")


def test_servers_health_as_argo_cd_evaluates_the_examples_check(argocd, gitops, operator_by_argocd, dev_servers):
    """Tenants' servers synced by one Application of the ApplicationSet
    example: each server's health is examples/argocd/health-mcpkafkaserver.lua
    as Argo CD runs it, for real causes: a server the operator has not
    reconciled yet (it is paused), then waiting for its sidecar
    (Progressing); one whose environment its namespace's label fences out
    (Degraded); one whose Kafka credentials Secret is missing (Degraded)."""
    stack_env = argocd
    namespace, write = dev_servers
    operator = operator_by_argocd["process"]
    write("orders", server_yaml(stack_env, "orders"))
    write("fenced", server_yaml(stack_env, "fenced", environment="staging"))
    write("no-secret", server_yaml(
        stack_env, "no-secret", extra_kafka="\n    sasl:\n      mechanism: SCRAM-SHA-512\n      secretRef: {name: not-there}"))
    head = gitops.push("dev servers")
    if operator is None:
        # The operator's Pods run: the servers are reconciled at once.
        apply(stack_env, servers_application(stack_env, gitops.url, namespace))
        wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
    else:
        operator.send_signal(signal.SIGSTOP)
        try:
            apply(stack_env, servers_application(stack_env, gitops.url, namespace))
            app = wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
            app = wait_for(stack_env, SERVERS_APP, lambda a: len(healths(a)) == 3 and all(h.get("status") for h in healths(a).values()),
                           "assessed")
            assert all(h == {"status": "Progressing", "message": "waiting for the operator to reconcile"}
                       for h in healths(app).values()), healths(app)
        finally:
            operator.send_signal(signal.SIGCONT)
    labels = json.loads(kubectl(stack_env, "get", "namespace", namespace, "-o", "json"))["metadata"]["labels"]
    assert labels.get("mcpkafka.dev/environment") == "dev", labels

    def settled(app):
        h = healths(app)
        return (h.get("fenced", {}).get("status") == "Degraded" and h.get("no-secret", {}).get("status") == "Degraded"
                and server_settled(stack_env, h.get("orders", {})))
    app = wait_for(stack_env, SERVERS_APP, settled, "settled")
    h = healths(app)
    assert h["fenced"]["message"].startswith("environment fence: "), h
    assert h["no-secret"]["message"].startswith("not reconciled: ") and "not-there" in h["no-secret"]["message"], h
    # Argo CD's aggregate is the worst of its resources.
    assert summary(app)["health"] == "Degraded", summary(app)


def managed_versions(stack_env, app):
    """resourceVersion of every object the Application manages."""
    versions = {}
    for r in app["status"]["resources"]:
        kind = f"{r['kind']}.{r['group']}" if r.get("group") else r["kind"]
        where = ["-n", r["namespace"]] if r.get("namespace") else []
        versions[(r["kind"], r.get("namespace"), r["name"])] = kubectl(
            stack_env, "get", kind, r["name"], *where, "-o", "jsonpath={.metadata.resourceVersion}")
    return versions


def last_operation(app):
    """When the last sync operation started (a self-heal sync of the same
    revision adds no history entry, but it is an operation)."""
    return app["status"].get("operationState", {}).get("startedAt")


def test_no_perpetual_diff_while_the_operator_writes_and_self_heal_puts_a_hand_change_back(argocd, gitops, operator_by_argocd, dev_servers):
    """After settling, a watch with forced refreshes sees no OutOfSync, no
    automated sync and no resourceVersion change on what Argo CD manages,
    although the operator has added its finalizer, status and children.
    The positive control: a hand-made `kubectl scale` of the operator's
    Deployment is drift Argo CD sees and self-heal puts back, so the watch
    could have seen one."""
    stack_env = argocd
    namespace, write = dev_servers
    write("orders", server_yaml(stack_env, "orders"))
    head = gitops.push("a dev server")
    apply(stack_env, servers_application(stack_env, gitops.url, namespace))
    wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
    wait_for(stack_env, SERVERS_APP, lambda a: server_settled(stack_env, healths(a).get("orders", {})), "settled")
    server = reconciled(stack_env, namespace, "orders")
    assert server and server["metadata"].get("finalizers"), "the operator has added its finalizer"
    if on_node(stack_env):
        for name in (CHART_APP, SERVERS_APP):
            wait_for(stack_env, name, lambda a: summary(a)["health"] == "Healthy", "Healthy")
    apps = (CHART_APP, SERVERS_APP)
    before = {name: application(stack_env, name) for name in apps}
    versions = {name: managed_versions(stack_env, before[name]) for name in apps}
    samples = 0
    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        for name in apps:
            refresh(stack_env, name)
        time.sleep(REFRESH_SECONDS)
        for name in apps:
            now = application(stack_env, name)
            assert summary(now)["sync"] == "Synced", (name, summary(now), now["status"].get("resources"))
            assert last_operation(now) == last_operation(before[name]), f"{name}: a sync ran: {now['status'].get('operationState')}"
            samples += 1
    for name in apps:
        assert managed_versions(stack_env, application(stack_env, name)) == versions[name], name
    assert samples >= 2 * (WATCH_SECONDS // (REFRESH_SECONDS + 5))

    # The positive control.
    chart = application(stack_env, CHART_APP)
    wanted = kubectl(stack_env, "get", "deployment", OPERATOR_FULLNAME, "-n", OPERATOR_NS, "-o", "jsonpath={.spec.replicas}")
    kubectl(stack_env, "scale", "deployment", OPERATOR_FULLNAME, "-n", OPERATOR_NS, "--replicas=5")
    healed = wait_for(stack_env, CHART_APP, lambda a: last_operation(a) != last_operation(chart) and summary(a)["operation"] == "Succeeded",
                      "self-healed", timeout=120)
    assert healed["status"]["operationState"]["operation"]["initiatedBy"] == {"automated": True}
    assert kubectl(stack_env, "get", "deployment", OPERATOR_FULLNAME, "-n", OPERATOR_NS, "-o", "jsonpath={.spec.replicas}") == wanted


def test_a_change_in_git_reaches_the_sidecars_tool_list_and_removing_a_server_prunes_it(argocd, gitops, operator_by_argocd, dev_servers, tmp_path):
    """A policy allowing one more tool, committed to git, reaches the
    cluster through Argo CD and then the tool list an agent sees from the
    server's sidecar (run from what the operator made, as its Pod would);
    a new server in git is created, and removed from git it is pruned with
    everything the operator made for it."""
    from test_e2e_flow import PodAsProcess

    stack_env = argocd
    namespace, write = dev_servers
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    tools = ["create_topic", "list_topics"]
    write("orders", f"""apiVersion: mcpkafka.dev/v1alpha1
kind: McpKafkaServer
metadata: {{name: orders}}
spec:
  environment: dev
  kafka:
    bootstrapServers: ["{bootstrap}"]
  tools: [{", ".join(tools)}]
  clients:
    - name: laptop
      issueToken: {{expirationSeconds: 3600}}
      tools: [{", ".join(tools)}]
""")
    head = gitops.push("orders, a dev server")
    apply(stack_env, servers_application(stack_env, gitops.url, namespace))
    wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
    deadline = time.monotonic() + 120
    while not (found := reconciled(stack_env, namespace, "orders")) or not found["status"].get("tokenSecrets"):
        assert time.monotonic() < deadline, "orders not reconciled"
        time.sleep(0.5)
    assert found["status"]["effectiveTools"] == ["list_topics"], "the operator's default policy is read-only"
    pod = PodAsProcess(stack_env, tmp_path, namespace, "orders")
    try:
        assert pod.tools("laptop") == ["list_topics"]
        write("policy", """apiVersion: mcpkafka.dev/v1alpha1
kind: McpToolPolicy
metadata: {name: default}
spec:
  allow: [observe, create_topic]
""")
        head = gitops.push("dev may create topics")
        refresh(stack_env, SERVERS_APP)
        wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
        deadline = time.monotonic() + 120
        while "create_topic" not in (reconciled(stack_env, namespace, "orders") or {}).get("status", {}).get("effectiveTools", []):
            assert time.monotonic() < deadline, "the policy did not reach the server"
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while True:
            pod.mount()  # the kubelet's update of the mounted ConfigMap; the sidecar reloads it
            if (listed := pod.tools("laptop")) == ["create_topic", "list_topics"]:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(1)
    finally:
        pod.sidecar.stop()

    made = {kind: kubectl(stack_env, "get", kind, "-n", namespace, "-l", "mcpkafka.dev/server=orders", "-o", "name").split()
            for kind in ("deployment", "service", "configmap", "serviceaccount", "rolebinding")}
    assert all(made.values()), made
    gitops.remove("deploy/dev/orders.yaml")
    head = gitops.push("orders is gone")
    refresh(stack_env, SERVERS_APP)
    wait_for(stack_env, SERVERS_APP, synced_at(head), "synced")
    deadline = time.monotonic() + 120
    while True:
        left = {kind: kubectl(stack_env, "get", kind, "-n", namespace, "-l", "mcpkafka.dev/server=orders", "-o", "name").split()
                for kind in made}
        gone = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "get", "mks", "orders", "-n", namespace).returncode != 0
        if gone and not any(left.values()):
            break
        assert time.monotonic() < deadline, f"not pruned: server gone={gone}, left={left}"
        time.sleep(1)


def test_the_chart_upgraded_in_git_is_synced_and_the_crds_are_left_as_they_were(argocd, gitops, operator_by_argocd):
    """A new chart version in git with a changed value: Argo CD syncs it
    (the Deployment follows), and the CRDs, unchanged in git, are the same
    objects at the same resourceVersion afterwards. A CRD changed in git
    then reaches the cluster with the chart (unlike Helm's crds/)."""
    stack_env = argocd

    def crd_identity():
        return {c: kubectl(stack_env, "get", "crd", c, "-o", "jsonpath={.metadata.uid} {.metadata.resourceVersion}") for c in CRDS}

    before = crd_identity()
    chart = gitops.dir / "charts" / "mcp-kafka-operator"
    original = {name: (chart / name).read_text() for name in ("Chart.yaml", "values.yaml")}
    assert "\nversion: 0.1.0\n" in original["Chart.yaml"] and "\nreplicas: 2\n" in original["values.yaml"]
    (chart / "Chart.yaml").write_text(original["Chart.yaml"].replace("\nversion: 0.1.0\n", "\nversion: 0.1.1\n"))
    (chart / "values.yaml").write_text(original["values.yaml"].replace("\nreplicas: 2\n", "\nreplicas: 3\n"))
    try:
        head = gitops.push("chart 0.1.1: three operator replicas")
        refresh(stack_env, CHART_APP)
        wait_for(stack_env, CHART_APP, synced_at(head), "synced")
        deployment = json.loads(kubectl(stack_env, "get", "deployment", OPERATOR_FULLNAME, "-n", OPERATOR_NS, "-o", "json"))
        assert deployment["spec"]["replicas"] == 3
        assert deployment["metadata"]["labels"]["helm.sh/chart"] == "mcp-kafka-operator-0.1.1"
        assert crd_identity() == before

        # A CRD changed in git (here, one annotation more) is applied with
        # the chart, to the same object.
        crd_file = chart / "crds" / "mcptoolpolicies.mcpkafka.dev.yaml"
        original["crds/mcptoolpolicies.mcpkafka.dev.yaml"] = crd_file.read_text()
        marker = "  annotations:\n"
        assert marker in crd_file.read_text()
        crd_file.write_text(crd_file.read_text().replace(marker, marker + "    mcpkafka.dev/chart-version: 0.1.1\n", 1))
        head = gitops.push("chart 0.1.1: a CRD changes")
        refresh(stack_env, CHART_APP)
        wait_for(stack_env, CHART_APP, synced_at(head), "synced")
        crd = json.loads(kubectl(stack_env, "get", "crd", "mcptoolpolicies.mcpkafka.dev", "-o", "json"))
        assert crd["metadata"]["annotations"].get("mcpkafka.dev/chart-version") == "0.1.1"
        assert crd["metadata"]["uid"] == before["mcptoolpolicies.mcpkafka.dev"].split()[0]
    finally:
        for name, text in original.items():
            (chart / name).write_text(text)
        head = gitops.push("back to chart 0.1.0")
        refresh(stack_env, CHART_APP)
        wait_for(stack_env, CHART_APP, synced_at(head), "synced")
