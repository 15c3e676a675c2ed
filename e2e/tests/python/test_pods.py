"""The product on real Pods: the ground's node (kubelet, containerd, runc,
kube-proxy, CoreDNS) runs the operator and sidecar images built here
(e2e/lib/images.sh). The chart installs the operator as two Pods with its
own ServiceAccount (in-cluster config); the operator Pod reconciles
servers into sidecar Deployments whose Pods go Ready only when Kafka
answers and the fence holds; agents call tools from a Pod through the
Service's DNS name, and from the host through a forwarded loopback port;
the operator's NetworkPolicy keeps other environments' Pods out (enforced
by kube-router's firewall on the node); changes reach the running server;
and the faults a cluster has (a
container killed, a Pod deleted, Kafka stopped, the kubelet restarted) do
what Kubernetes promises.

The ground schedules Pods only in namespaces that ask for it (the README's
"Pods on the node"): every namespace here does. Figures (times from
`kubectl apply` to what a client sees) are printed, not asserted: run with
`-s` to read them."""

import asyncio
import json
import os
import pathlib
import subprocess
import tempfile
import time

import pytest
from conftest import E2E_DIR, kubectl, sa_token
from mcp_session import mcp_session
from operator_install import CHART, helm, run

SYS_NS = "pods-operator"
DEV_NS = "pods-dev"
STAGING_NS = "pods-staging"
PROD_NS = "pods-prod"
RELEASE = "mcp-kafka-operator"
# An extra broker that the fault test stops, on the node IP (Pods reach it).
FLAKY_KAFKA = ("pods-kafka", "19296", "19297")
# The host's loopback port the tests forward to a sidecar.
HOST_PORT = int(os.environ.get("MCPK_PODS_HOST_PORT", "18390"))


@pytest.fixture(scope="module")
def node(stack_env):
    if "MCPK_NODE_NAME" not in stack_env:
        pytest.skip("the ground was started with MCPK_NODE=0: no node, no Pods")
    return stack_env


def k(env, *args, stdin=None):
    return kubectl(env, *args, stdin=stdin)


def k_json(env, *args):
    return json.loads(k(env, *args, "-o", "json"))


def apply(env, *docs):
    k(env, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))


def wait(what, check, timeout=180, every=0.5):
    """Polls `check` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            found = check()
        except Exception as e:  # not there yet: a refused connection, a missing field
            found, last = None, e
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout}s (last error: {last!r})")
        time.sleep(every)


def stack(*args, env=None):
    out = subprocess.run([str(E2E_DIR / "stack"), *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"e2e/stack {' '.join(args)}:\n{out.stderr[-2000:]}"
    return out.stdout


def namespace(env, name, environment=None):
    labels = {"mcpkafka.dev/environment": environment} if environment else {}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "annotations": {env["MCPK_POD_OPT_IN_ANNOTATION"]: ""}}}


def delete_namespaces(env, *names):
    for name in names:
        run(env["MCPK_KUBECTL"], "--kubeconfig", env["KUBECONFIG"], "delete", "namespace", name,
            "--ignore-not-found", "--wait=true", "--timeout=180s")


def pods_of(env, ns, instance):
    """The live (not terminating) Pods of a server's or the operator's Deployment."""
    items = k_json(env, "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={instance}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def ready_pods(env, ns, instance, count):
    pods = pods_of(env, ns, instance)
    return pods if len(pods) == count and all(ready(p) for p in pods) else None


def condition(obj, type_):
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def server_doc(name, ns, environment, tools, clients=(), replicas=1, kafka=None, **spec):
    return {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer", "metadata": {"name": name, "namespace": ns},
            "spec": {"environment": environment, "kafka": kafka, "tools": list(tools), "clients": list(clients),
                     "replicas": replicas, **spec}}


def endpoints_ready(env, ns, service):
    """The addresses of a Service's endpoints that are ready."""
    slices = k_json(env, "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}")["items"]
    return sorted(a for s in slices for e in (s.get("endpoints") or []) if e.get("conditions", {}).get("ready")
                  for a in e["addresses"])


