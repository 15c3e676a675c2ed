"""End to end, the way a user meets the project: the chart's operator (its
ServiceAccount token, its config), a dev and a prod namespace with their
policies and servers on the real broker, each server's sidecar started from
what the operator made, agents calling with tokens from the operator's
`token` subcommand through the official MCP Python SDK, and deletion.

There is no kubelet on the test ground, so no Pod runs: the sidecar runs as
a local process exactly as the Pod would, from the operator's Deployment:
its args, its ConfigMap and Secret volumes written where the mounts put
them (under a temporary root instead of /), and the token of the
ServiceAccount the operator made for it."""

import base64
import datetime
import json
import pathlib
import time
import uuid

import anyio
import yaml
from conftest import Sidecar, _another_port, as_caller, kubeconfig_as, kubectl, outcome, tool_error
from operator_install import binary, installed_operator, reconciled, run, server  # noqa: F401 (fixture)

TOOLS_DEV = ["create_partitions", "create_topic", "describe_topic", "list_topics"]
TOOLS_PROD = ["create_partitions", "describe_topic", "list_topics"]


def manifests(stack_env, dev, prod):
    password = pathlib.Path(stack_env["MCPK_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()
    username = pathlib.Path(stack_env["MCPK_KAFKA_SASL_USERNAME_FILE"]).read_text().strip()
    ca = pathlib.Path(stack_env["MCPK_KAFKA_CA_FILE"]).read_text()
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dev, "labels": {"mcpkafka.dev/environment": "dev"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": prod, "labels": {"mcpkafka.dev/environment": "prod"}}},
        {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default", "namespace": dev}, "spec": {"allow": ["all"]}},
        {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default", "namespace": prod}, "spec": {"allow": ["all"]}},
        # dev reaches the broker with SCRAM over TLS, from Secrets.
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-ca", "namespace": dev}, "stringData": {"ca.pem": ca}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-scram", "namespace": dev},
         "stringData": {"username": username, "password": password}},
        {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer", "metadata": {"name": "orders", "namespace": dev}, "spec": {
            "environment": "dev",
            "kafka": {"bootstrapServers": [stack_env["MCPK_KAFKA_SASL_SSL_BOOTSTRAP"]],
                      "tls": {"caSecretRef": {"name": "kafka-ca", "key": "ca.pem"}},
                      "sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-scram"}}},
            "tools": TOOLS_DEV,
            "clients": [{"name": "writer", "issueToken": {"expirationSeconds": 3600}, "tools": TOOLS_DEV},
                        {"name": "reader", "issueToken": {"expirationSeconds": 3600}, "tools": ["list_topics"]}]}},
        # prod is fenced to the broker's cluster ID.
        {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer", "metadata": {"name": "payments", "namespace": prod}, "spec": {
            "environment": "prod",
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]], "expectedClusterId": stack_env["KAFKA_CLUSTER_ID"]},
            "tools": TOOLS_PROD,
            "clients": [{"name": "sre", "issueToken": {"expirationSeconds": 3600}, "tools": TOOLS_PROD},
                        {"name": "viewer", "issueToken": {"expirationSeconds": 3600}, "tools": ["list_topics"]}]}},
    ]
    return yaml.safe_dump_all(docs)


class PodAsProcess:
    """The sidecar of one server, run from the objects the operator made."""

    def __init__(self, stack_env, tmp_path, namespace, name):
        self.stack_env, self.namespace, self.name = stack_env, namespace, name
        self.root = tmp_path / f"{namespace}-{name}"
        self.port = _another_port()
        self.metrics_port = _another_port()
        deployment = json.loads(kubectl(stack_env, "get", "deployment", f"{name}-mcp", "-n", namespace, "-o", "json"))
        pod = deployment["spec"]["template"]["spec"]
        self.container = pod["containers"][0]
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        self.mount()
        kubeconfig = kubeconfig_as(stack_env, namespace, pod["serviceAccountName"], self.root / "kubeconfig")
        args = [a.replace("/etc/", f"{self.root}/etc/") for a in self.container["args"]]
        self.sidecar = Sidecar(args, self.port, self.root / "sidecar.log", {"KUBECONFIG": str(kubeconfig)}, listen=False)
        self.sidecar.wait_ready()
        self.url = self.sidecar.url
        self.calls = 0
        self.tokens = []  # every token minted for a call to this sidecar

    def mount(self):
        """Writes each volume where its mount puts it, as the kubelet does (again on every call, as on a ConfigMap update)."""
        for m in self.container["volumeMounts"]:
            volume = self.volumes[m["name"]]
            target = pathlib.Path(f"{self.root}{m['mountPath']}")
            target.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                cm = json.loads(kubectl(self.stack_env, "get", "configmap", volume["configMap"]["name"], "-n", self.namespace, "-o", "json"))
                for key, text in cm["data"].items():
                    # The only changes from the Pod: loopback and free ports instead of
                    # 0.0.0.0:8090 (MCP) and 0.0.0.0:9090 (metrics), and file paths under
                    # this process's root.
                    assert "0.0.0.0:8090" in text and "0.0.0.0:9090" in text, text
                    text = (text.replace("0.0.0.0:8090", f"127.0.0.1:{self.port}")
                            .replace("0.0.0.0:9090", f"127.0.0.1:{self.metrics_port}")
                            .replace("/etc/", f"{self.root}/etc/"))
                    path = target / key
                    if not path.exists() or path.read_text() != text:
                        path.write_text(text)
            else:
                secret = json.loads(kubectl(self.stack_env, "get", "secret", volume["secret"]["secretName"], "-n", self.namespace, "-o", "json"))
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in secret["data"]]
                for item in items:
                    (target / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))

    def as_client(self, client, work):
        """Runs work(session) as the server's client, with a token from `mcp-kafka-operator token`."""
        printed = run(str(binary("mcp-kafka-operator")), "token", self.name, "--client", client, "-n", self.namespace,
                      "--url", f"{self.url}/mcp")
        assert printed.returncode == 0, printed.stderr
        bearer = json.loads(printed.stdout)["headers"]["Authorization"].removeprefix("Bearer ")
        self.tokens.append(bearer)
        return anyio.run(as_caller, self.url, bearer, work)

    def tools(self, client):
        async def names(session):
            return sorted(t.name for t in (await session.list_tools()).tools)
        return self.as_client(client, names)

    def call(self, client, tool, args):
        async def one(session):
            return await session.call_tool(tool, args)
        self.calls += 1
        return self.as_client(client, one)

    def audit(self):
        return [json.loads(line) for line in self.sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]


