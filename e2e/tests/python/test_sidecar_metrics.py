"""cluster_metrics as the official MCP Python SDK sees it, against the test
ground's real Prometheus (scraping the broker's JMX exporter): listed only
where a metrics source is configured, with annotations and an output schema
its structured answers validate against; the kafka://metrics resource; a
window out of bounds is a typed INVALID_ARGUMENT."""

import json
import socket

import anyio
import jsonschema
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import tool_error


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metrics_server(stack_env, start_sidecar, tmp_path):
    """metrics_server(with_source): a dev sidecar asking for cluster_metrics,
    with the ground's Prometheus as its source or with none."""
    if "PROMETHEUS_URL" not in stack_env:
        pytest.fail("the test ground has no Prometheus (PROMETHEUS_URL): restart it with `e2e/stack up`", pytrace=False)

    def start(with_source: bool):
        port = _port()
        body = {
            "server": {"name": "metrics-sdk", "environment": "dev"},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": ["cluster_metrics", "list_topics"],
            "auth": {"mode": "none"},
        }
        if with_source:
            body["metrics"] = {"prometheus": {"url": stack_env["PROMETHEUS_URL"], "timeoutMs": 3000}}
        config = tmp_path / f"sidecar-{port}.json"
        config.write_text(json.dumps(body))
        sidecar = start_sidecar("--config", str(config), port=port)
        sidecar.wait_ready()
        return sidecar

    return start


def with_session(url: str, body):
    async def run():
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return anyio.run(run)


def test_cluster_metrics_is_listed_and_answers_within_its_schema(metrics_server):
    sidecar = metrics_server(with_source=True)

    async def body(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        answer = await session.call_tool("cluster_metrics", {"window": "5m", "top": 3})
        bad = await session.call_tool("cluster_metrics", {"window": "10y"})
        resources = [str(r.uri) for r in (await session.list_resources()).resources]
        read = await session.read_resource("kafka://metrics")
        return tools, answer, bad, resources, read

    tools, answer, bad, resources, read = with_session(sidecar.url, body)
    tool = tools["cluster_metrics"]
    a = tool.annotations
    assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint) == (True, False, True)
    assert set(tool.input_schema["properties"]) == {"window", "topic", "top"}
    assert tool.output_schema is not None
    assert not answer.is_error, answer
    jsonschema.Draft202012Validator(tool.output_schema).validate(answer.structured_content)
    cluster = answer.structured_content["cluster"]
    assert cluster["active_controllers"]["value"] == 1.0, cluster["active_controllers"]
    for name, figure in cluster.items():
        assert figure["unit"] and figure["query"], name
        # A figure is a value or a stated absence, never both, never neither.
        assert (figure["value"] is None) == ("missing" in figure), (name, figure)
    assert answer.structured_content["source"] == "prometheus"

    error = tool_error(bad)
    assert error["code"] == "INVALID_ARGUMENT", error
    assert "30s..24h" in error["message"]

    assert "kafka://metrics" in resources
    summary = json.loads(read.contents[0].text)
    jsonschema.Draft202012Validator(tool.output_schema).validate(summary)
    assert summary["window"] == "300s"


def test_without_a_source_the_tool_is_not_there(metrics_server):
    sidecar = metrics_server(with_source=False)

    async def body(session):
        tools = {t.name for t in (await session.list_tools()).tools}
        call = await session.call_tool("cluster_metrics", {})
        resources = [str(r.uri) for r in (await session.list_resources()).resources]
        return tools, call, resources

    tools, call, resources = with_session(sidecar.url, body)
    assert "list_topics" in tools and "cluster_metrics" not in tools, tools
    assert tool_error(call)["code"] == "NOT_FOUND"
    assert "kafka://metrics" not in resources