def service_url(env, ns, server):
    ip = k(env, "get", "service", f"{server}-mcp", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    return f"http://{ip}:8090/mcp", f"{server}-mcp.{ns}.svc.cluster.local:8090"


def tool_names(url, token, host=None):
    async def work(session):
        return sorted(t.name for t in (await session.list_tools()).tools)
    return asyncio.run(mcp_session(url, token, work, host))


def call(url, token, tool, arguments=None, host=None):
    async def work(session):
        return await session.call_tool(tool, arguments or {})
    return asyncio.run(mcp_session(url, token, work, host))


HOST_CLIENT = """
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main(url, token, tool):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                result = await session.call_tool(tool, {})
                print(json.dumps({"tools": tools, "isError": result.is_error, "structured": result.structured_content}))

asyncio.run(main(*sys.argv[1:]))
"""


def from_the_host(env, args, **kwargs):
    """A command in the host's network namespace, where a person's client
    runs: only the forwarded loopback port leads in. Give it loopback
    addresses only: the host's other routes lead off the machine."""
    return subprocess.run(["nsenter", f"--net={env['MCPK_HOST_NETNS_FILE']}", "--", *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def probe(env, ns, name, service_account, url, tool, audience, timeout="30s"):
    """A Pod with the official Go MCP SDK (the probe image) that calls
    `tool` at `url` with a projected token of `audience` (giving up after
    `timeout`). Returns its phase and its one-line JSON report."""
    apply(env, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceAccountName": service_account, "automountServiceAccountToken": False, "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": env["MCPK_PROBE_IMAGE"],
                "args": ["-url", url, "-tool", tool, "-token-file", "/var/run/secrets/mcp/token", "-timeout", timeout],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/mcp", "readOnly": True}]}],
            "volumes": [{"name": "token", "projected": {"sources": [
                {"serviceAccountToken": {"audience": audience, "expirationSeconds": 600, "path": "token"}}]}}]}})
    def finished():
        phase = k(env, "get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait(f"probe Pod {name} to finish", finished)
    report = json.loads(k(env, "logs", name, "-n", ns).strip().splitlines()[-1])
    k(env, "delete", "pod", name, "-n", ns, "--wait=false")
    return phase, report


def kafka_secrets(env, ns):
    ca = pathlib.Path(env["MCPK_KAFKA_CA_FILE"]).read_text()
    user = pathlib.Path(env["MCPK_KAFKA_SASL_USERNAME_FILE"]).read_text().strip()
    password = pathlib.Path(env["MCPK_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-ca", "namespace": ns}, "stringData": {"ca.crt": ca}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-scram", "namespace": ns},
         "stringData": {"username": user, "password": password}},
    ]


def scram_kafka(env):
    return {"bootstrapServers": [env["MCPK_KAFKA_POD_SASL_SSL_BOOTSTRAP"]],
            "tls": {"caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}},
            "sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-scram"}}}


