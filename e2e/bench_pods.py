"""Benchmark of the product on the ground's node (prints figures, never
pass/fail). Run through `e2e/bench-pods`, inside the ground's network
namespace:

  - the node's idle CPU (% of one core) and RSS: kubelet, containerd,
    kube-proxy, kube-scheduler, CoreDNS and the containerd shims, first with
    no Pod of ours, then with the chart's two operator Pods and one idle
    sidecar Pod (their own processes counted apart);
  - for ROUNDS servers one after another: the time from `kubectl apply` of
    an McpKafkaServer to its sidecar Pod Ready, and to its first answered
    tool call through the Service (the official MCP Python SDK on the
    ClusterIP);
  - the sidecar Pod's RSS after a few calls, next to the same release binary
    run as a process with the same config and calls.
"""

import argparse
import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = os.environ
STATE = pathlib.Path(ENV["MCPK_STACK_DIR"])
NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy", "kube-scheduler", "coredns")
SYS_NS = "bench-pods-operator"
# The chart names its Deployment after the release.
RELEASE = "mcp-kafka-operator"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

sys.path.insert(0, str(ROOT / "e2e" / "tests" / "python"))
from mcp_session import mcp_session  # noqa: E402  (the tests' one MCP session helper)


def kubectl(*args, stdin=None, check=True):
    out = subprocess.run([ENV["MCPK_KUBECTL"], "--kubeconfig", ENV["KUBECONFIG"], *args], input=stdin,
                         capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def helm(*args, check=True):
    out = subprocess.run([ENV["MCPK_HELM"], "--kubeconfig", ENV["KUBECONFIG"], *args], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        sys.exit(f"helm {' '.join(args)}: {out.stderr.strip()}")


def apply(*docs):
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))


def wait(what, check, timeout=300, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # not there yet
            found = None
        if found:
            return found
        time.sleep(every)
    sys.exit(f"gave up waiting for {what}")


def children(pid):
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task") for c in
                pathlib.Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return []


def cpu_ticks(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid):
    return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def node_pids():
    """The node's own processes, and every shim's process tree (the Pods')."""
    own = {}
    for name in NODE_PROCESSES:
        own[name] = int((STATE / "pids" / f"{name}.pid").read_text())
    shims, pods = [], []
    for pid in children(own["containerd"]) + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if pathlib.Path(f"/proc/{pid}/comm").read_text().strip().startswith("containerd-shim") and pid not in shims:
                shims.append(pid)
        except OSError:
            pass
    for shim in shims:
        todo = children(shim)
        while todo:
            pid = todo.pop()
            pods.append(pid)
            todo += children(pid)
    return own, shims, pods


def usage(seconds):
    """CPU (% of one core over `seconds`) and RSS (MiB) of the node's
    processes, the shims, and the Pods' processes."""
    own, shims, pods = node_pids()
    groups = {"node": list(own.values()), "shims": shims, "pods": pods}

    def sample():
        total = {}
        for group, pids in groups.items():
            ticks = 0
            for pid in pids:
                try:
                    ticks += cpu_ticks(pid)
                except OSError:
                    pass
            total[group] = ticks
        return total

    before = sample()
    time.sleep(seconds)
    after = sample()
    result = {}
    for group, pids in groups.items():
        rss = 0.0
        for pid in pids:
            try:
                rss += rss_mib(pid)
            except OSError:
                pass
        result[group] = (100.0 * (after[group] - before[group]) / TICKS / seconds, rss, len(pids))
    return result


def print_usage(title, figures):
    print(f"\n{title}")
    for group, (cpu, rss, count) in figures.items():
        print(f"  {group:<6} {count:>3} processes   CPU {cpu:5.2f}% of a core   RSS {rss:7.1f} MiB")


def call(url, token, host=None, calls=1):
    """`calls` list_topics calls in one MCP session; raises on a tool error."""
    async def work(session):
        for _ in range(calls):
            result = await session.call_tool("list_topics", {})
            if result.is_error:
                raise RuntimeError(str(result.content))
        return True
    return asyncio.run(mcp_session(url, token, work, host))


def server_docs(ns, name):
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {"mcpkafka.dev/environment": "dev"},
                      "annotations": {ENV["MCPK_POD_OPT_IN_ANNOTATION"]: ""}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent", "namespace": ns}},
        {"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer", "metadata": {"name": name, "namespace": ns},
         "spec": {"environment": "dev", "kafka": {"bootstrapServers": [ENV["MCPK_KAFKA_POD_BOOTSTRAP"]]},
                  "tools": ["list_topics"], "replicas": 1,
                  "clients": [{"name": "agent", "serviceAccountName": "agent", "tools": ["list_topics"]}]}},
    ]


