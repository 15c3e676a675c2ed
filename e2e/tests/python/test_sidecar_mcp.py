"""The sidecar as an MCP client sees it: the official MCP Python SDK over
Streamable HTTP lists tools with schemas and annotations, calls them against
the real broker, reads resources, and gets typed errors."""

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import uuid

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import ERROR_META_KEY, tool_error
from raw_mcp import RawSession

OBSERVE = {
    "cluster_status", "list_brokers", "list_topics", "describe_topic", "describe_configs",
    "list_groups", "describe_group", "get_consumer_lag", "fetch_offsets", "consume_messages",
    "describe_acls",
}
MUTATE = {
    "create_topic", "delete_topic", "create_partitions", "update_topic_config",
    "publish_message", "delete_group", "reset_group_offsets",
}


def with_session(url: str, body):
    """Runs `body(session)` in one initialized MCP session."""

    async def run():
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                return await body(session, init)

    return anyio.run(run)


def test_tools_are_listed_with_schemas_and_annotations(start_sidecar):
    sidecar = start_sidecar("--tools", "all")
    sidecar.wait_ready()

    async def body(session, init):
        return init, (await session.list_tools()).tools

    init, tools = with_session(sidecar.url, body)
    assert init.server_info.name == "mcp-kafka-sidecar"
    by_name = {t.name: t for t in tools}
    assert set(by_name) == OBSERVE | MUTATE
    for name in OBSERVE:
        a = by_name[name].annotations
        assert a.read_only_hint is True and a.destructive_hint is False, name
    for name in MUTATE:
        assert by_name[name].annotations.read_only_hint is False, name
        assert "dry_run" in by_name[name].input_schema["properties"], name
    assert by_name["delete_topic"].annotations.destructive_hint is True
    assert by_name["create_topic"].annotations.idempotent_hint is True
    assert by_name["publish_message"].annotations.idempotent_hint is False
    assert all(t.annotations.open_world_hint is True for t in tools)
    assert set(by_name["create_topic"].input_schema["required"]) == {"topic", "partitions"}
    assert all(t.output_schema and t.output_schema.get("type") == "object" for t in tools)
    assert all(len(t.description) > 30 for t in tools)


def test_only_observe_tools_by_default_and_others_are_not_callable(start_sidecar):
    sidecar = start_sidecar()
    sidecar.wait_ready()

    async def body(session, _):
        names = {t.name for t in (await session.list_tools()).tools}
        refused = await session.call_tool("create_topic", {"topic": "never", "partitions": 1})
        return names, refused

    names, refused = with_session(sidecar.url, body)
    assert names == OBSERVE
    assert refused.is_error
    assert tool_error(refused)["code"] == "NOT_FOUND"


def test_calls_change_and_read_real_kafka_with_structured_results(start_sidecar):
    sidecar = start_sidecar("--tools", "observe,create_topic,publish_message")
    sidecar.wait_ready()
    topic = f"sdk-{uuid.uuid4().hex[:8]}"

    async def body(session, _):
        created = await session.call_tool("create_topic", {"topic": topic, "partitions": 3})
        for _ in range(100):  # metadata propagates asynchronously
            described = await session.call_tool("describe_topic", {"topic": topic})
            if not described.is_error and len(described.structured_content["partitions"]) == 3:
                break
            await anyio.sleep(0.1)
        sent = await session.call_tool("publish_message", {"topic": topic, "key": "k", "value": '{"n": 1}', "partition": 2})
        peek = await session.call_tool("consume_messages", {"topic": topic, "from": "earliest"})
        missing = await session.call_tool("describe_topic", {"topic": "no-such-" + topic})
        bad = await session.call_tool("describe_topic", {"topic": "../etc/passwd"})
        wrong_type = await session.call_tool("consume_messages", {"topic": topic, "max_messages": "many"})
        return created, described, sent, peek, missing, bad, wrong_type

    created, described, sent, peek, missing, bad, wrong_type = with_session(sidecar.url, body)
    assert not created.is_error and created.structured_content["created"] is True
    assert [p["partition"] for p in described.structured_content["partitions"]] == [0, 1, 2]
    assert json.loads(described.content[0].text) == described.structured_content
    assert sent.structured_content["partition"] == 2 and sent.structured_content["offset"] == 0
    assert [m["value"] for m in peek.structured_content["messages"]] == [{"json": {"n": 1}}]
    assert missing.is_error
    assert tool_error(missing) == {
        "code": "NOT_FOUND", "message": tool_error(missing)["message"], "retriable": False,
    }
    assert "does not exist" in missing.content[0].text
    assert bad.is_error and tool_error(bad)["code"] == "INVALID_ARGUMENT"
    assert wrong_type.is_error and tool_error(wrong_type)["code"] == "INVALID_ARGUMENT"
    assert "max_messages" in tool_error(wrong_type)["message"]
    # The peek read its partitions to their ends, which is routine: no
    # ERROR line (each end was one, "PartitionEOF", until 2026-12-03).
    errors = [line for line in sidecar.log.read_text().splitlines() if '"level":"ERROR"' in line]
    assert errors == [], errors[:3]


