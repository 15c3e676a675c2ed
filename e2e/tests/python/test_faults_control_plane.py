"""Faults of the control plane, with real processes and real kills: the
kube-apiserver stopped and started again under a running sidecar and a
running operator, and the operator killed with SIGKILL in the middle of
reconciling 200 servers. Each test prints its figures (`pytest -s` shows
them; RELIABILITY.md keeps them)."""

import collections
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from conftest import E2E_DIR, ERROR_META_KEY, kubectl, sa_token
from operator_install import installed_operator  # noqa: F401 (fixture)

STACK = E2E_DIR / "stack"
# The sidecar's decision caches in the outage test: long enough to see them
# serve after the apiserver stopped, short enough to wait out.
ALLOW_CACHE_SECONDS = 12


class Apiserver:
    """Kills (SIGKILL) and starts the ground's kube-apiserver (etcd keeps the
    state); started again at the end of the test whatever happened, and
    then what watches it restarted (`e2e/stack apiserver-clients`): their
    watches reconnect under a backoff that left them stale for a minute
    or more, and the tests after this one need them current."""

    def __init__(self):
        self.stopped = False
        self.killed = False

    def _stack(self, *args):
        started = time.monotonic()
        out = subprocess.run([str(STACK), *args], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, f"e2e/stack {' '.join(args)}:\n{out.stderr[-2000:]}"
        return time.monotonic() - started

    def kill(self):
        took = self._stack("apiserver", "kill")
        self.stopped = self.killed = True
        return took

    def start(self):
        took = self._stack("apiserver", "start")
        self.stopped = False
        return took


@pytest.fixture
def apiserver():
    server = Apiserver()
    yield server
    if server.stopped:
        server.start()
    if server.killed:
        server._stack("apiserver-clients", "restart")


class RawSession:
    """A minimal MCP client over Streamable HTTP that reports HTTP statuses
    (the SDK turns a 401 into an exception and drops the session)."""

    def __init__(self, url, token):
        self.url, self.token, self.session, self.next_id = f"{url}/mcp", token, None, 0

    def _post(self, body):
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {self.token}"}
        if self.session:
            headers |= {"Mcp-Session-Id": self.session, "MCP-Protocol-Version": "2025-06-18"}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, session, text = response.status, response.headers.get("Mcp-Session-Id"), response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, None, None
        events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
        if not events and text.strip():
            events = [json.loads(text)]
        return status, session, next((e for e in events if "id" in e), None)

    def initialize(self):
        status, session, _ = self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fault-test", "version": "0"}}})
        if status == 200:
            self.session = session
            self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return status

    def call(self, tool, arguments=None):
        """(HTTP status, "ok" or the tool error's code, the error)"""
        self.next_id += 1
        status, _, message = self._post({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                                         "params": {"name": tool, "arguments": arguments or {}}})
        if status != 200 or message is None:
            return status, None, None
        result = message.get("result", {})
        if result.get("isError"):
            error = result["_meta"][ERROR_META_KEY]
            return status, error["code"], error
        return status, "ok", None


def test_sidecar_serves_cached_decisions_then_fails_closed_while_the_apiserver_is_down(
        tool_grants, stack_env, start_sidecar, tmp_path, free_port, apiserver):
    ns = tool_grants("orders", {"writer": ["list_topics", "describe_topic"]})
    config = tmp_path / "sidecar.yaml"
    config.write_text(json.dumps({
        "server": {"name": "orders", "namespace": ns, "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{free_port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": ["list_topics", "describe_topic"],
        "auth": {"mode": "kubernetes", "allowCacheSeconds": ALLOW_CACHE_SECONDS, "denyCacheSeconds": 1},
    }))
    sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=free_port)
    sidecar.wait_ready()
    warm = RawSession(sidecar.url, sa_token(stack_env, ns, "writer", "orders"))
    unseen_token = sa_token(stack_env, ns, "writer", "orders")  # first shown during the outage

    warmed = time.monotonic()
    assert warm.initialize() == 200
    assert warm.call("list_topics")[1] == "ok"
    took = apiserver.kill()
    assert time.monotonic() - warmed < ALLOW_CACHE_SECONDS - 3, f"the apiserver took {took:.1f}s to die, past the cache window"

    # While cached: what was decided keeps serving...
    assert warm.call("list_topics")[:2] == (200, "ok")
    # ...and nothing undecided is allowed: a tool RBAC grants but whose
    # decision is not cached, and a token never seen, are refused.
    status, code, error = warm.call("describe_topic", {"topic": "any"})
    assert (status, code) == (200, "PERMISSION_DENIED") and error["retriable"] is True, error
    assert RawSession(sidecar.url, unseen_token).initialize() == 401

    # Past the cache time: the known caller is refused too (fail closed).
    time.sleep(max(0.0, warmed + ALLOW_CACHE_SECONDS + 1 - time.monotonic()))
    assert warm.call("list_topics")[0] == 401
    assert sidecar.proc.poll() is None, "the sidecar exited"

    # Back: the same MCP session serves again, without a sidecar restart.
    apiserver.start()
    back = time.monotonic()
    while warm.call("list_topics")[1] != "ok":
        assert time.monotonic() - back < 60, "the sidecar did not serve again within 60 s of the apiserver's return"
        time.sleep(0.1)
    recovered = time.monotonic() - back
    assert RawSession(sidecar.url, unseen_token).initialize() == 200
    print(f"\napiserver outage, sidecar: cached decisions served, then 401; answered again {recovered:.2f}s after the apiserver was ready")


@pytest.fixture
def dev_namespaces(stack_env):
    """dev_namespaces(prefix, count): new namespaces labelled dev, deleted
    after the test (while the operator still runs: it lets their servers go)."""
    made = []

    def make(prefix, count):
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{prefix}-{uuid.uuid4().hex[:6]}-{i}",
                                                                       "labels": {"mcpkafka.dev/environment": "dev"}}}
                for i in range(count)]
        kubectl(stack_env, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        made.extend(d["metadata"]["name"] for d in docs)
        return [d["metadata"]["name"] for d in docs]

    yield make
    if made:
        subprocess.run([stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "delete", "namespace", *made, "--wait=false"],
                       capture_output=True)


def servers_manifest(stack_env, namespaces, count, tools=("list_topics", "describe_topic")):
    return yaml.safe_dump_all([{
        "apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer",
        "metadata": {"name": f"s{i}", "namespace": namespaces[i % len(namespaces)]},
        "spec": {
            "environment": "dev",
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": list(tools),
            "clients": [{"name": "agent", "serviceAccountName": "agent", "tools": list(tools)}],
        },
    } for i in range(count)])


# What the operator makes for one server with one replica and one client
# that brings its own ServiceAccount (so no client ServiceAccount or token
# Secret): exactly these, once each.
OBJECTS_PER_SERVER = {"Deployment": 1, "Service": 1, "ConfigMap": 1, "NetworkPolicy": 1, "ServiceAccount": 1,
                      "Role": 1, "RoleBinding": 1, "ClusterRoleBinding": 1}


def assert_converged_without_duplicates_or_orphans(stack_env, namespaces):
    """Every server has exactly its objects, each owned by it (this server's
    UID); no object of ours names a server that does not exist."""
    servers = {}
    for s in json.loads(kubectl(stack_env, "get", "mks", "-A", "-o", "json"))["items"]:
        if s["metadata"]["namespace"] in namespaces:
            servers[(s["metadata"]["namespace"], s["metadata"]["name"])] = s["metadata"]["uid"]
    selector = "app.kubernetes.io/managed-by=mcp-kafka-operator"
    kinds = "deployments,services,configmaps,networkpolicies,serviceaccounts,roles,rolebindings,secrets"
    objects = [o for o in json.loads(kubectl(stack_env, "get", kinds, "-A", "-l", selector, "-o", "json"))["items"]
               if o["metadata"]["namespace"] in namespaces]
    cluster_scoped = json.loads(kubectl(stack_env, "get", "clusterrolebindings", "-l", selector, "-o", "json"))["items"]
    namespace_of_binding = {o["metadata"]["name"]: o["metadata"].get("labels", {}).get("mcpkafka.dev/server-namespace") for o in cluster_scoped}
    objects += [o for o in cluster_scoped if namespace_of_binding[o["metadata"]["name"]] in namespaces]

    counts = collections.defaultdict(collections.Counter)
    orphans = []
    for o in objects:
        meta = o["metadata"]
        namespace = meta.get("namespace") or meta["labels"].get("mcpkafka.dev/server-namespace")
        key = (namespace, meta["labels"].get("mcpkafka.dev/server"))
        if key not in servers:
            orphans.append(f"{o['kind']} {namespace}/{meta['name']}")
            continue
        counts[key][o["kind"]] += 1
        if meta.get("namespace"):
            owners = [r["uid"] for r in meta.get("ownerReferences", []) if r["kind"] == "McpKafkaServer"]
            assert owners == [servers[key]], f"{o['kind']} {namespace}/{meta['name']}: owners {owners}, server UID {servers[key]}"
    assert not orphans, f"objects of no server: {orphans[:10]}"
    wrong = {k: dict(c) for k, c in counts.items() if c != collections.Counter(OBJECTS_PER_SERVER)}
    missing = [k for k in servers if k not in counts]
    assert not wrong and not missing, f"servers whose objects are not exactly one set: {list(wrong.items())[:5]}, none: {missing[:5]}"
    return len(servers), len(objects)


def reconciled_count(stack_env, namespaces):
    items = json.loads(kubectl(stack_env, "get", "mks", "-A", "-o", "json"))["items"]
    return sum(1 for s in items if s["metadata"]["namespace"] in namespaces and reconciled_now(s))


def reconciled_now(s):
    status = s.get("status") or {}
    return status.get("observedGeneration") == s["metadata"]["generation"] and any(
        c["type"] == "Reconciled" and c["status"] == "True" for c in status.get("conditions", []))


def test_operator_killed_mid_reconcile_of_200_servers_converges_without_duplicates_or_orphans(installed_operator, dev_namespaces, stack_env):
    namespaces = dev_namespaces("kill", 10)
    installed_operator.apply(servers_manifest(stack_env, namespaces, 200))
    op = installed_operator.start()
    started = time.monotonic()
    while (done := reconciled_count(stack_env, namespaces)) < 40:
        assert op.process.poll() is None, op.log.read_text()[-3000:]
        assert time.monotonic() - started < 300, f"only {done} reconciled in 300 s"
        time.sleep(0.2)
    op.process.kill()  # SIGKILL: no shutdown path runs
    op.process.wait()
    at_kill = reconciled_count(stack_env, namespaces)
    assert at_kill < 200, "every server was reconciled before the kill: the test proves nothing"

    op.start()
    restarted = time.monotonic()
    while (done := reconciled_count(stack_env, namespaces)) < 200:
        assert op.process.poll() is None, op.log.read_text()[-3000:]
        assert time.monotonic() - restarted < 600, f"only {done} of 200 reconciled 600 s after the restart"
        time.sleep(0.5)
    converged = time.monotonic() - restarted
    servers, objects = assert_converged_without_duplicates_or_orphans(stack_env, namespaces)
    print(f"\noperator SIGKILL with {at_kill}/200 reconciled: all 200 reconciled {converged:.1f}s after the restart; "
          f"{objects} objects for {servers} servers, 0 duplicates, 0 orphans")


def test_operator_rides_out_an_apiserver_restart_and_converges(installed_operator, dev_namespaces, stack_env, apiserver):
    namespaces = dev_namespaces("outage", 2)
    installed_operator.apply(servers_manifest(stack_env, namespaces, 6))
    op = installed_operator.start()
    op.wait_reconciled([(namespaces[i % 2], f"s{i}") for i in range(6)])

    lines_before = len(op.log.read_text().splitlines())
    apiserver.kill()
    time.sleep(10)
    lines_during = len(op.log.read_text().splitlines()) - lines_before
    apiserver.start()
    back = time.monotonic()
    # Changes made after the return are picked up: a new server, and an edited one.
    installed_operator.apply(servers_manifest(stack_env, namespaces, 8, tools=("list_topics",)))
    if op.process.poll() is not None:
        # Losing the Lease stops the operator on purpose (a standby or the
        # kubelet's restart takes over); here the test restarts it as the kubelet would.
        assert op.process.returncode == 0 and "lost leadership" in op.log.read_text(), op.log.read_text()[-3000:]
        outcome = "stopped on the lost Lease, restarted"
        op.start()
    else:
        outcome = "stayed up"
    op.wait_reconciled([(namespaces[i % 2], f"s{i}") for i in range(8)], timeout=100)
    converged = time.monotonic() - back
    edited = json.loads(kubectl(stack_env, "get", "mks", "s0", "-n", namespaces[0], "-o", "json"))
    assert edited["status"]["effectiveTools"] == ["list_topics"], edited["status"]
    assert_converged_without_duplicates_or_orphans(stack_env, namespaces)
    # Backing off, not spinning: a bounded number of log lines while the API was gone.
    assert lines_during < 300, f"{lines_during} log lines in 10 s of outage"
    print(f"\napiserver outage, operator: {lines_during} log lines in 10 s of outage; {outcome}; "
          f"8 servers converged {converged:.1f}s after the apiserver was ready, 0 duplicates, 0 orphans")