def pod_ready(ns, name):
    out = kubectl("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "json")
    pods = json.loads(out)["items"]
    return pods and all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                        for p in pods) and pods


def steps(ns, name):
    """Where a round's time went, from the objects' own timestamps (whole
    seconds, the apiserver's and kubelet's clocks): server created, then its
    Deployment, its Pod, the Pod scheduled, the container started, Ready."""
    from datetime import datetime

    def at(stamp):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    server = json.loads(kubectl("get", "mcpkafkaserver", name, "-n", ns, "-o", "json"))
    deployment = json.loads(kubectl("get", "deployment", f"{name}-mcp", "-n", ns, "-o", "json"))
    pod = pod_ready(ns, name)[0]
    conditions = {c["type"]: c["lastTransitionTime"] for c in pod["status"]["conditions"]}
    zero = at(server["metadata"]["creationTimestamp"])
    marks = [("Deployment", deployment["metadata"]["creationTimestamp"]), ("Pod", pod["metadata"]["creationTimestamp"]),
             ("scheduled", conditions["PodScheduled"]),
             ("started", pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]), ("Ready", conditions["Ready"])]
    return ", ".join(f"{what} +{at(stamp) - zero:.0f}" for what, stamp in marks)


def token(ns, name):
    return kubectl("create", "token", "agent", "-n", ns, "--audience", f"mcpkafka.dev/{ns}/{name}").strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sidecar_pid(pod):
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    ctr = ENV["MCPK_CTR"].strip('"').split()
    out = subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True, timeout=30).stdout
    return next(int(line.split()[1]) for line in out.splitlines() if line.startswith(cid))