@pytest.fixture(scope="module")
def cluster(node):
    """The chart installed as a platform team would (two operator Pods),
    with the dev environment fenced to the ground's broker and staging to a
    cluster that is not it; the tenants' namespaces, asking for Pods."""
    env = node
    delete_namespaces(env, DEV_NS, STAGING_NS, PROD_NS)
    helm(env, "uninstall", RELEASE, "-n", SYS_NS, check=False)
    delete_namespaces(env, SYS_NS)
    apply(env, namespace(env, SYS_NS))
    started = time.monotonic()
    helm(env, "install", RELEASE, str(CHART), "-n", SYS_NS, "--set", "replicas=2",
         "--set", f"config.environments.dev.clusterId={env['KAFKA_CLUSTER_ID']}",
         "--set", "config.environments.staging.clusterId=not-the-grounds-cluster")
    wait("two operator Pods Ready", lambda: ready_pods(env, SYS_NS, RELEASE, 2))
    print(f"\n  operator: helm install to 2 Pods Ready in {time.monotonic() - started:.1f}s")
    apply(env, namespace(env, DEV_NS, "dev"), namespace(env, STAGING_NS, "staging"), namespace(env, PROD_NS, "prod"),
          *kafka_secrets(env, DEV_NS),
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent", "namespace": DEV_NS}},
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stranger", "namespace": DEV_NS}})
    yield env
    delete_namespaces(env, DEV_NS, STAGING_NS, PROD_NS)
    helm(env, "uninstall", RELEASE, "-n", SYS_NS, "--wait", check=False)
    delete_namespaces(env, SYS_NS)


@pytest.fixture(scope="module")
def orders(cluster):
    """A dev server for the ground's broker over SASL_SSL (SCRAM-SHA-512,
    the CA and credentials as Secrets), two replicas, an in-cluster agent
    (ServiceAccount) and a laptop client (issued token)."""
    env = cluster
    started = time.monotonic()
    apply(env, server_doc("orders", DEV_NS, "dev", ["cluster_status", "list_topics", "describe_topic", "create_topic"],
                          clients=[{"name": "agent", "serviceAccountName": "agent", "tools": ["cluster_status", "list_topics"]},
                                   {"name": "laptop", "issueToken": {"expirationSeconds": 3600},
                                    "tools": ["list_topics", "describe_topic"]}],
                          replicas=2, kafka=scram_kafka(env)))
    pods = wait("the sidecar's 2 Pods Ready", lambda: ready_pods(env, DEV_NS, "orders", 2))
    url, host = service_url(env, DEV_NS, "orders")
    token = sa_token(env, DEV_NS, "agent", "orders")
    wait("a tool call through the Service", lambda: not call(url, token, "cluster_status", host=host).is_error)
    print(f"\n  orders: kubectl apply to the first answered tool call through the Service in {time.monotonic() - started:.1f}s")
    return {"url": url, "host": host, "token": token, "pods": pods}


def test_the_operator_runs_as_two_pods_of_its_image_and_the_lease_moves_when_its_holder_goes(cluster):
    env = cluster
    pods = pods_of(env, SYS_NS, RELEASE)
    assert len(pods) == 2 and all(ready(p) for p in pods), [
        (p["metadata"]["name"], p["status"].get("conditions"), p["status"].get("containerStatuses")) for p in pods]
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == RELEASE
        container = pod["spec"]["containers"][0]
        assert container["image"] == env["MCPK_OPERATOR_IMAGE"]
        assert pod["status"]["containerStatuses"][0]["imageID"], "the kubelet ran the imported image"
        # In-cluster config: the ServiceAccount's token volume, no kubeconfig.
        assert not any(e["name"] == "KUBECONFIG" for e in container.get("env", [])), container.get("env")
        assert not any("kubeconfig" in a for a in container.get("args", []) + container.get("command", []))
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    names = {p["metadata"]["name"] for p in pods}

    def holder():
        h = k(env, "get", "lease", RELEASE, "-n", SYS_NS, "-o", "jsonpath={.spec.holderIdentity}")
        return h if h in names else None

    first = wait("one operator Pod holding the Lease", holder)
    started = time.monotonic()
    k(env, "delete", "pod", first, "-n", SYS_NS, "--wait=false")
    def new_holder():
        h = k(env, "get", "lease", RELEASE, "-n", SYS_NS, "-o", "jsonpath={.spec.holderIdentity}")
        live = {p["metadata"]["name"] for p in pods_of(env, SYS_NS, RELEASE)}
        return h if h != first and h in live else None

    second = wait("another operator Pod taking the Lease", new_holder)
    print(f"\n  operator: leader Pod deleted, Lease taken by {second} in {time.monotonic() - started:.1f}s")
    wait("the Deployment back at 2 Ready Pods", lambda: ready_pods(env, SYS_NS, RELEASE, 2))
    assert first not in {p["metadata"]["name"] for p in pods_of(env, SYS_NS, RELEASE)}


def test_a_server_runs_as_hardened_ready_pods_with_the_volumes_the_operator_declares(cluster, orders):
    env = cluster
    server = k_json(env, "get", "mks", "orders", "-n", DEV_NS)
    wait("orders Ready=True", lambda: condition(k_json(env, "get", "mks", "orders", "-n", DEV_NS), "Ready")["status"] == "True")
    for pod in pods_of(env, DEV_NS, "orders"):
        spec = pod["spec"]
        assert pod["status"]["containerStatuses"][0]["image"] == env["MCPK_SIDECAR_IMAGE"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        container = spec["containers"][0]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        volumes = {v["name"]: v for v in spec["volumes"]}
        kinds = {kind for v in volumes.values() for kind in v if kind != "name"}
        assert {"configMap", "projected"} <= kinds, volumes
        secrets = {s["secretName"] for v in volumes.values() if "secret" in v for s in [v["secret"]]} | {
            src["secret"]["name"] for v in volumes.values() if "projected" in v for src in v["projected"]["sources"] if "secret" in src}
        assert {"kafka-ca", "kafka-scram"} <= secrets, volumes
        # The process in the container: user 65532, as the kubelet started it.
        uid = k(env, "get", "pod", pod["metadata"]["name"], "-n", DEV_NS, "-o",
                "jsonpath={.status.containerStatuses[0].user.linux.uid}")
        assert uid in ("", "65532"), uid
        readyz = subprocess.run(["curl", "-sS", f"http://{pod['status']['podIP']}:8090/readyz"], capture_output=True, text=True, timeout=10)
        assert readyz.stdout.strip() == "ok", readyz
    assert server["status"]["effectiveTools"], server["status"]
    # The broker over SASL_SSL from the Pod answers with the ground's cluster.
    result = call(orders["url"], orders["token"], "cluster_status", host=orders["host"])
    assert not result.is_error, result
    assert result.structured_content["cluster_id"] == env["KAFKA_CLUSTER_ID"]


def test_readiness_says_kafka_unreachable_or_fenced_and_the_pod_stays_out_of_the_service(cluster):
    env = cluster
    apply(env, server_doc("nobroker", DEV_NS, "dev", ["list_topics"], kafka={"bootstrapServers": [f"{env['MCPK_NODE_IP']}:19999"]}),
          server_doc("fenced", STAGING_NS, "staging", ["list_topics"], kafka={"bootstrapServers": [env["MCPK_KAFKA_POD_BOOTSTRAP"]]}))
    for ns, name, says in ((DEV_NS, "nobroker", "kafka: no metadata answer"), (STAGING_NS, "fenced", "fenced:")):
        pod = wait(f"{name}'s Pod running", lambda: next((p for p in pods_of(env, ns, name)
                                                          if p["status"].get("phase") == "Running" and p["status"].get("podIP")), None))
        body = wait(f"{name}'s /readyz to say why", lambda: (r := subprocess.run(
            ["curl", "-sS", f"http://{pod['status']['podIP']}:8090/readyz"], capture_output=True, text=True, timeout=10).stdout)
            and says in r and r)
        print(f"\n  {name}: /readyz -> {body.strip()}")
        assert not ready(k_json(env, "get", "pod", pod["metadata"]["name"], "-n", ns))
        assert endpoints_ready(env, ns, f"{name}-mcp") == []
    k(env, "delete", "mks", "nobroker", "-n", DEV_NS)
    k(env, "delete", "mks", "fenced", "-n", STAGING_NS)


def test_callers_from_a_pod_by_dns_and_from_the_host_through_a_forwarded_port(cluster, orders):
    env = cluster
    dns_url = f"http://orders-mcp.{DEV_NS}.svc.cluster.local:8090/mcp"
    audience = f"mcpkafka.dev/{DEV_NS}/orders"
    phase, report = probe(env, DEV_NS, "probe-agent", "agent", dns_url, "list_topics", audience)
    assert phase == "Succeeded", report
    assert report["addresses"] and report["tools"] == ["cluster_status", "list_topics"], report
    # A ServiceAccount no client names: authenticated, and denied each tool.
    phase, report = probe(env, DEV_NS, "probe-stranger", "stranger", dns_url, "list_topics", audience)
    assert phase == "Failed" and report["isError"] and report["tools"] in (None, []), report
    assert "PERMISSION_DENIED" in json.dumps(report["result"]), report
    # The agent's token for another server's audience: refused at the door.
    phase, report = probe(env, DEV_NS, "probe-audience", "agent", dns_url, "list_topics", f"mcpkafka.dev/{DEV_NS}/other")
    assert phase == "Failed" and ("401" in report.get("error", "") or "Unauthorized" in report.get("error", "")), report

    # The laptop client's issued token (status.tokenSecrets), from the host,
    # with the official Python SDK, through a forwarded loopback port.
    secret = k_json(env, "get", "mks", "orders", "-n", DEV_NS)["status"]["tokenSecrets"]["laptop"]
    token = subprocess.run(["base64", "-d"], input=k(env, "get", "secret", secret, "-n", DEV_NS, "-o", "jsonpath={.data.token}"),
                           capture_output=True, text=True).stdout
    cluster_ip = orders["url"].split("//")[1].split("/")[0]
    stack("forward", str(HOST_PORT), cluster_ip)
    try:
        url = f"http://127.0.0.1:{HOST_PORT}/mcp"
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
            script.write(HOST_CLIENT)
        out = from_the_host(env, [env["MCPK_PYTHON"], script.name, url, token, "list_topics"])
        assert out.returncode == 0, out.stderr[-2000:]
        answer = json.loads(out.stdout.strip().splitlines()[-1])
        assert answer["tools"] == ["describe_topic", "list_topics"] and not answer["isError"], answer
        print(f"\n  host: 127.0.0.1:{HOST_PORT} -> {cluster_ip}: tools {answer['tools']}")
        refused = from_the_host(env, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url,
                                      "-H", "Authorization: Bearer not-a-token", "-H", "Content-Type: application/json",
                                      "-H", "Accept: application/json, text/event-stream", "-d", "{}"])
        assert refused.stdout == "401", refused
    finally:
        stack("forward", str(HOST_PORT), "stop")
        os.unlink(script.name)


def test_the_network_policy_lets_only_the_servers_environment_in(cluster, orders):
    """The operator's NetworkPolicy, enforced on the node (kube-router's
    firewall): a Pod in a staging namespace cannot even connect to the dev
    server; labelled dev, the same namespace's Pod connects (and is denied
    by RBAC, its ServiceAccount being no client: the network let it in)."""
    env = cluster
    ns = "pods-np-other"
    apply(env, namespace(env, ns, "staging"),
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "outsider", "namespace": ns}})
    try:
        url = f"http://orders-mcp.{DEV_NS}.svc.cluster.local:8090/mcp"
        audience = f"mcpkafka.dev/{DEV_NS}/orders"
        phase, report = probe(env, ns, "probe-staging", "outsider", url, "list_topics", audience, timeout="10s")
        assert phase == "Failed" and report["addresses"], report
        # kube-router rejects what no policy admits (ICMP port unreachable).
        assert report.get("error", "").startswith("connecting:") and "connection refused" in report["error"], report
        assert report["tools"] is None and report["attempts"] > 1, report
        assert not any(code in report["error"] for code in ("401", "403", "Unauthorized")), report
        print(f"\n  network policy: from a staging namespace -> {report['error'][:120]}")

        k(env, "label", "namespace", ns, "mcpkafka.dev/environment=dev", "--overwrite")

        def let_in():
            phase, report = probe(env, ns, f"probe-relabelled-{time.monotonic_ns()}", "outsider", url, "list_topics",
                                  audience, timeout="10s")
            return report if "PERMISSION_DENIED" in json.dumps(report.get("result")) else None

        report = wait("a Pod of the relabelled namespace to connect", let_in, timeout=120, every=1)
        assert report["tools"] in (None, []), report
    finally:
        delete_namespaces(env, ns)