def test_an_error_result_carries_its_typed_error_in_meta_and_no_structured_content(start_sidecar):
    """Clients check any structuredContent against the tool's output schema
    (the TypeScript SDK fails such a result with -32602 "Structured content
    does not match the tool's output schema"), and that schema describes the
    success: an error has none. Its text starts with the stable code; its
    typed fields are in `_meta`."""
    sidecar = start_sidecar()
    sidecar.wait_ready()
    topic = f"no-such-{uuid.uuid4().hex[:8]}"

    async def body(session, _):
        return [
            await session.call_tool("describe_topic", {"topic": topic}),
            await session.call_tool("consume_messages", {"topic": topic, "max_messages": "many"}),
            await session.call_tool("create_topic", {"topic": topic, "partitions": 1}),
        ]

    results = with_session(sidecar.url, body)
    for result, code in zip(results, ["NOT_FOUND", "INVALID_ARGUMENT", "NOT_FOUND"]):
        assert result.is_error, result
        assert result.structured_content is None and "structured_content" not in result.model_fields_set, result
        error = result.meta[ERROR_META_KEY]
        assert set(error) == {"code", "message", "retriable"}, error
        assert (error["code"], error["retriable"]) == (code, False), error
        assert [c.type for c in result.content] == ["text"]
        assert result.content[0].text == f"{code}: {error['message']}"
    assert topic in tool_error(results[0])["message"]


