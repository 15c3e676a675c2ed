"""The audit trail: one JSON record per tool call on its own stream, with
message payloads hashed, never repeated."""

import json
import uuid

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import outcome, tool_error


def audit_records(sidecar):
    return [json.loads(line) for line in sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]


def test_every_call_leaves_one_record_and_payloads_are_hashed(start_sidecar):
    sidecar = start_sidecar("--tools", "all")
    sidecar.wait_ready()
    topic = f"audit-{uuid.uuid4().hex[:8]}"
    canary = f"canary-{uuid.uuid4().hex}"

    async def work(url):
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                results = [
                    await session.call_tool("create_topic", {"topic": topic, "partitions": 1}),
                    await session.call_tool("publish_message", {"topic": topic, "key": canary, "value": canary}),
                    await session.call_tool("describe_topic", {"topic": f"{topic}-missing"}),
                    await session.call_tool("no_such_tool", {}),
                    await session.call_tool("delete_topic", {"topic": topic, "dry_run": True}),
                ]
                return results

    results = anyio.run(work, sidecar.url)
    records = [r for r in audit_records(sidecar) if topic in json.dumps(r["arguments"]) or r["tool"] == "no_such_tool"]
    assert [(r["tool"], r["outcome"]) for r in records] == [
        ("create_topic", "ok"), ("publish_message", "ok"), ("describe_topic", "NOT_FOUND"),
        ("no_such_tool", "NOT_FOUND"), ("delete_topic", "ok")], records
    assert len(results) == len(records)
    assert records[3]["decision"] == "deny" and records[2]["decision"] == "allow"
    assert records[4]["dryRun"] is True and records[0]["dryRun"] is False
    published = records[1]["arguments"]
    assert published["value"]["length"] == len(canary) and len(published["value"]["sha256"]) == 16
    assert canary not in sidecar.log.read_text(), "the payload appears in the audit stream or logs"
    for r in records:
        assert r["environment"] == "dev" and r["requestId"] and r["sessionId"] and r["durationMs"] >= 0


async def calls(url, *calls):
    """Runs (tool, args) calls in one session and returns their results."""
    async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return [await session.call_tool(tool, args) for tool, args in calls]


def metric(url, name):
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_the_kafka_audit_topic_gets_every_record_and_its_loss_stops_changes(start_sidecar, stack_env, tmp_path):
    import time

    from conftest import _another_port

    audit_topic = f"audit-sink-{uuid.uuid4().hex[:8]}"
    # A plain dev server manages the audit topic and reads it, as an admin would.
    admin = start_sidecar("--tools", "all")
    admin.wait_ready()
    [made] = anyio.run(calls, admin.url, ("create_topic", {"topic": audit_topic, "partitions": 1}))
    assert not made.is_error, made

    port = _another_port()
    config = tmp_path / "audited.json"
    config.write_text(json.dumps({
        "server": {"name": "audited", "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": ["list_topics", "create_topic"],
        "auth": {"mode": "none"},
        "audit": {"kafkaTopic": audit_topic},
    }))
    audited = start_sidecar("--config", str(config), port=port)
    audited.wait_ready()
    first, second = f"audited-{uuid.uuid4().hex[:8]}", f"audited-{uuid.uuid4().hex[:8]}"

    [created, listed] = anyio.run(calls, audited.url, ("create_topic", {"topic": first, "partitions": 1}),
                                  ("list_topics", {"name_contains": "audited-"}))
    assert outcome(created) == outcome(listed) == "ok"

    # Both records are in the topic, as written to stdout.
    def topic_records():
        [peek] = anyio.run(calls, admin.url, ("consume_messages", {"topic": audit_topic, "from": "earliest", "max_messages": 100}))
        return [m["value"]["json"] for m in peek.structured_content["messages"]]

    deadline = time.monotonic() + 30
    while len(topic_records()) < 2:
        assert time.monotonic() < deadline, "the audit records never reached the topic"
        time.sleep(0.5)
    in_topic = topic_records()
    assert [(r["tool"], r["outcome"]) for r in in_topic] == [("create_topic", "ok"), ("list_topics", "ok")], in_topic
    assert in_topic == [r for r in audit_records(audited) if r["tool"] in ("create_topic", "list_topics")]
    assert in_topic[0]["arguments"]["topic"] == first

    # The audit topic goes away: changes are refused, Kafka stays as it was;
    # observe calls go on, and the metrics say the sink fails.
    [dropped] = anyio.run(calls, admin.url, ("delete_topic", {"topic": audit_topic}))
    assert not dropped.is_error, dropped
    [refused, observed] = anyio.run(calls, audited.url, ("create_topic", {"topic": second, "partitions": 1}),
                                    ("list_topics", {"name_contains": "audited-"}))
    assert outcome(refused) == "KAFKA_UNAVAILABLE", refused
    assert "audit" in tool_error(refused)["message"]
    assert outcome(observed) == "ok"
    names = [t["name"] for t in observed.structured_content["topics"]]
    assert first in names and second not in names
    deadline = time.monotonic() + 60
    while not (metric(audited.url, "mcp_kafka_audit_sink_failures_total") or 0) >= 1:
        assert time.monotonic() < deadline, "the sink's failures were never counted"
        time.sleep(1)
    assert metric(audited.url, "mcp_kafka_audit_sink_up") == 0
    # stdout still has every record, the refused change included.
    assert [(r["tool"], r["outcome"]) for r in audit_records(audited)][-2:] == [("create_topic", "KAFKA_UNAVAILABLE"), ("list_topics", "ok")]