def test_policy_and_break_glass_changes_reach_the_running_server(cluster):
    """What `kubectl apply` of a policy or a break-glass window changes, as
    an agent sees it in tools/list through the Service. The operator rolls
    the Deployment (the config's hash is in the Pod template); the time to
    the change being visible is printed."""
    env = cluster
    apply(env, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "oncall", "namespace": PROD_NS}},
          {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default", "namespace": PROD_NS},
           "spec": {"allow": ["observe"]}},
          server_doc("ledger", PROD_NS, "prod", ["list_topics", "describe_topic", "create_partitions"],
                     clients=[{"name": "oncall", "serviceAccountName": "oncall", "tools": ["list_topics", "describe_topic", "create_partitions"]}],
                     kafka={"bootstrapServers": [env["MCPK_KAFKA_POD_BOOTSTRAP"]]}))
    wait("ledger's Pod Ready", lambda: ready_pods(env, PROD_NS, "ledger", 1))
    url, host = service_url(env, PROD_NS, "ledger")
    token = sa_token(env, PROD_NS, "oncall", "ledger")
    wait("ledger answering", lambda: tool_names(url, token, host) == ["describe_topic", "list_topics"])

    def change(what, spec, expected):
        before = {p["metadata"]["name"] for p in pods_of(env, PROD_NS, "ledger")}
        started = time.monotonic()
        apply(env, {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy",
                    "metadata": {"name": "default", "namespace": PROD_NS}, "spec": spec})
        wait(f"tools/list after {what}", lambda: tool_names(url, token, host) == expected, every=0.2)
        seen = time.monotonic() - started
        wait("the rollout to finish", lambda: ready_pods(env, PROD_NS, "ledger", 1))
        after = {p["metadata"]["name"] for p in pods_of(env, PROD_NS, "ledger")}
        print(f"\n  ledger: {what}: kubectl apply -> tools/list {expected} in {seen:.1f}s "
              f"({'rolled out: new Pod' if after != before else 'same Pod'})")

    change("policy narrowed", {"allow": ["list_topics"]}, ["list_topics"])
    change("policy widened", {"allow": ["observe"]}, ["describe_topic", "list_topics"])
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    change("break-glass window opened", {"allow": ["all"], "breakGlass": {"until": until, "reason": "INC-42", "allow": ["create_partitions"]}},
           ["create_partitions", "describe_topic", "list_topics"])
    change("break-glass window closed", {"allow": ["all"]}, ["describe_topic", "list_topics"])
    k(env, "delete", "mks", "ledger", "-n", PROD_NS)


