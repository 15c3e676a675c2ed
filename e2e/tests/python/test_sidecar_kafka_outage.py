"""A broker outage seen by a running sidecar: a real broker (an extra
instance, so the shared one is not disturbed) is killed with SIGKILL in the
middle of a session and restarted. The sidecar stays up, answers
KAFKA_UNAVAILABLE within its timeout and fails /readyz meanwhile, then
serves again in the same MCP session without a restart. Concurrent calls
during the outage share one metadata request and its failure: each answers
within one request timeout, none waits for the failures of the others."""

import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import tool_error

STACK = pathlib.Path(__file__).resolve().parents[2] / "stack"
# The sidecar's defaults in standalone mode (kafka.requestTimeoutMs,
# kafka.metadataMaxAgeMs).
REQUEST_TIMEOUT_S = 10.0
METADATA_MAX_AGE_S = 1.0
CONCURRENT_CALLS = 5


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
                    # Past the metadata cache's age: every call asks Kafka.
                    await anyio.sleep(METADATA_MAX_AGE_S + 0.5)
                    during = [None] * CONCURRENT_CALLS

                    async def call(i: int) -> None:
                        started = time.monotonic()
                        result = await session.call_tool("list_topics", {})
                        during[i] = (result, time.monotonic() - started)

                    async with anyio.create_task_group() as calls:
                        for i in range(CONCURRENT_CALLS):
                            calls.start_soon(call, i)
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
                    return before, during, ready_during, after, recovered_in

        before, during, ready_during, after, recovered_in = anyio.run(scenario)
        assert not before.is_error
        took = sorted(t for _, t in during)
        for result, _ in during:
            assert result.is_error
            assert result.structured_content is None
            assert tool_error(result)["code"] == "KAFKA_UNAVAILABLE", result
        # One request timeout and a margin: not one more timeout for each
        # caller before (4 concurrent calls once answered after 10, 20, 30, 40 s).
        assert took[-1] < REQUEST_TIMEOUT_S + 3, f"concurrent calls during the outage took {took}s"
        assert not ready_during, "/readyz stayed ready during the outage"
        assert after is not None and not after.is_error, after
        assert after.structured_content["cluster_id"] == before.structured_content["cluster_id"]
        assert sidecar.proc.poll() is None, "the sidecar exited"
        answered = ", ".join(f"{t:.2f}" for t in took)
        print(f"\noutage: {CONCURRENT_CALLS} concurrent calls answered in {answered}s; recovered {recovered_in:.2f}s after the broker was restarted")
        for _ in range(100):
            if ready(sidecar.url):
                break
            time.sleep(0.1)
        assert ready(sidecar.url), "/readyz did not recover"
    finally:
        stack_kafka("stop", name, port, cport)