def issued_tokens(stack_env, namespace, name):
    """The tokens the operator issued into Secrets for the server's issueToken clients."""
    secrets = (server(stack_env, namespace, name) or {}).get("status", {}).get("tokenSecrets", {})
    tokens = []
    for secret in secrets.values():
        data = json.loads(kubectl(stack_env, "get", "secret", secret, "-n", namespace, "-o", "json"))["data"]
        tokens.append(base64.b64decode(data["token"]).decode())
    return tokens


def kubeconfig_tokens(path):
    return [line.split("token: ", 1)[1].strip() for line in path.read_text().splitlines() if "token: " in line]


def leaks(secrets, traces):
    """(secret number, where) for each secret found in a trace: as it is, or
    as it reads inside a JSON string (a log line or an object dump)."""
    found = []
    for i, secret in enumerate(secrets):
        forms = {secret, json.dumps(secret)[1:-1]}
        found += [(i, where) for where, text in traces.items() if any(form in text for form in forms)]
    return found


def test_the_secret_grep_finds_a_planted_token():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlLWNhbmFyeQ"
    password = 'pa"ss\\word-canary-0123'
    traces = {"clean": "nothing to see", "log": f'{{"msg":"Bearer {token}"}}', "json": json.dumps({"p": password})}
    assert leaks([token, password, "not-there-at-all-0123"], traces) == [(0, "log"), (1, "json")]


