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
