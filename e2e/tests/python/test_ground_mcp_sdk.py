"""The official MCP Python SDK in the test ground's virtualenv is a working
Streamable HTTP client: it talks to an SDK server over loopback. Later tests
point the same client at the Rust sidecar."""

import importlib.metadata
import pathlib
import subprocess
import sys
import time

import socket

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

REQUIREMENTS = pathlib.Path(__file__).resolve().parents[2] / "requirements.txt"

SERVER = """
import sys
from mcp.server.mcpserver import MCPServer
server = MCPServer("ground-echo")

@server.tool()
def echo(text: str) -> str:
    return "echo: " + text

server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"""


def test_the_sdk_version_is_the_pinned_one():
    pinned = [l.split("==")[1] for l in REQUIREMENTS.read_text().splitlines() if l.startswith("mcp==")]
    assert pinned == [importlib.metadata.version("mcp")]


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        assert proc.poll() is None, f"the SDK server exited: {proc.stderr.read().decode()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the SDK server did not start listening")


def test_the_sdk_client_calls_a_tool_over_streamable_http(free_port):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(free_port)], stderr=subprocess.PIPE)
    try:
        wait_for_port(free_port, proc)

        async def session():
            async with streamable_http_client(f"http://127.0.0.1:{free_port}/mcp") as (read, write, *_):
                async with ClientSession(read, write) as client:
                    await client.initialize()
                    tools = await client.list_tools()
                    result = await client.call_tool("echo", {"text": "hi"})
                    return [t.name for t in tools.tools], result

        names, result = anyio.run(session)
        assert names == ["echo"]
        assert not result.is_error
        assert result.content[0].text == "echo: hi"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