def test_a_spec_change_rolls_out_and_deleting_the_server_removes_every_pod_and_object(cluster):
    env = cluster
    doc = server_doc("rollout", DEV_NS, "dev", ["list_topics"], replicas=2, kafka={"bootstrapServers": [env["MCPK_KAFKA_POD_BOOTSTRAP"]]})
    apply(env, doc)
    first = {p["metadata"]["name"] for p in wait("2 Pods Ready", lambda: ready_pods(env, DEV_NS, "rollout", 2))}
    doc["spec"]["resources"] = {"requests": {"cpu": "20m", "memory": "40Mi"}, "limits": {"memory": "160Mi"}}
    started = time.monotonic()
    apply(env, doc)

    def rolled():
        pods = ready_pods(env, DEV_NS, "rollout", 2)
        return pods if pods and not first & {p["metadata"]["name"] for p in pods} else None

    pods = wait("the rollout to new Pods", rolled)
    print(f"\n  rollout: a resources change rolled out 2 Pods in {time.monotonic() - started:.1f}s")
    assert all(p["spec"]["containers"][0]["resources"]["limits"]["memory"] == "160Mi" for p in pods)

    k(env, "delete", "mks", "rollout", "-n", DEV_NS, "--wait=true", "--timeout=120s")
    wait("every Pod gone", lambda: not pods_of(env, DEV_NS, "rollout") and
         not k_json(env, "get", "pods", "-n", DEV_NS, "-l", "app.kubernetes.io/instance=rollout")["items"])
    kinds = "deployment,replicaset,service,configmap,serviceaccount,role,rolebinding,networkpolicy,poddisruptionbudget,secret"
    left = k(env, "get", kinds, "-n", DEV_NS, "-l", "mcpkafka.dev/server=rollout", "-o", "name")
    assert left.strip() == "", left
    assert k(env, "get", "clusterrolebinding", "-l", "mcpkafka.dev/server=rollout", "-o", "name").strip() == ""


