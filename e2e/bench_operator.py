"""Operator benchmark on the local stack: N McpKafkaServers across 10
namespaces. Prints the time until all are Reconciled=True, the operator's peak
RSS, and the API writes it makes during a steady-state window afterwards.

Run through `e2e/bench-operator`, which builds the release binary and starts
the stack. The operator gets its chart's RBAC rules through a ServiceAccount
token, so the audit log tells its writes apart from everyone else's.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
KUBECTL = os.environ["MCPK_KUBECTL"]
KUBECONFIG = os.environ["KUBECONFIG"]
AUDIT_LOG = pathlib.Path(os.environ["MCPK_APISERVER_AUDIT_LOG"])
NAMESPACES = 10


def kubectl(*args, stdin=None, kubeconfig=KUBECONFIG):
    out = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def operator_identity(run_id):
    """A ServiceAccount bound to the chart's rules, and a kubeconfig with its token."""
    ns = f"bench-operator-{run_id}"
    rules = yaml.safe_load((ROOT / "charts/mcp-kafka-operator/files/operator-clusterrole-rules.yaml").read_text())
    lease_rules = yaml.safe_load((ROOT / "charts/mcp-kafka-operator/files/operator-lease-rules.yaml").read_text())
    subject = [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": ns}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ns}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "lease", "namespace": ns}, "rules": lease_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "lease", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease"}, "subjects": subject},
    ]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    token = kubectl("create", "token", "operator", "-n", ns, "--duration", "2h").strip()
    config = yaml.safe_load(pathlib.Path(KUBECONFIG).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = pathlib.Path(tempfile.mkdtemp()) / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return ns, f"system:serviceaccount:{ns}:operator", str(path)


def servers_yaml(run_id, count):
    docs = []
    for i in range(NAMESPACES):
        ns = f"bench-{run_id}-{i}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"mcpkafka.dev/environment": "dev"}}})
    for i in range(count):
        docs.append({
            "apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer",
            "metadata": {"name": f"s{i}", "namespace": f"bench-{run_id}-{i % NAMESPACES}"},
            "spec": {
                "environment": "dev",
                "kafka": {"bootstrapServers": [os.environ["KAFKA_BOOTSTRAP_SERVERS"]]},
                "tools": ["list_topics", "describe_topic", "consume_messages"],
                "clients": [{"name": "agent", "serviceAccountName": "agent", "tools": ["list_topics", "describe_topic"]}],
            },
        })
    return yaml.safe_dump_all(docs)


def reconciled(run_id):
    items = json.loads(kubectl("get", "mks", "-A", "-o", "json"))["items"]
    done = 0
    for s in items:
        if not s["metadata"]["namespace"].startswith(f"bench-{run_id}-"):
            continue
        st = s.get("status") or {}
        if st.get("observedGeneration") == s["metadata"].get("generation") and any(
            c["type"] == "Reconciled" and c["status"] == "True" for c in st.get("conditions", [])
        ):
            done += 1
    return done


def reconciled_or_present(run_id):
    """How many of the benchmark's servers still exist."""
    items = json.loads(kubectl("get", "mks", "-A", "-o", "json"))["items"]
    return sum(1 for s in items if s["metadata"]["namespace"].startswith(f"bench-{run_id}-"))


def peak_rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def writes_by(user, since):
    counts = {}
    with AUDIT_LOG.open() as f:
        f.seek(since)
        for line in f:
            e = json.loads(line)
            if e.get("user", {}).get("username") != user:
                continue
            o = e.get("objectRef", {})
            key = f"{e['verb']} {o.get('resource')}{'/' + o['subresource'] if o.get('subresource') else ''}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--operator", required=True)
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--steady-seconds", type=int, default=120)
    args = p.parse_args()
    run_id = format(int(time.time()) % 0xFFFFFF, "x")

    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    op_ns, op_user, op_kubeconfig = operator_identity(run_id)
    log = open(pathlib.Path(os.environ["MCPK_LOG_DIR"]) / f"bench-operator-{run_id}.log", "w")
    env = dict(os.environ, KUBECONFIG=op_kubeconfig, RUST_LOG="warn")
    operator = subprocess.Popen([args.operator, "run", "--metrics-address", "127.0.0.1:0", "--lease-namespace", op_ns],
                                env=env, stdout=log, stderr=log)
    try:
        time.sleep(2)
        idle_rss = rss_mib(operator.pid)
        # Create everything at once, then time until the operator has reconciled all.
        started = time.monotonic()
        kubectl("apply", "--server-side", "-f", "-", stdin=servers_yaml(run_id, args.servers))
        created = time.monotonic() - started
        done = 0
        while done < args.servers:
            time.sleep(1)
            done = reconciled(run_id)
            if time.monotonic() - started > 900:
                sys.exit(f"gave up: {done}/{args.servers} reconciled after 900 s; log: {log.name}")
        all_reconciled = time.monotonic() - started
        peak = peak_rss_mib(operator.pid)

        # Steady state: whatever the operator writes now is churn.
        time.sleep(5)
        mark = AUDIT_LOG.stat().st_size
        time.sleep(args.steady_seconds)
        steady = writes_by(op_user, mark)
        lease_writes = sum(v for k, v in steady.items() if "leases" in k)
        other_writes = {k: v for k, v in steady.items() if "leases" not in k}
        end_rss = rss_mib(operator.pid)
        peak = max(peak, peak_rss_mib(operator.pid))

        print(f"\noperator benchmark: {args.servers} McpKafkaServers in {NAMESPACES} namespaces (1 client each), 2 cores, release build")
        print(f"{'figure':<52} {'value':>12}  target")
        print(f"{'creating the servers (kubectl apply)':<52} {created:>10.1f} s")
        print(f"{'time until all Reconciled=True (from first create)':<52} {all_reconciled:>10.1f} s  <= 60 s")
        print(f"{'operator RSS idle (before)':<52} {idle_rss:>8.1f} MiB")
        print(f"{'operator peak RSS':<52} {peak:>8.1f} MiB  <= 64 MiB")
        print(f"{'operator RSS after steady state':<52} {end_rss:>8.1f} MiB")
        print(f"{f'API writes in {args.steady_seconds} s of steady state (not Lease)':<52} {sum(other_writes.values()):>12}  0")
        print(f"{f'Lease renewals in {args.steady_seconds} s (leader election)':<52} {lease_writes:>12}")
        if other_writes:
            print("steady-state writes:", other_writes)
        # Delete the benchmark's namespaces while the operator runs, so that
        # its finalizers are removed and nothing is left behind.
        cleanup = time.monotonic()
        kubectl("delete", "namespace", "--wait=false", *[f"bench-{run_id}-{i}" for i in range(NAMESPACES)])
        while reconciled_or_present(run_id):
            time.sleep(2)
        print(f"{'deleting them all (finalizers, GC)':<52} {time.monotonic() - cleanup:>10.1f} s")
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()


if __name__ == "__main__":
    main()
