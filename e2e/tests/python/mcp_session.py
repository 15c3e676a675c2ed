"""One MCP session with the official Python SDK (Streamable HTTP), in one
place for the tests and the benchmarks (e2e/bench_pods.py imports it too)."""


async def mcp_session(endpoint: str, bearer: str, work, host: str | None = None):
    """Runs `work(session)` in an initialized MCP session at `endpoint` (the
    full MCP URL) that presents `bearer`. `host` replaces the Host header: the
    sidecar admits only its Service's names there (DNS rebinding
    protection), so a client of a Service's ClusterIP names the Service."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {bearer}"}
    if host:
        headers["Host"] = host
    async with create_mcp_http_client(headers=headers) as client:
        async with streamable_http_client(endpoint, http_client=client) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)
