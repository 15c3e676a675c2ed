"""Malformed MCP traffic over HTTP: each gets a clear 4xx, nothing panics,
the process stays up and keeps serving, and its memory stays bounded."""

import http.client
import json
import socket
import time

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

ACCEPT = "application/json, text/event-stream"


def post(port, body: bytes, headers: dict[str, str]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("POST", "/mcp", body=body, headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    status, text = response.status, response.read().decode(errors="replace")
    conn.close()
    return status, text


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def initialize_body():
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()


def malformed_cases():
    """name -> (body, headers, the status rmcp answers), as RELIABILITY.md lists them."""
    call = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_topics"}}).encode()
    listing = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()
    return {
        "invalid JSON": (b"{not json", {"Accept": ACCEPT}, 415),
        "not JSON-RPC": (b'{"hello": "world"}', {"Accept": ACCEPT}, 415),
        "a JSON-RPC array of garbage": (b"[1, 2, 3]", {"Accept": ACCEPT}, 415),
        "a call without a session": (call, {"Accept": ACCEPT}, 400),
        "an unknown session id": (listing, {"Accept": ACCEPT, "Mcp-Session-Id": "00000000-dead-beef-0000-000000000000"}, 404),
        "a wrong Accept": (initialize_body(), {"Accept": "text/html"}, 406),
        "a wrong Content-Type": (initialize_body(), {"Accept": ACCEPT, "Content-Type": "text/plain"}, 415),
    }


def test_malformed_requests_get_4xx_and_the_server_keeps_serving(start_sidecar):
    sidecar = start_sidecar()
    sidecar.wait_ready()
    port = sidecar.port
    cases = {name: (body, headers) for name, (body, headers, _) in malformed_cases().items()}
    before = rss_kib(sidecar.proc.pid)
    for _ in range(50):
        for name, (body, headers) in cases.items():
            status, text = post(port, body, headers)
            assert 400 <= status < 500, f"{name}: {status} {text[:200]}"
    assert sidecar.proc.poll() is None, "the sidecar exited"

    # A slow client that announces a body and never sends it ties up one
    # connection, not the server.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")

    async def works(url):
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("list_topics", {})

    result = anyio.run(works, sidecar.url)
    assert not result.is_error, result
    slow.close()
    time.sleep(0.5)
    after = rss_kib(sidecar.proc.pid)
    # 350 bad requests: memory does not grow with them (allocator noise aside).
    assert after - before < 8 * 1024, f"RSS grew from {before} KiB to {after} KiB"
    assert "panicked" not in sidecar.log.read_text()


def test_each_malformed_request_gets_its_exact_status(start_sidecar):
    sidecar = start_sidecar()
    sidecar.wait_ready()
    cases = malformed_cases()
    # A 2025-06-18 client must take both answer shapes: JSON alone is not enough.
    cases["an Accept without text/event-stream"] = (initialize_body(), {"Accept": "application/json"}, 406)
    got = {name: post(sidecar.port, body, headers) for name, (body, headers, _) in cases.items()}
    expected = {name: status for name, (_, _, status) in cases.items()}
    assert {name: status for name, (status, _) in got.items()} == expected, got
    # The control: a well-formed initialize on the same server is served.
    status, text = post(sidecar.port, initialize_body(), {"Accept": ACCEPT})
    assert status == 200 and '"protocolVersion"' in text, (status, text[:200])
