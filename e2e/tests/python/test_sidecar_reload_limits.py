"""Limits change for existing sessions when the config file changes: the
request body limit (read per request, not fixed when the port opened) and
the tool caps, each seen by the next request of the same MCP session."""

import json
import time
import urllib.request
import uuid

from raw_mcp import RawSession


def write_config(path, stack_env, port, tools, limits):
    path.write_text(json.dumps({
        "server": {"name": "reload-limits", "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": tools,
        "auth": {"mode": "none"},
        "limits": limits,
    }))


def wait_for_reload(sidecar, count):
    """Until the sidecar has applied `count` reloads (the file is polled every 2 s)."""
    wanted = f'mcp_kafka_config_reloads_total{{result="ok"}} {count}'
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if wanted in urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=5).read().decode():
            return
        time.sleep(0.2)
    raise AssertionError(f"no reload {count} within 20 s; log: {sidecar.log.read_text()[-2000:]}")


def chunked_post(port, session, size):
    """A tools/call of `size` bytes sent in chunks, without Content-Length
    (small enough to be sent whole before the 413 closes the connection)."""
    import http.client

    body = json.dumps({"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                       "params": {"name": "list_topics", "arguments": {}, "_meta": {"pad": "x" * size}}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/mcp", body=(body[i:i + 16384] for i in range(0, len(body), 16384)), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                              **session.headers()})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_reload_moves_the_request_body_limit_for_existing_sessions(stack_env, start_sidecar, tmp_path, free_port):
    path = tmp_path / "sidecar.json"
    write_config(path, stack_env, free_port, ["list_topics"], {})  # maxRequestBytes 4 MiB
    sidecar = start_sidecar("--config", str(path), port=free_port)
    sidecar.wait_ready()
    session = RawSession(sidecar.port)
    assert session.initialize().status == 200
    assert session.call("list_topics", pad=200_000).outcome == "ok"

    # The smallest body limit the config allows needs a small publish cap.
    write_config(path, stack_env, free_port, ["list_topics"], {"maxPublishBytes": 3072, "maxRequestBytes": 70_000})
    wait_for_reload(sidecar, 1)
    refused = session.call("list_topics", pad=200_000)
    assert refused.status == 413, refused.status
    assert refused.rpc_error["data"]["code"] == "LIMIT_EXCEEDED" and "70000" in refused.rpc_error["message"]
    assert session.call("list_topics", pad=60_000).outcome == "ok", "the same session goes on under the new limit"
    assert chunked_post(sidecar.port, session, 80_000) == 413, "a body without Content-Length is held to it too"

    # Raised above the limit the port was opened with: a body larger than that is admitted.
    write_config(path, stack_env, free_port, ["list_topics"], {"maxRequestBytes": 8 << 20})
    wait_for_reload(sidecar, 2)
    assert session.call("list_topics", pad=6 << 20).outcome == "ok"


def test_a_reload_lowering_a_cap_applies_to_the_next_call_of_a_session(stack_env, start_sidecar, tmp_path, free_port):
    path = tmp_path / "sidecar.json"
    tools = ["create_topic", "consume_messages"]
    write_config(path, stack_env, free_port, tools, {})  # maxConsumeMessages 100
    sidecar = start_sidecar("--config", str(path), port=free_port)
    sidecar.wait_ready()
    session = RawSession(sidecar.port)
    assert session.initialize().status == 200
    topic = f"reload-cap-{uuid.uuid4().hex[:8]}"
    assert session.call("create_topic", {"topic": topic, "partitions": 1}).outcome == "ok"
    consume = {"topic": topic, "max_messages": 50, "timeout_ms": 200}
    assert session.call("consume_messages", consume).outcome == "ok"

    write_config(path, stack_env, free_port, tools, {"maxConsumeMessages": 10})
    wait_for_reload(sidecar, 1)
    capped = session.call("consume_messages", consume)
    assert capped.outcome == "LIMIT_EXCEEDED", capped.message
    assert "limit of 10" in capped.message["result"]["content"][0]["text"]
    assert session.call("consume_messages", {**consume, "max_messages": 10}).outcome == "ok"