def container_id(pod):
    return pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]


def restarts(pod):
    return pod["status"]["containerStatuses"][0]["restartCount"]


def test_faults_a_container_killed_a_pod_deleted_kafka_stopped_and_the_kubelet_restarted(cluster, orders):
    env = cluster
    url, host, token = orders["url"], orders["host"], orders["token"]
    ctr = env["MCPK_CTR"].strip("\"").split()

    # The sidecar's container killed: the kubelet starts it again in the same Pod.
    pod = pods_of(env, DEV_NS, "orders")[0]
    name, count = pod["metadata"]["name"], restarts(pod)
    out = subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", container_id(pod)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    started = time.monotonic()
    wait("the container restarted and Ready", lambda: (p := k_json(env, "get", "pod", name, "-n", DEV_NS))
         and restarts(p) == count + 1 and ready(p))
    print(f"\n  faults: container SIGKILLed -> restarted and Ready in {time.monotonic() - started:.1f}s")
    wait("a client's next call", lambda: not call(url, token, "list_topics", host=host).is_error)

    # A Pod deleted: the ReplicaSet replaces it.
    k(env, "delete", "pod", name, "-n", DEV_NS, "--wait=false")
    pods = wait("2 Ready Pods again, the deleted one not among them",
                lambda: (ps := ready_pods(env, DEV_NS, "orders", 2)) and name not in {p["metadata"]["name"] for p in ps} and ps)
    assert not call(url, token, "list_topics", host=host).is_error

    # The kubelet stopped and started: the Pods keep running, same containers.
    before = {p["metadata"]["name"]: (container_id(p), restarts(p)) for p in pods}
    stack("kubelet", "stop")
    try:
        assert not call(url, token, "list_topics", host=host).is_error, "served while the kubelet is down"
    finally:
        stack("kubelet", "start")
    wait("the node Ready again", lambda: condition(k_json(env, "get", "node", env["MCPK_NODE_NAME"]), "Ready")["status"] == "True")
    after = wait("the same Pods Ready", lambda: ready_pods(env, DEV_NS, "orders", 2))
    assert {p["metadata"]["name"]: (container_id(p), restarts(p)) for p in after} == before

    # Kafka stopped: readiness fails and the Service drops the Pod; Kafka
    # back, the Pod is Ready and in the Service again. (A broker of its own,
    # on the node IP, so that the ground's broker keeps serving; in prod,
    # whose fence names no cluster, since dev is fenced to the ground's.)
    kafka_env = {"MCPK_KAFKA_ADDRESS": env["MCPK_NODE_IP"]}
    name_, port, cport = FLAKY_KAFKA
    stack("kafka", "start", name_, port, cport, env=kafka_env)
    try:
        apply(env, server_doc("flaky", PROD_NS, "prod", ["cluster_status"], kafka={"bootstrapServers": [f"{env['MCPK_NODE_IP']}:{port}"]}))
        pod = wait("flaky's Pod Ready", lambda: ready_pods(env, PROD_NS, "flaky", 1))[0]
        ip = pod["status"]["podIP"]
        wait("flaky's endpoint ready", lambda: endpoints_ready(env, PROD_NS, "flaky-mcp") == [ip])
        stack("kafka", "stop", name_, port, cport, env=kafka_env)
        started = time.monotonic()
        wait("flaky not Ready", lambda: not ready(k_json(env, "get", "pod", pod["metadata"]["name"], "-n", PROD_NS)))
        wait("the endpoint dropped", lambda: endpoints_ready(env, PROD_NS, "flaky-mcp") == [])
        print(f"\n  faults: Kafka stopped -> Pod out of the Service in {time.monotonic() - started:.1f}s")
        stack("kafka", "start", name_, port, cport, env=kafka_env)
        started = time.monotonic()
        wait("flaky Ready again", lambda: ready(k_json(env, "get", "pod", pod["metadata"]["name"], "-n", PROD_NS)))
        wait("the endpoint back", lambda: endpoints_ready(env, PROD_NS, "flaky-mcp") == [ip])
        print(f"\n  faults: Kafka back -> Pod in the Service in {time.monotonic() - started:.1f}s")
        assert restarts(k_json(env, "get", "pod", pod["metadata"]["name"], "-n", PROD_NS)) == 0, "readiness, not liveness"
    finally:
        stack("kafka", "stop", name_, port, cport, env=kafka_env)
        run(env["MCPK_KUBECTL"], "--kubeconfig", env["KUBECONFIG"], "delete", "mks", "flaky", "-n", PROD_NS, "--ignore-not-found")


