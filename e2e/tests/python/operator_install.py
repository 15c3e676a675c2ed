"""The operator as a platform team installs it, on the test ground: the Helm
chart installed into its own namespace, and the operator binary run as its
pod would run (there is no kubelet here): the chart's ServiceAccount token,
the chart's rendered config, its Lease. Shared by the chart and end-to-end
tests."""

import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from conftest import E2E_DIR, kubeconfig_as, kubectl

ROOT = E2E_DIR.parent
CHART = ROOT / "charts" / "mcp-kafka-operator"


def run(*args, stdin=None):
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=300)


def helm(stack_env, *args, check=True):
    out = run(stack_env["MCPK_HELM"], "--kubeconfig", stack_env["KUBECONFIG"], *args)
    if check:
        assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stderr}"
    return out


def binary(name: str) -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with `cargo build --bins` (e2e/test does)", pytrace=False)
    return path


def server(stack_env, namespace, name):
    out = run(stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "get", "mks", name, "-n", namespace, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def reconciled(stack_env, namespace, name):
    """The server once the operator has reconciled its current generation, else None."""
    found = server(stack_env, namespace, name)
    if found is None:
        return None
    status = found.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    current = status.get("observedGeneration") == found["metadata"]["generation"]
    return found if current and conditions.get("Reconciled", {}).get("status") == "True" else None


def start_operator_as_its_pod(stack_env, namespace, fullname, manifest, tmp_path):
    """The operator binary as the chart's Pod would run it: the chart's
    ServiceAccount token, the chart's rendered config (the ConfigMap in
    `manifest`, the release's objects), its Lease. Returns the process and
    its open log file (tmp_path / operator.log)."""
    kubeconfig = kubeconfig_as(stack_env, namespace, fullname, tmp_path / "operator.kubeconfig")
    config_map = next(d for d in manifest if d["kind"] == "ConfigMap")
    (tmp_path / "operator-config.yaml").write_text(config_map["data"]["config.yaml"])
    log_file = (tmp_path / "operator.log").open("wb")
    process = subprocess.Popen(
        [str(binary("mcp-kafka-operator")), "run", "--config", str(tmp_path / "operator-config.yaml"),
         "--metrics-address", "127.0.0.1:0", "--lease-namespace", namespace, "--lease-name", fullname],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": f"{fullname}-local"},
        stdout=log_file, stderr=subprocess.STDOUT)
    return process, log_file


def stop_operator(process, log_file):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log_file.close()


class InstalledOperator:
    """`helm install` of the chart, then the operator process. Whatever is
    applied through `apply` is deleted while the operator still runs (it
    removes the servers' finalizers), before the operator stops."""

    def __init__(self, stack_env, tmp_path, values=("--set", "replicas=1")):
        self.stack_env = stack_env
        self.values = list(values)
        self.release = f"mko-{uuid.uuid4().hex[:6]}"
        self.namespace = self.release
        self.fullname = f"{self.release}-mcp-kafka-operator"
        self.service_account = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        self.log = tmp_path / "operator.log"
        self._tmp = tmp_path
        self._applied = []
        self.process = None
        helm(stack_env, "install", self.release, str(CHART), "-n", self.namespace, "--create-namespace", *self.values)
        self.manifest = [d for d in yaml.safe_load_all(helm(stack_env, "get", "manifest", self.release, "-n", self.namespace).stdout) if d]

    def start(self):
        self.process, self._log_file = start_operator_as_its_pod(self.stack_env, self.namespace, self.fullname, self.manifest, self._tmp)
        return self

    def apply(self, manifest, field_manager="argocd-controller"):
        """Server-side apply of a file or YAML text, as a GitOps tool would."""
        if isinstance(manifest, pathlib.Path):
            kubectl(self.stack_env, "apply", "--server-side", f"--field-manager={field_manager}", "-f", str(manifest))
        else:
            kubectl(self.stack_env, "apply", "--server-side", f"--field-manager={field_manager}", "-f", "-", stdin=manifest)
        self._applied.append(manifest)

    def wait_reconciled(self, servers, timeout=120):
        deadline = time.monotonic() + timeout
        while not all(reconciled(self.stack_env, ns, name) for ns, name in servers):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not reconciled: {servers}\n{self.log.read_text()[-3000:]}"
            time.sleep(0.5)
        return [reconciled(self.stack_env, ns, name) for ns, name in servers]

    def close(self):
        for manifest in reversed(self._applied):
            args = ["-f", str(manifest)] if isinstance(manifest, pathlib.Path) else ["-f", "-"]
            run(self.stack_env["MCPK_KUBECTL"], "--kubeconfig", self.stack_env["KUBECONFIG"], "delete", "--timeout=60s",
                "--ignore-not-found", *args, stdin=None if isinstance(manifest, pathlib.Path) else manifest)
        if self.process is not None:
            stop_operator(self.process, self._log_file)
        helm(self.stack_env, "uninstall", self.release, "-n", self.namespace, check=False)
        run(self.stack_env["MCPK_KUBECTL"], "--kubeconfig", self.stack_env["KUBECONFIG"], "delete", "namespace", self.namespace, "--wait=false")


@pytest.fixture
def installed_operator(stack_env, tmp_path):
    """The chart installed and the operator running with its ServiceAccount."""
    installed = InstalledOperator(stack_env, tmp_path)
    try:
        yield installed
    finally:
        installed.close()
