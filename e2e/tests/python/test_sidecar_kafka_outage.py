"""A broker outage seen by a running sidecar: a real broker (an extra
instance, so the shared one is not disturbed) is killed with SIGKILL in the
middle of a session and restarted. The sidecar stays up, answers
KAFKA_UNAVAILABLE within its timeout and fails /readyz meanwhile, then
serves again in the same MCP session without a restart."""

import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

STACK = pathlib.Path(__file__).resolve().parents[2] / "stack"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stack_kafka(action: str, name: str, port: int, cport: int) -> None:
    run = subprocess.run([str(STACK), "kafka", action, name, str(port), str(cport)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"e2e/stack kafka {action} failed:\n{run.stderr}"


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


def test_broker_killed_mid_session_and_restarted(start_sidecar):
    port, cport = free_ports(2)
    name = f"outage-{port}"
    stack_kafka("start", name, port, cport)
    try:
        sidecar = start_sidecar(bootstrap=f"127.0.0.1:{port}")
        sidecar.wait_ready()

        async def scenario():
            async with streamable_http_client(f"{sidecar.url}/mcp") as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    before = await session.call_tool("cluster_status", {})

                    stack_kafka("kill", name, port, cport)
                    started = time.monotonic()
                    during = await session.call_tool("list_topics", {})
                    took = time.monotonic() - started
                    for _ in range(100):
                        if not ready(sidecar.url):
                            break
                        await anyio.sleep(0.1)
                    ready_during = ready(sidecar.url)

                    stack_kafka("start", name, port, cport)
                    restarted = time.monotonic()
                    after = None
                    for _ in range(600):
                        after = await session.call_tool("cluster_status", {})
                        if not after.is_error:
                            break
                        await anyio.sleep(0.1)
                    recovered_in = time.monotonic() - restarted
                    return before, during, took, ready_during, after, recovered_in

        before, during, took, ready_during, after, recovered_in = anyio.run(scenario)
        assert not before.is_error
        assert during.is_error
        assert during.structured_content["error"]["code"] == "KAFKA_UNAVAILABLE", during.structured_content
        assert took < 3 * 10 + 1, f"a call during the outage took {took:.1f}s, past its bound"
        assert not ready_during, "/readyz stayed ready during the outage"
        assert after is not None and not after.is_error, after
        assert after.structured_content["cluster_id"] == before.structured_content["cluster_id"]
        assert sidecar.proc.poll() is None, "the sidecar exited"
        print(f"\noutage: call answered in {took:.2f}s; recovered {recovered_in:.2f}s after the broker was restarted")
        for _ in range(100):
            if ready(sidecar.url):
                break
            time.sleep(0.1)
        assert ready(sidecar.url), "/readyz did not recover"
    finally:
        stack_kafka("stop", name, port, cport)
