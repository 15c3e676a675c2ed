"""The sidecar's config file: bad files stop it with a message naming the
field; a changed file is reloaded without dropping sessions; a broken
reload keeps the last good config and says so in logs and metrics."""

import subprocess
import time
import uuid
import urllib.error
import urllib.request

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import outcome, sidecar_binary, tool_error


def config_text(bootstrap: str, port: int, tools: str, extra: str = "") -> str:
    return (
        "server: {name: reload-test, environment: dev}\n"
        f"listen: {{address: '127.0.0.1:{port}'}}\n"
        f"kafka: {{bootstrapServers: ['{bootstrap}']}}\n"
        f"tools: [{tools}]\n"
        "auth: {mode: none}\n" + extra
    )


def test_an_invalid_config_stops_the_process_naming_the_field(tmp_path, stack_env):
    cases = {
        "kafka.bootstrapServers": "kafka: {bootstrapServers: []}",
        "tools[0]": "tools: [drop_cluster]",
        "kafka.bootstrapServer": "kafka: {bootstrapServer: ['x:1']}",
    }
    for field, broken in cases.items():
        text = config_text(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 1, "list_topics")
        key = broken.split(":")[0]
        text = "\n".join(broken if line.startswith(key + ":") else line for line in text.splitlines())
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        run = subprocess.run([str(sidecar_binary()), "--config", str(path)], capture_output=True, timeout=30)
        assert run.returncode != 0, field
        assert f"`{field}`" in run.stderr.decode(), run.stderr.decode()


def test_a_changed_config_is_reloaded_in_the_same_session(tmp_path, stack_env, free_port):
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    path = tmp_path / "sidecar.yaml"
    path.write_text(config_text(bootstrap, free_port, "list_topics"))
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(sidecar_binary()), "--config", str(path)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{free_port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)

        async def names(session):
            return sorted(t.name for t in (await session.list_tools()).tools)

        async def until(session, expected):
            for _ in range(100):  # the file is polled every 2 s
                got = await names(session)
                if got == expected:
                    return got
                await anyio.sleep(0.1)
            return await names(session)

        async def scenario():
            async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    first = await names(session)
                    path.write_text(config_text(bootstrap, free_port, "list_topics, describe_topic"))
                    second = await until(session, ["describe_topic", "list_topics"])
                    path.write_text("server: {name: [this is not valid")
                    await anyio.sleep(5)  # two polls: the broken file has been seen
                    third = await names(session)
                    called = await session.call_tool("describe_topic", {"topic": f"no-such-{uuid.uuid4().hex}"})
                    return first, second, third, called

        first, second, third, called = anyio.run(scenario)
        assert first == ["list_topics"]
        assert second == ["describe_topic", "list_topics"], "the new config was not applied"
        assert third == second, "a broken file replaced the last good config"
        assert tool_error(called)["code"] == "NOT_FOUND"
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        assert 'mcp_kafka_config_reloads_total{result="ok"} 1' in metrics
        assert 'mcp_kafka_config_reloads_total{result="invalid"} 1' in metrics
        assert "config reload rejected" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_cluster_id_fence_refuses_every_call_and_readiness_on_another_cluster(tmp_path, stack_env, start_sidecar):
    import json

    def run_with(expected_id, port):
        path = tmp_path / f"fence-{expected_id}.yaml"
        path.write_text(json.dumps({
            "server": {"name": "fence-test", "environment": "dev"},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]], "expectedClusterId": expected_id},
            "tools": ["list_topics", "cluster_status"],
            "auth": {"mode": "none"},
        }))
        return start_sidecar("--config", str(path), port=port)

    def readyz(url):
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    async def calls(url):
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return [await session.call_tool(t, {}) for t in ("list_topics", "cluster_status")]

    from conftest import _another_port

    # Fenced to a cluster that is not the one at the bootstrap address.
    wrong = run_with("NotTheLocalCluster0000", _another_port())
    for _ in range(100):
        status, body = readyz(wrong.url)
        if "fenced" in body and "NotTheLocalCluster0000" in body:
            break
        time.sleep(0.2)
    assert status == 503 and stack_env["KAFKA_CLUSTER_ID"] in body, (status, body)
    for result in anyio.run(calls, wrong.url):
        assert result.is_error and tool_error(result)["code"] == "FENCED", result

    # Fenced to the right one: ready, and calls go through.
    right = run_with(stack_env["KAFKA_CLUSTER_ID"], _another_port())
    right.wait_ready()
    assert all(not r.is_error for r in anyio.run(calls, right.url))


