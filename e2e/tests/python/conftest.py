"""Shared fixtures for the Python-side tests: the local test ground
(e2e/stack up) as the Rust tests see it, read from e2e/.stack/env."""

import os
import pathlib
import socket

import pytest
from mcp_session import mcp_session

E2E_DIR = pathlib.Path(__file__).resolve().parents[2]
ENV_FILE = pathlib.Path(os.environ.get("MCPK_STACK_ENV", E2E_DIR / ".stack" / "env"))


def read_stack_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        pytest.fail(f"the test ground is not up ({ENV_FILE} is missing): run `e2e/stack up`", pytrace=False)
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    return env


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return read_stack_env()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ERROR_META_KEY = "mcpkafka.dev/error"


def tool_error(result) -> dict:
    """The typed error `{code, message, retriable}` of a tool error result.
    It is in the result's `_meta` (the SDK's `result.meta`), never in
    structuredContent, which clients check against the tool's output schema."""
    assert result.is_error, result
    return (result.meta or {})[ERROR_META_KEY]


def outcome(result) -> str:
    """"ok", or the error code of a tool error result."""
    return tool_error(result)["code"] if result.is_error else "ok"


def sidecar_binary() -> pathlib.Path:
    """The sidecar built by e2e/test (cargo build --workspace --bins)."""
    explicit = os.environ.get("MCPK_SIDECAR_BIN")
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", E2E_DIR.parent / "target"))
    path = pathlib.Path(explicit) if explicit else target / "debug" / "mcp-kafka-sidecar"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with `cargo build --bins` (e2e/test does)", pytrace=False)
    return path


class Sidecar:
    """A sidecar process on a free loopback port, stopped at the end of the test."""

    def __init__(self, args: list[str], port: int, log: pathlib.Path, env: dict[str, str] | None = None, listen: bool = True):
        """`listen`: pass --listen for the port (standalone mode); a config file names its own address."""
        import subprocess

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [str(sidecar_binary()), *(["--listen", f"127.0.0.1:{port}"] if listen else []), *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the sidecar exited ({self.proc.returncode}); log: {self.log}\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the sidecar was not ready after {timeout}s; log: {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        self._log_file.close()


@pytest.fixture
def start_sidecar(free_port, tmp_path, stack_env):
    """start_sidecar(*args): a running sidecar against the stack's Kafka."""
    started = []

    def start(*args: str, bootstrap: str | None = None, env: dict[str, str] | None = None, port: int | None = None) -> Sidecar:
        kafka = ["--bootstrap-servers", bootstrap or stack_env["KAFKA_BOOTSTRAP_SERVERS"]]
        extra = [] if "--config" in args else kafka
        port = port or (free_port if not started else _another_port())
        s = Sidecar([*extra, *args], port, tmp_path / f"sidecar{len(started)}.log", env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _another_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl(stack_env, *args, stdin=None) -> str:
    import subprocess

    out = subprocess.run([stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], *args],
                         input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def tool_grants(stack_env):
    """tool_grants(server, {sa: [tools] or None}): a new namespace with one
    ServiceAccount per key, each bound by a real Role to custom verbs (the
    tool names) on mcpkafkaservers/tools of `server`. Returns the namespace."""
    import json
    import subprocess
    import uuid

    made = []

    def make(server: str, grants: dict[str, list[str] | None]) -> str:
        ns = f"sidecar-auth-{uuid.uuid4().hex[:8]}"
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        for sa, verbs in grants.items():
            docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}})
            if verbs:
                docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": sa, "namespace": ns},
                             "rules": [{"apiGroups": ["mcpkafka.dev"], "resources": ["mcpkafkaservers/tools"],
                                        "resourceNames": [server], "verbs": verbs}]})
                docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": sa, "namespace": ns},
                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                             "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
        kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        made.append(ns)
        return ns

    yield make
    for ns in made:
        subprocess.run([stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "delete", "namespace", ns, "--wait=false"],
                       capture_output=True)


def kubeconfig_as(stack_env, namespace: str, service_account: str, path: pathlib.Path) -> pathlib.Path:
    """The admin kubeconfig with its credentials replaced by a 1-hour token
    of `service_account`: how a Pod of that ServiceAccount reaches the API."""
    import yaml

    token = kubectl(stack_env, "create", "token", service_account, "-n", namespace, "--duration", "1h").strip()
    config = yaml.safe_load(pathlib.Path(stack_env["KUBECONFIG"]).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def sa_token(stack_env, ns: str, sa: str, server: str, audience: str | None = None) -> str:
    """A TokenRequest token for `sa`, for the server's audience unless told."""
    return kubectl(stack_env, "create", "token", sa, "-n", ns, "--audience", audience or f"mcpkafka.dev/{ns}/{server}").strip()


async def as_caller(url: str, bearer: str, work):
    """Runs `work(session)` in an MCP session at `url`/mcp that presents `bearer`."""
    return await mcp_session(f"{url}/mcp", bearer, work)


def kafka_java(stack_env, main_class: str, *args: str) -> list[str]:
    """The command line of one of Kafka's own Java tools (the classpath e2e/stack
    resolved for the broker, which holds kafka-tools): a real Kafka client."""
    cache = pathlib.Path(os.environ.get("MCPK_CACHE_DIR") or pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "mcp-kafka-operator")
    classpath = (cache / f"kafka-{stack_env['MCPK_KAFKA_VERSION']}" / "classpath").read_text().strip()
    return ["java", "-Xms32m", "-Xmx128m", "-cp", classpath, main_class, *args]


class GroupMember:
    """A Kafka consumer (Kafka's console consumer) that joins `group` on
    `topic` and stays until stopped; it never commits offsets, so the group's
    committed offsets change only by what the test does."""

    def __init__(self, stack_env, topic: str, group: str, log: pathlib.Path, protocol: str = "classic"):
        import subprocess

        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            kafka_java(stack_env, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                       "--bootstrap-server", stack_env["KAFKA_BOOTSTRAP_SERVERS"], "--topic", topic, "--group", group,
                       "--consumer-property", f"group.protocol={protocol}",
                       "--consumer-property", "enable.auto.commit=false"),
            stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()  # the console consumer closes: it leaves the group
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
        self._log.close()


def consumer_group_rows(stack_env, group: str, what: str) -> list[list[str]]:
    """Kafka's own view of a group (kafka-consumer-groups --describe
    --members or --offsets): the table's rows, one list of columns each."""
    import subprocess

    out = subprocess.run(kafka_java(stack_env, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                                    "--bootstrap-server", stack_env["KAFKA_BOOTSTRAP_SERVERS"], "--describe",
                                    "--group", group, f"--{what}"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line.split() for line in out.stdout.splitlines() if line.split()[:1] == [group]]