def test_three_sidecar_pods_share_the_jobs_and_one_deleted_mid_stream_loses_none(cluster):
    """Tool calls as Kafka jobs with the server's replicas as the worker
    group: 3 sidecar Pods in one consumer group; one Pod deleted mid-stream
    (its replacement joins): every job answered, each mutation exactly once
    and applied at most once on Kafka, observe jobs at least once."""
    from test_sidecar_jobs import JobClient, Topics, check_answered_once, stream_of_jobs
    from confluent_kafka.admin import AdminClient

    env = cluster
    ns = "pods-jobs"
    topics = Topics(env["KAFKA_BOOTSTRAP_SERVERS"], 6)
    apply(env, namespace(env, ns, "dev"),
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "submitter", "namespace": ns}},
          {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default", "namespace": ns},
           "spec": {"allow": ["all"]}},
          server_doc("workers", ns, "dev", ["describe_topic", "publish_message"],
                     clients=[{"name": "submitter", "serviceAccountName": "submitter", "tools": ["describe_topic", "publish_message"]}],
                     replicas=3, kafka={"bootstrapServers": [env["MCPK_KAFKA_POD_BOOTSTRAP"]]}, jobs=topics.section()))
    try:
        wait("3 worker Pods Ready", lambda: ready_pods(env, ns, "workers", 3))
        group = wait("status.jobs", lambda: k_json(env, "get", "mks", "workers", "-n", ns)["status"]["jobs"]["group"])
        admin = AdminClient({"bootstrap.servers": topics.bootstrap})

        def members():
            described = admin.describe_consumer_groups([group])[group].result(10)
            return len(described.members)

        wait("3 members in the jobs group", lambda: members() == 3)
        token = sa_token(env, ns, "submitter", "workers")
        victim = pods_of(env, ns, "workers")[0]["metadata"]["name"]

        def delete_a_pod():
            k(env, "delete", "pod", victim, "-n", ns, "--wait=false")

        started = time.monotonic()
        with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
            publishes, observes = stream_of_jobs(jobs, topics, token, 150, 50, delete_a_pod)
            replies = jobs.replies(publishes + observes, timeout=180, settle=5)
        print(f"\n  jobs: 150 jobs over 3 Pods, {victim} deleted after 50, all answered in {time.monotonic() - started:.1f}s")
        check_answered_once(topics, replies, publishes, observes, f"deleting Pod {victim}")
        wait("3 worker Pods Ready again", lambda: ready_pods(env, ns, "workers", 3))
        assert victim not in {p["metadata"]["name"] for p in pods_of(env, ns, "workers")}
    finally:
        delete_namespaces(env, ns)