def a_broker_that_never_answers():
    """A loopback port that accepts connections and never says a word: every
    Kafka request of a sidecar pointed at it waits out its timeout."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, held


def metric_value(url, name):
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_a_client_that_hangs_up_leaves_no_request_in_flight_and_its_call_is_still_audited(start_sidecar):
    """A client that gives up drops the request's future in the server: the
    in-flight gauge must still come down, and the call (rmcp runs it in a
    task of its own) still ends and leaves its audit record."""
    import http.client
    import socket

    listener, held = a_broker_that_never_answers()
    try:
        sidecar = start_sidecar(bootstrap=f"127.0.0.1:{listener.getsockname()[1]}")
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{sidecar.url}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the sidecar never served /healthz"
                time.sleep(0.1)
        # 2026-07-28 requests (no session): the answer to each is the HTTP
        # response itself, so the request is in flight until the call ends.
        for i in range(3):
            body = json.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {
                "name": "list_topics", "arguments": {},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {},
                          "io.modelcontextprotocol/clientInfo": {"name": "impatient", "version": "1"}}}})
            conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=1)
            conn.request("POST", "/mcp", body=body, headers={
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "list_topics"})
            with pytest.raises(socket.timeout):
                conn.getresponse()  # the call waits for Kafka: the client gives up after 1 s
            conn.close()

        deadline = time.monotonic() + 5
        while (inflight := metric_value(sidecar.url, "mcp_kafka_inflight_requests")) != 0:
            assert time.monotonic() < deadline, f"{inflight} requests still counted in flight after their clients left"
            time.sleep(0.1)

        def audited():
            return [json.loads(line) for line in sidecar.log.read_text().splitlines()
                    if '"mcp-kafka-sidecar.audit/v1"' in line and '"list_topics"' in line]

        deadline = time.monotonic() + 90  # each call waits out the Kafka timeout (10 s) in its own task
        while len(records := audited()) < 3:
            assert time.monotonic() < deadline, f"calls whose clients left were not audited: {records}"
            time.sleep(0.5)
        assert [(r["decision"], r["outcome"] != "ok") for r in records] == [("allow", True)] * 3, records
        assert sidecar.proc.poll() is None, "the sidecar exited"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_session_ends_on_delete_with_a_status_the_sdks_take(start_sidecar, caplog):
    """DELETE ends a session (MCP, "Session Management"). The Python SDK
    takes 200 or 204 there and logs "Session termination failed" for any
    other status (rmcp's own answer is 202): the sidecar answers 204, and
    the session is gone."""
    sidecar = start_sidecar()
    sidecar.wait_ready()
    session = RawSession(sidecar.port)
    assert session.initialize().status == 200
    assert session.call("list_topics").status == 200
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)
    conn.request("DELETE", "/mcp", headers=session.headers())
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 204
    assert session.call("list_topics").status == 404, "the session outlived its DELETE"

    async def list_tools(session, init):
        return await session.list_tools()

    with caplog.at_level(logging.DEBUG, logger="mcp.client.streamable_http"):
        assert with_session(sidecar.url, list_tools).tools
    ended = [r.getMessage() for r in caplog.records if "termination" in r.getMessage().lower()]
    assert not [m for m in ended if "failed" in m.lower()], ended


def test_resources_list_and_read_json(start_sidecar):
    sidecar = start_sidecar()
    sidecar.wait_ready()

    async def body(session, _):
        resources = await session.list_resources()
        templates = await session.list_resource_templates()
        brokers = await session.read_resource("kafka://brokers")
        return resources, templates, brokers

    resources, templates, brokers = with_session(sidecar.url, body)
    assert {str(r.uri) for r in resources.resources} == {"kafka://brokers", "kafka://topics", "kafka://consumer-groups"}
    assert [t.uri_template for t in templates.resource_templates] == ["kafka://topics/{name}"]
    assert json.loads(brokers.contents[0].text)["brokers"][0]["id"] == 1


def post_initialize(url: str, host: str) -> int:
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }).encode()
    req = urllib.request.Request(f"{url}/mcp", data=body, method="POST", headers={
        "Host": host, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
    })
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_host_header_allow_list(start_sidecar):
    sidecar = start_sidecar("--allowed-host", "orders-mcp.team-a.svc")
    sidecar.wait_ready()
    assert post_initialize(sidecar.url, f"127.0.0.1:{sidecar.port}") == 200
    assert post_initialize(sidecar.url, "orders-mcp.team-a.svc") == 200
    assert 400 <= post_initialize(sidecar.url, "attacker.example") < 500


def test_metrics_count_calls_by_tool_and_outcome(start_sidecar):
    sidecar = start_sidecar()
    sidecar.wait_ready()

    async def body(session, _):
        await session.call_tool("list_topics", {})
        await session.call_tool("describe_topic", {"topic": f"no-such-{uuid.uuid4().hex}"})

    with_session(sidecar.url, body)
    text = urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=5).read().decode()
    assert 'mcp_kafka_tool_calls_total{tool="list_topics",outcome="ok"} 1' in text
    assert 'mcp_kafka_tool_calls_total{tool="describe_topic",outcome="NOT_FOUND"} 1' in text
    assert "mcp_kafka_kafka_up 1" in text


def test_readyz_fails_while_kafka_is_unreachable_and_calls_say_so(start_sidecar, free_port):
    # A bootstrap address where no broker listens: Kafka is down from the
    # sidecar's point of view from the start.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    sidecar = start_sidecar(bootstrap=f"127.0.0.1:{dead}")
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{sidecar.url}/healthz", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "the sidecar never served /healthz"
            time.sleep(0.1)
    with pytest.raises(urllib.error.HTTPError) as not_ready:
        urllib.request.urlopen(f"{sidecar.url}/readyz", timeout=5)
    assert not_ready.value.code == 503

    async def body(session, _):
        return await session.call_tool("list_topics", {})

    result = with_session(sidecar.url, body)
    assert result.is_error
    assert tool_error(result)["code"] == "KAFKA_UNAVAILABLE"
    assert tool_error(result)["retriable"] is True
    assert sidecar.proc.poll() is None, "the sidecar exited"


def test_stdio_mode_serves_the_same_tools(stack_env, tmp_path):
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from conftest import sidecar_binary

    params = StdioServerParameters(
        command=str(sidecar_binary()),
        args=["--stdio", "--bootstrap-servers", stack_env["KAFKA_BOOTSTRAP_SERVERS"]],
    )

    async def run():
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    tools = {t.name for t in (await session.list_tools()).tools}
                    status = await session.call_tool("cluster_status", {})
                    return init, tools, status

    init, tools, status = anyio.run(run)
    assert init.server_info.name == "mcp-kafka-sidecar"
    assert tools == OBSERVE
    assert status.structured_content["cluster_id"] == stack_env["KAFKA_CLUSTER_ID"]