def eventually(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def test_from_kubectl_apply_to_an_agents_tool_call_and_back(stack_env, installed_operator, tmp_path):
    op = installed_operator.start()
    run_id = uuid.uuid4().hex[:6]
    dev, prod = f"e2e-dev-{run_id}", f"e2e-prod-{run_id}"
    op.apply(manifests(stack_env, dev, prod))
    op.wait_reconciled([(dev, "orders"), (prod, "payments")])
    orders = PodAsProcess(stack_env, tmp_path, dev, "orders")
    payments = PodAsProcess(stack_env, tmp_path, prod, "payments")
    sidecars = [orders, payments]
    try:
        topic = f"e2e-{run_id}"
        # dev: each client sees its tools; a mutation works directly; reads show Kafka's state.
        assert orders.tools("writer") == TOOLS_DEV
        assert orders.tools("reader") == ["list_topics"]
        assert outcome(orders.call("writer", "create_topic", {"topic": topic, "partitions": 1})) == "ok"
        listed = orders.call("reader", "list_topics", {"name_contains": topic})
        assert [t["name"] for t in listed.structured_content["topics"]] == [topic]
        denied = orders.call("reader", "describe_topic", {"topic": topic})
        assert outcome(denied) == "PERMISSION_DENIED" and "describe_topic" in tool_error(denied)["message"]

        # A caller the server has no binding for.
        stranger = kubectl(stack_env, "create", "token", "default", "-n", dev, "--audience", f"mcpkafka.dev/{dev}/orders").strip()

        async def list_topics(session):
            return await session.call_tool("list_topics", {})
        orders.calls += 1
        assert outcome(anyio.run(as_caller, orders.url, stranger, list_topics)) == "PERMISSION_DENIED"

        # prod: no mutation listed or callable without a break-glass window.
        assert payments.tools("sre") == ["describe_topic", "list_topics"]
        assert payments.tools("viewer") == ["list_topics"]
        assert outcome(payments.call("sre", "create_partitions", {"topic": topic, "total": 2, "dry_run": True})) == "NOT_FOUND"
        described = payments.call("sre", "describe_topic", {"topic": topic})
        assert len(described.structured_content["partitions"]) == 1, "prod reads the same real cluster"

        # A window on the policy opens exactly create_partitions, until it ends.
        until = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=45)
        window = {"spec": {"breakGlass": {"until": until.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason": "e2e INC-1", "allow": ["create_partitions"]}}}
        kubectl(stack_env, "patch", "mcptoolpolicy", "default", "-n", prod, "--type", "merge", "-p", json.dumps(window))
        eventually("the operator to open the window",
                   lambda: "create_partitions" in ((server(stack_env, prod, "payments") or {}).get("status", {}).get("effectiveTools", [])))

        def listed_after_kubelet_sync():
            payments.mount()  # the kubelet updates a mounted ConfigMap; the sidecar reloads it
            return "create_partitions" in payments.tools("sre")
        eventually("the sidecar to list create_partitions", listed_after_kubelet_sync)
        assert payments.tools("viewer") == ["list_topics"]
        direct = payments.call("sre", "create_partitions", {"topic": topic, "total": 2})
        assert outcome(direct) == "PERMISSION_DENIED" and "two-phase" in tool_error(direct)["message"]
        planned = payments.call("sre", "create_partitions", {"topic": topic, "total": 2, "dry_run": True})
        assert outcome(planned) == "ok", planned
        applied = payments.call("sre", "create_partitions", {"topic": topic, "total": 2, "plan_id": planned.structured_content["plan"]["id"]})
        assert outcome(applied) == "ok", applied
        assert len(payments.call("sre", "describe_topic", {"topic": topic}).structured_content["partitions"]) == 2

        # After the window: gone again (the sidecar closes it at `until` by itself).
        time.sleep(max(0.0, (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1)
        assert payments.tools("sre") == ["describe_topic", "list_topics"]
        refused = payments.call("sre", "create_partitions", {"topic": topic, "total": 3, "dry_run": True})
        assert outcome(refused) in ("PERMISSION_DENIED", "NOT_FOUND"), refused

        # One audit record per tool call, on each sidecar.
        for sidecar in sidecars:
            records = sidecar.audit()
            assert len(records) == sidecar.calls, (sidecar.name, len(records), sidecar.calls)
        assert {r["decision"] for r in orders.audit()} == {"allow", "deny"}

        # The tokens the operator issued into Secrets, and what it made, while they exist.
        issued = [t for ns, name in ((dev, "orders"), (prod, "payments")) for t in issued_tokens(stack_env, ns, name)]
        assert len(issued) == 4, "each issueToken client has its token Secret"
        made = "".join(kubectl(stack_env, "get", "configmap,deployment,service,serviceaccount,role,rolebinding", "-n", ns, "-o", "json")
                       for ns in (dev, prod))

        # Delete the dev server: its objects are garbage-collected, its tokens stop passing.
        printed = run(str(binary("mcp-kafka-operator")), "token", "orders", "--client", "writer", "-n", dev)
        writer_token = json.loads(printed.stdout)["headers"]["Authorization"].removeprefix("Bearer ")
        kubectl(stack_env, "delete", "mks", "orders", "-n", dev, "--timeout=60s")
        kinds = "deployment,service,configmap,serviceaccount,role,rolebinding,secret,networkpolicy"
        eventually("the server's objects to be deleted",
                   lambda: kubectl(stack_env, "get", kinds, "-n", dev, "-l", "app.kubernetes.io/managed-by=mcp-kafka-operator", "-o", "name").strip() == "")
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": writer_token, "audiences": [f"mcpkafka.dev/{dev}/orders"]}}
        answer = json.loads(kubectl(stack_env, "create", "-o", "json", "-f", "-", stdin=json.dumps(review)))
        assert answer["status"].get("authenticated") is not True, answer["status"]

        # No secret anywhere the run left a trace: the SASL password, every
        # token of the run (each minted per call by `mcp-kafka-operator token`
        # or `kubectl create token`, those the operator issued into Secrets,
        # the sidecars' and the operator's own).
        secrets = [pathlib.Path(stack_env["MCPK_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip(), writer_token, stranger, *issued]
        secrets += [t for s in sidecars for t in s.tokens]
        secrets += [t for s in sidecars for t in kubeconfig_tokens(s.root / "kubeconfig")]
        secrets += kubeconfig_tokens(tmp_path / "operator.kubeconfig")
        assert all(s.tokens for s in sidecars) and len(secrets) > 10
        logs = [s.sidecar.log.read_text() for s in sidecars]
        audit = "\n".join(line for log in logs for line in log.splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line)
        assert audit.count("\n") + 1 == sum(s.calls for s in sidecars), "the grep reads every audit record"
        traces = {
            "operator log": op.log.read_text(),
            "sidecar logs": "".join(logs),
            "audit records": audit,
            "servers (status)": kubectl(stack_env, "get", "mks", "-A", "-o", "json"),
            "objects the operator made": made,
            "events": kubectl(stack_env, "get", "events", "-A", "-o", "json"),
        }
        assert all(len(secret) >= 16 for secret in secrets)
        # Only (secret number, where) in a failure's message: never the secret.
        found = leaks(secrets, traces)
        assert found == [], f"secrets appear in traces: {found}"
    finally:
        for sidecar in sidecars:
            sidecar.sidecar.stop()
