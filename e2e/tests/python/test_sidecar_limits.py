"""Limits: a token bucket per caller (LIMIT_EXCEEDED, audited as a denial)
and a request body limit on /mcp (413 with LIMIT_EXCEEDED, before MCP)."""

import json
import urllib.request

import anyio
from conftest import as_caller, outcome, sa_token, tool_error

SERVER = "limited"


def test_each_caller_has_its_own_rate_limit(tool_grants, stack_env, start_sidecar, tmp_path, free_port):
    ns = tool_grants(SERVER, {"busy": ["list_topics"], "calm": ["list_topics"]})
    config = tmp_path / "limited.json"
    config.write_text(json.dumps({
        "server": {"name": SERVER, "namespace": ns, "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{free_port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": ["list_topics"],
        "auth": {"mode": "kubernetes"},
        # One call per second sustained, four at once: the SDK's tools/list
        # before its first call (a listing is a call from the bucket too)
        # and three calls; quick calls past the third are over.
        "limits": {"callsPerSecond": 1, "callBurst": 4},
    }))
    sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=free_port)
    sidecar.wait_ready()

    async def burst(session):
        return [await session.call_tool("list_topics", {}) for _ in range(6)]

    results = anyio.run(as_caller, sidecar.url, sa_token(stack_env, ns, "busy", SERVER), burst)
    codes = [outcome(r) for r in results]
    # At one call per second, at most one more token may have come back during the burst.
    assert codes[:3] == ["ok"] * 3 and codes.count("LIMIT_EXCEEDED") >= 2, codes
    refused = tool_error(next(r for r in results if r.is_error))
    assert refused["retriable"] is True and "retry in" in refused["message"]

    async def one(session):
        return await session.call_tool("list_topics", {})

    assert not anyio.run(as_caller, sidecar.url, sa_token(stack_env, ns, "calm", SERVER), one).is_error, "another caller is not limited"

    records = [json.loads(line) for line in sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]
    over = [r for r in records if r["outcome"] == "LIMIT_EXCEEDED"]
    assert len(over) == codes.count("LIMIT_EXCEEDED") and all(r["decision"] == "deny" for r in over)
    assert all(r["subject"]["username"] == f"system:serviceaccount:{ns}:busy" for r in over)


def test_a_request_body_over_the_limit_is_refused_before_mcp(start_sidecar):
    sidecar = start_sidecar("--tools", "all")
    sidecar.wait_ready()
    # Over the default 4 MiB: announced, and refused before it is read (the
    # client never has to send it).
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
    conn.putrequest("POST", "/mcp")
    for name, value in {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "Content-Length": str(5 << 20)}.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    answer = json.loads(response.read())
    conn.close()
    assert answer["error"]["data"]["code"] == "LIMIT_EXCEEDED", answer
    assert "4194304" in answer["error"]["message"]
    # The server is unharmed.
    with urllib.request.urlopen(f"{sidecar.url}/healthz", timeout=5) as r:
        assert r.status == 200