def process_sidecar(ns, name, sidecar_bin, workdir):
    """The release binary as a process with the Pod's config (listen
    addresses moved to loopback) and the sidecar ServiceAccount's token."""
    config = kubectl("get", "configmap", f"{name}-mcp-config", "-n", ns, "-o", "jsonpath={.data.config\\.yaml}")
    port, metrics = free_port(), free_port()
    config = config.replace("0.0.0.0:8090", f"127.0.0.1:{port}").replace("0.0.0.0:9090", f"127.0.0.1:{metrics}")
    (workdir / "sidecar.yaml").write_text(config)
    kubeconfig = workdir / "sidecar.kubeconfig"
    kubeconfig.write_text(pathlib.Path(ENV["KUBECONFIG"]).read_text())
    sa_token = kubectl("create", "token", f"{name}-mcp", "-n", ns, "--duration", "1h").strip()
    subprocess.run([ENV["MCPK_KUBECTL"], "--kubeconfig", str(kubeconfig), "config", "set-credentials", "sidecar", f"--token={sa_token}"],
                   check=True, capture_output=True)
    subprocess.run([ENV["MCPK_KUBECTL"], "--kubeconfig", str(kubeconfig), "config", "set-context", "--current", "--user=sidecar"],
                   check=True, capture_output=True)
    process = subprocess.Popen([str(sidecar_bin), "--config", str(workdir / "sidecar.yaml")],
                               env={**ENV, "KUBECONFIG": str(kubeconfig), "MALLOC_ARENA_MAX": "2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}/mcp"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sidecar", required=True, type=pathlib.Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=int, default=20)
    # Under the per-caller burst (100) of the default rate limit.
    parser.add_argument("--calls", type=int, default=90)
    args = parser.parse_args()

    print_usage(f"node idle, no Pod of ours ({args.idle_seconds} s):", usage(args.idle_seconds))
    kubectl("delete", "namespace", SYS_NS, "--ignore-not-found", "--wait=true")
    apply({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": SYS_NS, "annotations": {ENV["MCPK_POD_OPT_IN_ANNOTATION"]: ""}}})
    installed = time.monotonic()
    helm("install", RELEASE, str(ROOT / "charts/mcp-kafka-operator"), "-n", SYS_NS, "--set", "replicas=2",
         "--set", f"config.environments.dev.clusterId={ENV['KAFKA_CLUSTER_ID']}")
    kubectl("rollout", "status", f"deployment/{RELEASE}", "-n", SYS_NS, "--timeout=180s")
    rolled_out = time.monotonic() - installed

    def lease_holder():
        holder = kubectl("get", "lease", RELEASE, "-n", SYS_NS, "-o", "jsonpath={.spec.holderIdentity}", check=False)
        return holder and f"pod/{holder}" in kubectl("get", "pods", "-n", SYS_NS, "-o", "name").split()

    # Until one Pod leads, no server is reconciled: the rounds below start after.
    wait("an operator Pod holding the Lease", lease_holder)
    print(f"\nhelm install -> 2 operator Pods Ready {rolled_out:.1f} s -> one holds the Lease {time.monotonic() - installed:.1f} s")
    namespaces = []
    try:
        print("\nkubectl apply of a server -> its sidecar Pod Ready -> first answered tool call through the Service:")
        for i in range(args.rounds):
            ns, name = f"bench-pods-{i}-{os.getpid()}", "bench"
            namespaces.append(ns)
            started = time.monotonic()
            apply(*server_docs(ns, name))
            wait("the sidecar Pod Ready", lambda: pod_ready(ns, name))
            ready_at = time.monotonic() - started
            ip = kubectl("get", "service", f"{name}-mcp", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
            bearer = token(ns, name)
            wait("a tool call", lambda: call(f"http://{ip}:8090/mcp", bearer, f"{name}-mcp.{ns}.svc.cluster.local:8090"))
            answered = time.monotonic() - started
            print(f"  round {i + 1}: Pod Ready {ready_at:5.1f} s   first call answered {answered:5.1f} s   ({steps(ns, name)})")
        # The last server stays for the RSS and idle figures; the others go.
        for ns in namespaces[:-1]:
            kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s")
        ns = namespaces[-1]
        pod = pod_ready(ns, name)[0]
        call(f"http://{ip}:8090/mcp", bearer, f"{name}-mcp.{ns}.svc.cluster.local:8090", calls=args.calls)
        time.sleep(2)
        pod_rss = rss_mib(sidecar_pid(pod))
        with tempfile.TemporaryDirectory() as tmp:
            process, url = process_sidecar(ns, name, args.sidecar, pathlib.Path(tmp))
            try:
                wait("the process sidecar answering", lambda: call(url, bearer))
                call(url, bearer, calls=args.calls)
                time.sleep(2)
                process_rss = rss_mib(process.pid)
            finally:
                process.terminate()
                process.wait(timeout=30)
        print(f"\nsidecar RSS after {args.calls + 1} list_topics calls: Pod {pod_rss:.1f} MiB, "
              f"process {process_rss:.1f} MiB (same release binary, same config)")
        print_usage(f"node idle with 2 operator Pods and 1 sidecar Pod ({args.idle_seconds} s):", usage(args.idle_seconds))
    finally:
        # Before the operator goes: it removes its servers' finalizers.
        for ns in namespaces:
            kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=180s", check=False)
        helm("uninstall", RELEASE, "-n", SYS_NS, "--wait", check=False)
        kubectl("delete", "namespace", SYS_NS, "--ignore-not-found", "--wait=false", check=False)


if __name__ == "__main__":
    main()
