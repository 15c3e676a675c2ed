"""The sidecar's config file: bad files stop it with a message naming the
field; a changed file is reloaded without dropping sessions; a broken
reload keeps the last good config and says so in logs and metrics."""

import subprocess
import time
import uuid
import urllib.request

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import sidecar_binary


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
        assert called.structured_content["error"]["code"] == "NOT_FOUND"
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        assert 'mcp_kafka_config_reloads_total{result="ok"} 1' in metrics
        assert 'mcp_kafka_config_reloads_total{result="invalid"} 1' in metrics
        assert "config reload rejected" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