def test_prod_mutations_need_an_open_window_and_staging_and_prod_are_two_phase(tmp_path, stack_env, start_sidecar):
    import datetime
    import json

    from conftest import _another_port

    topic = f"env-rules-{uuid.uuid4().hex[:8]}"

    def run_with(environment, window=None):
        port = _another_port()
        config = {
            "server": {"name": "env-test", "environment": environment},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": ["list_topics", "create_topic", "create_partitions"],
            "auth": {"mode": "none"},
        }
        if window:
            config["breakGlass"] = window
        if environment != "dev":
            # auth none is for dev only: these servers say their rule explicitly instead.
            config["server"]["environment"] = "dev"
            config["mutations"] = {"prod": "breakGlass", "staging": "twoPhase"}[environment]
        path = tmp_path / f"{environment}-{port}.yaml"
        path.write_text(json.dumps(config))
        sidecar = start_sidecar("--config", str(path), port=port)
        sidecar.wait_ready()
        return sidecar

    async def session_calls(url):
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = sorted(t.name for t in (await session.list_tools()).tools)
                direct = await session.call_tool("create_topic", {"topic": topic, "partitions": 1})
                planned = await session.call_tool("create_topic", {"topic": topic, "partitions": 1, "dry_run": True})
                return listed, direct, planned

    # Break-glass rule without a window: no mutation listed or callable.
    listed, direct, planned = anyio.run(session_calls, run_with("prod").url)
    assert listed == ["list_topics"]
    assert outcome(direct) == outcome(planned) == "PERMISSION_DENIED"
    assert "break-glass" in tool_error(direct)["message"]

    # An open window naming create_topic: only it is listed, planned, but not applied directly.
    import time

    closes = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=8)
    window = run_with("prod", {"until": closes.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason": "INC-1", "tools": ["create_topic"]})
    listed, direct, planned = anyio.run(session_calls, window.url)
    assert listed == ["create_topic", "list_topics"]
    assert outcome(direct) == "PERMISSION_DENIED" and "two-phase" in tool_error(direct)["message"]
    assert outcome(planned) == "ok"
    # The window closes by itself at `until`, with no config change.
    time.sleep(max(0.0, (closes - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.5)
    listed, _, planned = anyio.run(session_calls, window.url)
    assert listed == ["list_topics"] and outcome(planned) == "PERMISSION_DENIED"

    # A window that has ended is no window.
    past = "2026-01-01T00:00:00Z"
    listed, direct, _ = anyio.run(session_calls, run_with("prod", {"until": past, "reason": "old", "tools": ["create_topic"]}).url)
    assert listed == ["list_topics"] and outcome(direct) == "PERMISSION_DENIED"

    # Two-phase rule: listed and planned, never applied directly.
    listed, direct, planned = anyio.run(session_calls, run_with("staging").url)
    assert listed == ["create_partitions", "create_topic", "list_topics"]
    assert outcome(direct) == "PERMISSION_DENIED" and outcome(planned) == "ok"
    # Nothing of this created the topic: every apply was refused, every plan only planned.
    async def topics(url):
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.call_tool("list_topics", {"name_contains": topic})).structured_content["topics"]

    assert anyio.run(topics, run_with("staging").url) == []


class KubeletVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume: each
    key is a symlink `KEY -> ..data/KEY`, `..data` a symlink to a
    timestamped directory holding the files. An update writes a new
    timestamped directory, swaps `..data` atomically (a new symlink renamed
    over it) and removes the old directory: the file the sidecar was told to
    read is never written in place."""

    def __init__(self, root, files: dict[str, str]):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.current = self._write(files)
        (self.root / "..data").symlink_to(self.current)
        for key in files:
            (self.root / key).symlink_to(f"..data/{key}")

    def _write(self, files):
        import datetime
        import tempfile

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.")
        directory = tempfile.mkdtemp(prefix=stamp, dir=self.root)
        for key, text in files.items():
            (self.root / directory / key).write_text(text)
        return directory.rsplit("/", 1)[1]

    def update(self, files):
        import os
        import shutil

        new = self._write(files)
        (self.root / "..data_tmp").symlink_to(new)
        os.rename(self.root / "..data_tmp", self.root / "..data")
        shutil.rmtree(self.root / self.current)
        self.current = new


async def until_tools(session, expected, seconds=10.0):
    """The session's tools/list once it equals `expected` (the file is polled every 2 s), or the last one seen."""
    deadline = time.monotonic() + seconds
    while True:
        got = sorted(t.name for t in (await session.list_tools()).tools)
        if got == expected or time.monotonic() > deadline:
            return got
        await anyio.sleep(0.1)


def metric(url, line_start):
    metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return [line for line in metrics.splitlines() if line.startswith(line_start)]


def test_a_configmap_volume_updated_by_the_kubelet_symlink_swap_is_reloaded(tmp_path, stack_env, start_sidecar):
    from conftest import _another_port

    bootstrap, port = stack_env["KAFKA_BOOTSTRAP_SERVERS"], _another_port()
    volume = KubeletVolume(tmp_path / "etc" / "mcp-kafka", {"config.yaml": config_text(bootstrap, port, "list_topics")})
    sidecar = start_sidecar("--config", str(volume.root / "config.yaml"), port=port)
    sidecar.wait_ready()

    async def scenario():
        async with streamable_http_client(f"{sidecar.url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                first = await until_tools(session, ["list_topics"], 0)
                volume.update({"config.yaml": config_text(bootstrap, port, "list_topics, describe_topic")})
                added = await until_tools(session, ["describe_topic", "list_topics"])
                volume.update({"config.yaml": config_text(bootstrap, port, "describe_topic")})
                removed = await until_tools(session, ["describe_topic"])
                refused = await session.call_tool("list_topics", {})
                return first, added, removed, refused

    first, added, removed, refused = anyio.run(scenario)
    assert first == ["list_topics"]
    assert added == ["describe_topic", "list_topics"], "the swapped ..data symlink was not followed"
    assert removed == ["describe_topic"], "the second swap was not followed"
    assert refused.is_error, "a tool the new config dropped is still callable"
    # Each swap is one reload, and the old directory's removal is no event of its own.
    assert metric(sidecar.url, "mcp_kafka_config_reloads_total") == ['mcp_kafka_config_reloads_total{result="ok"} 2']
    assert "unreadable" not in sidecar.log.read_text()


def broker_connections(pid: int, port: int) -> set[int]:
    """The local ports of the established TCP connections process `pid` has to remote `port`:
    librdkafka keeps one per client and broker, so new clients are new ports."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                found.add(int(local.rsplit(":", 1)[1], 16))
    return found


def test_kafka_clients_are_rebuilt_only_when_the_connection_settings_change(tmp_path, stack_env, start_sidecar):
    """Observed from outside, on the process's sockets: a reload that changes
    only tools keeps every connection to the broker; one that changes the
    bootstrap servers (another name for the same broker) opens new ones and
    closes the old clients' connections."""
    from conftest import _another_port

    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    host, broker_port = bootstrap.rsplit(":", 1)
    assert host == "127.0.0.1", "the test reaches the same broker as localhost"
    other_name = f"localhost:{broker_port}"
    port = _another_port()
    path = tmp_path / "sidecar.yaml"
    path.write_text(config_text(bootstrap, port, "list_topics, describe_topic"))
    sidecar = start_sidecar("--config", str(path), port=port)
    sidecar.wait_ready()
    pid, broker_port = sidecar.proc.pid, int(broker_port)

    def settled():
        """The connection set once two looks across a health probe (every 2 s) agree."""
        last = broker_connections(pid, broker_port)
        for _ in range(10):
            time.sleep(2.5)
            now = broker_connections(pid, broker_port)
            if now == last:
                return now
            last = now
        return last

    async def scenario():
        async with streamable_http_client(f"{sidecar.url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()

                async def calls():
                    listed = await session.call_tool("list_topics", {})
                    described = await session.call_tool("describe_topic", {"topic": f"no-such-{uuid.uuid4().hex}"})
                    assert not listed.is_error and outcome(described) == "NOT_FOUND", (listed, described)

                await calls()
                before = await anyio.to_thread.run_sync(settled)
                path.write_text(config_text(bootstrap, port, "list_topics, describe_topic, cluster_status"))
                tools_changed = await until_tools(session, ["cluster_status", "describe_topic", "list_topics"])
                await calls()
                after_tools = await anyio.to_thread.run_sync(settled)
                path.write_text(config_text(other_name, port, "list_topics, describe_topic, cluster_status"))
                deadline = time.monotonic() + 20
                while True:
                    await anyio.sleep(1)
                    await calls()  # the same session, on the new clients
                    now = broker_connections(pid, broker_port)
                    if (now and not now & before) or time.monotonic() > deadline:
                        return before, tools_changed, after_tools, now

    before, tools_changed, after_tools, after_bootstrap = anyio.run(scenario)
    assert before, "no connection to the broker was seen"
    assert tools_changed == ["cluster_status", "describe_topic", "list_topics"]
    assert after_tools == before, f"a tools-only reload changed the Kafka connections: {before} -> {after_tools}"
    assert after_bootstrap, "no connection to the broker after the bootstrap change"
    assert not after_bootstrap & before, f"the old clients' connections stayed open: {before} -> {after_bootstrap}"
    assert metric(sidecar.url, "mcp_kafka_config_reloads_total") == ['mcp_kafka_config_reloads_total{result="ok"} 2']


def test_a_reload_that_switches_auth_mode_is_refused_and_the_old_mode_stays(tmp_path, stack_env, start_sidecar, tool_grants):
    import json

    from conftest import _another_port, as_caller, sa_token

    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]

    def config(port, mode, tools, namespace=None):
        return json.dumps({
            "server": {"name": "auth-switch", "environment": "dev", **({"namespace": namespace} if namespace else {})},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [bootstrap]},
            "tools": tools,
            "auth": {"mode": mode},
        })

    def initialize_without_token(url):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
        request = urllib.request.Request(f"{url}/mcp", data=body, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def wait_for_refusal(sidecar):
        for _ in range(50):  # the file is polled every 2 s
            if metric(sidecar.url, 'mcp_kafka_config_reloads_total{result="invalid"}'):
                return
            time.sleep(0.2)

    # Kubernetes to none: switching authentication off is refused, and the
    # tool added in the same file is not applied either (the file as a whole is refused).
    ns = tool_grants("auth-switch", {"reader": ["list_topics", "describe_topic"]})
    port = _another_port()
    path = tmp_path / "kubernetes.json"
    path.write_text(config(port, "kubernetes", ["list_topics"], ns))
    secured = start_sidecar("--config", str(path), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=port)
    secured.wait_ready()
    assert initialize_without_token(secured.url) == 401
    path.write_text(config(port, "none", ["list_topics", "describe_topic"]))
    wait_for_refusal(secured)
    assert initialize_without_token(secured.url) == 401, "auth.mode none was applied by a reload"

    async def names(session):
        return sorted(t.name for t in (await session.list_tools()).tools)

    assert anyio.run(as_caller, secured.url, sa_token(stack_env, ns, "reader", "auth-switch"), names) == ["list_topics"]
    assert metric(secured.url, "mcp_kafka_config_reloads_total") == ['mcp_kafka_config_reloads_total{result="invalid"} 1']
    log = secured.log.read_text()
    assert "config reload rejected" in log and "auth.mode changed from Kubernetes to None" in log, log

    # None to Kubernetes: refused too; callers without a token go on being served.
    port = _another_port()
    path = tmp_path / "none.json"
    path.write_text(config(port, "none", ["list_topics"]))
    open_server = start_sidecar("--config", str(path), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=port)
    open_server.wait_ready()
    path.write_text(config(port, "kubernetes", ["list_topics", "describe_topic"], ns))
    wait_for_refusal(open_server)

    async def anonymous():
        async with streamable_http_client(f"{open_server.url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await names(session), await session.call_tool("list_topics", {})

    listed, called = anyio.run(anonymous)
    assert listed == ["list_topics"] and not called.is_error, (listed, called)
    assert metric(open_server.url, "mcp_kafka_config_reloads_total") == ['mcp_kafka_config_reloads_total{result="invalid"} 1']
    assert "auth.mode changed from None to Kubernetes" in open_server.log.read_text()


def test_stdio_is_refused_with_kubernetes_auth_and_serves_with_none(tmp_path, stack_env):
    import json

    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    base = {
        "server": {"name": "stdio-test", "namespace": "default", "environment": "dev"},
        "listen": {"address": "127.0.0.1:1"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": ["list_topics"],
    }
    # Explicitly, and by default: a config file without `auth` means Kubernetes.
    for name, auth in {"explicit": {"auth": {"mode": "kubernetes"}}, "default": {}}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**base, **auth}))
        run = subprocess.run([str(sidecar_binary()), "--config", str(path), "--stdio"], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=30, env={"KUBECONFIG": stack_env["KUBECONFIG"]})
        assert run.returncode != 0, (name, run)
        assert "--stdio has no callers to authenticate: it is only for auth.mode none" in run.stderr.decode(), run.stderr.decode()
        assert run.stdout == b"", "nothing was served on stdout"

    # The control: the same file with auth.mode none serves MCP over stdio.
    path = tmp_path / "none.json"
    path.write_text(json.dumps({**base, "auth": {"mode": "none"}}))

    async def over_stdio():
        params = StdioServerParameters(command=str(sidecar_binary()), args=["--config", str(path), "--stdio"])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return sorted(t.name for t in (await session.list_tools()).tools)

    assert anyio.run(over_stdio) == ["list_topics"]
