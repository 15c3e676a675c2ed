"""The audit trail: one JSON record per tool call on its own stream, with
message payloads hashed, never repeated."""

import json
import uuid

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


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
