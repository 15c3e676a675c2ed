"""Kubernetes authenticates and authorizes every caller of the sidecar
(auth.mode kubernetes): tokens minted with TokenRequest for ServiceAccounts
that real Roles bind to custom verbs on mcpkafkaservers/tools, checked by
the real apiserver's TokenReview and SubjectAccessReview."""

import json
import urllib.error
import urllib.request

import anyio
import pytest
from conftest import as_caller, kubectl, sa_token, tool_error

SERVER = "orders"
TOOLS = ["cluster_status", "list_topics", "describe_topic"]


@pytest.fixture
def rbac(tool_grants):
    """`reader` may call list_topics, `writer` list_topics and describe_topic, `outsider` nothing."""
    return tool_grants(SERVER, {"reader": ["list_topics"], "writer": ["list_topics", "describe_topic"], "outsider": None})


def token(stack_env, ns, sa, audience=None):
    return sa_token(stack_env, ns, sa, SERVER, audience)


@pytest.fixture
def secured_sidecar(rbac, stack_env, start_sidecar, tmp_path, free_port):
    config = tmp_path / "sidecar.yaml"
    config.write_text(json.dumps({
        "server": {"name": SERVER, "namespace": rbac, "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{free_port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": TOOLS,
        "auth": {"mode": "kubernetes"},
    }))
    # The sidecar asks TokenReview/SubjectAccessReview with the admin
    # kubeconfig here; in a pod, with its ServiceAccount (system:auth-delegator).
    sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=free_port)
    sidecar.wait_ready()
    return sidecar


def post_initialize(url, headers):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
    req = urllib.request.Request(f"{url}/mcp", data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def test_no_token_or_a_token_for_another_audience_gets_401(secured_sidecar, rbac, stack_env):
    status, headers = post_initialize(secured_sidecar.url, {})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Bearer realm="mcp-kafka-sidecar"'), headers

    other = token(stack_env, rbac, "writer", audience="https://kubernetes.default.svc.cluster.local")
    status, headers = post_initialize(secured_sidecar.url, {"Authorization": f"Bearer {other}"})
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"], headers
    assert other not in str(headers)

    status, _ = post_initialize(secured_sidecar.url, {"Authorization": "Bearer not-a-token"})
    assert status == 401
    good = token(stack_env, rbac, "writer")
    status, _ = post_initialize(secured_sidecar.url, {"Authorization": f"Bearer {good}"})
    assert status == 200


def resigned(stack_env, real_token, exp_offset):
    """`real_token` with its times moved so that it expires `exp_offset`
    seconds from now, signed again with the apiserver's service-account key
    (TokenRequest refuses lifetimes under 10 minutes, so an expired token
    cannot be had from it within a test)."""
    import base64
    import subprocess
    import time

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header, payload, _ = real_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    now = int(time.time())
    claims.update(iat=now - 1200, nbf=now - 1200, exp=now + exp_offset)
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", stack_env["MCPK_SA_SIGNING_KEY"]],
                            input=signing_input.encode(), capture_output=True, check=True)
    return f"{signing_input}.{b64url(signed.stdout)}"


def test_an_expired_token_gets_401(secured_sidecar, rbac, stack_env):
    real = token(stack_env, rbac, "writer")
    # The control: re-signed with a lifetime left, the same claims pass.
    status, _ = post_initialize(secured_sidecar.url, {"Authorization": f"Bearer {resigned(stack_env, real, 600)}"})
    assert status == 200
    expired = resigned(stack_env, real, -60)
    status, headers = post_initialize(secured_sidecar.url, {"Authorization": f"Bearer {expired}"})
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"], headers


def test_each_caller_sees_and_calls_only_its_granted_tools(secured_sidecar, rbac, stack_env):
    url = secured_sidecar.url

    async def names(session):
        return sorted(t.name for t in (await session.list_tools()).tools)

    async def reader(session):
        listed = await names(session)
        allowed = await session.call_tool("list_topics", {})
        denied = await session.call_tool("describe_topic", {"topic": "anything"})
        return listed, allowed, denied

    listed, allowed, denied = anyio.run(as_caller, url, token(stack_env, rbac, "reader"), reader)
    assert listed == ["list_topics"]
    assert not allowed.is_error and "topics" in allowed.structured_content
    assert denied.is_error
    error = tool_error(denied)
    assert error["code"] == "PERMISSION_DENIED"
    assert "describe_topic" in error["message"] and f"system:serviceaccount:{rbac}:reader" in error["message"]
    assert "cluster_status" not in error["message"], "a refusal says nothing about other tools"

    # One audit record per call, allowed or denied, with the caller.
    records = [json.loads(line) for line in secured_sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]
    reader_name = f"system:serviceaccount:{rbac}:reader"
    mine = [r for r in records if (r.get("subject") or {}).get("username") == reader_name]
    assert [(r["tool"], r["decision"], r["outcome"]) for r in mine] == [
        ("list_topics", "allow", "ok"), ("describe_topic", "deny", "PERMISSION_DENIED")], mine
    assert mine[1]["reason"] and "describe_topic" in mine[1]["reason"]
    assert all(r["server"] == SERVER and r["namespace"] == rbac and r["sessionId"] for r in mine)

    assert anyio.run(as_caller, url, token(stack_env, rbac, "writer"), names) == ["describe_topic", "list_topics"]

    async def outsider(session):
        return await names(session), await session.call_tool("list_topics", {})

    listed, refused = anyio.run(as_caller, url, token(stack_env, rbac, "outsider"), outsider)
    assert listed == []
    assert refused.is_error and tool_error(refused)["code"] == "PERMISSION_DENIED"


def test_a_client_of_the_2026_07_28_revision_is_authorized_and_audited_per_call(secured_sidecar, rbac, stack_env):
    """The SDK's default client (mode "auto") finds that the sidecar answers
    server/discover and speaks 2026-07-28: no session, every request on its
    own. Each call is still authenticated, authorized and audited, and rmcp's
    per-request service start and end stay out of the log."""
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    bearer = token(stack_env, rbac, "reader")

    async def reader():
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {bearer}"})
        async with http:
            async with Client(streamable_http_client(f"{secured_sidecar.url}/mcp", http_client=http)) as client:
                listed = sorted(t.name for t in (await client.list_tools()).tools)
                allowed = await client.call_tool("list_topics", {})
                denied = await client.call_tool("describe_topic", {"topic": "anything"})
                return client.protocol_version, listed, allowed, denied

    version, listed, allowed, denied = anyio.run(reader)
    assert version == "2026-07-28"
    assert listed == ["list_topics"]
    assert not allowed.is_error and "topics" in allowed.structured_content
    assert denied.is_error and tool_error(denied)["code"] == "PERMISSION_DENIED"

    log = secured_sidecar.log.read_text()
    records = [json.loads(line) for line in log.splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]
    mine = [r for r in records if (r.get("subject") or {}).get("username") == f"system:serviceaccount:{rbac}:reader"]
    assert [(r["tool"], r["decision"], r["outcome"], r["sessionId"]) for r in mine] == [
        ("list_topics", "allow", "ok", None), ("describe_topic", "deny", "PERMISSION_DENIED", None)], mine
    assert all(r["requestId"] for r in mine)
    assert "serve finished" not in log and "Service initialized" not in log


def test_a_new_grant_takes_effect_after_the_denial_cache_time(secured_sidecar, rbac, stack_env):
    import time

    url = secured_sidecar.url
    bearer = token(stack_env, rbac, "outsider")

    async def call(session):
        return await session.call_tool("cluster_status", {})

    assert anyio.run(as_caller, url, bearer, call).is_error
    kubectl(stack_env, "create", "role", "outsider", "-n", rbac, "--verb=cluster_status",
            "--resource=mcpkafkaservers.mcpkafka.dev/tools", f"--resource-name={SERVER}")
    kubectl(stack_env, "create", "rolebinding", "outsider", "-n", rbac, "--role=outsider", f"--serviceaccount={rbac}:outsider")
    deadline = time.monotonic() + 30  # denials are cached for 5 s by default
    while anyio.run(as_caller, url, bearer, call).is_error:
        assert time.monotonic() < deadline, "the new RoleBinding never took effect"
        time.sleep(1)


def post_2026_07_28(url, bearer, request_id, method, params=None, name=None):
    """One 2026-07-28 request as the SDK's Client sends it: no session; the
    revision and the client's capabilities in the request itself."""
    import http.client
    import urllib.parse

    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Authorization": f"Bearer {bearer}",
               **({"Mcp-Name": name} if name else {})}
    target = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=15)
    conn.request("POST", "/mcp", body=body, headers=headers)
    response = conn.getresponse()
    answer = response.status, response.getheader("Content-Type"), response.getheader("Mcp-Session-Id"), response.read().decode()
    conn.close()
    return answer


def test_a_2026_07_28_bare_result_is_answered_as_plain_json(secured_sidecar, rbac, stack_env):
    bearer = token(stack_env, rbac, "reader")
    requests = {
        "server/discover": (None, None),
        "tools/list": (None, None),
        "an allowed call": ({"name": "list_topics", "arguments": {}}, "list_topics"),
        "a refused call (a tool error is a result too)": ({"name": "describe_topic", "arguments": {"topic": "x"}}, "describe_topic"),
    }
    for i, (what, (params, name)) in enumerate(requests.items(), start=1):
        method = "tools/call" if params else what
        status, content_type, session, body = post_2026_07_28(secured_sidecar.url, bearer, i, method, params, name)
        assert status == 200, (what, status, body[:300])
        assert content_type and content_type.split(";")[0].strip() == "application/json", (what, content_type, body[:300])
        answer = json.loads(body)  # the whole body is one JSON-RPC response, not SSE frames
        assert answer["id"] == i and "result" in answer, (what, answer)
        assert session is None, "a 2026-07-28 request opens no session"
    assert json.loads(body)["result"]["isError"] is True

    # The control: the same server answers a 2025-06-18 initialize as an SSE stream,
    # so the check above tells the two answers apart.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", secured_sidecar.port, timeout=15)
    conn.request("POST", "/mcp", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}),
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Authorization": f"Bearer {bearer}"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
    conn.close()
