"""The sidecar's Kafka TLS and SASL settings against the stack broker's
secured listeners: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) over TLS with
the stack's CA, and mutual TLS. Credentials come from files; a wrong one is
refused by the broker, and no secret reaches the sidecar's output."""

import json
import pathlib
import time
import urllib.error
import urllib.request

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import tool_error


def config_for(stack_env, port, bootstrap, tls, sasl=None):
    config = {
        "server": {"name": "secured", "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{port}"},
        "kafka": {"bootstrapServers": [bootstrap], "tls": tls, "requestTimeoutMs": 5000},
        "tools": ["cluster_status", "list_topics"],
        "auth": {"mode": "none"},
    }
    if sasl:
        config["kafka"]["sasl"] = sasl
    return config


def start_with(start_sidecar, tmp_path, config, port):
    path = tmp_path / f"secured-{port}.json"
    path.write_text(json.dumps(config))
    return start_sidecar("--config", str(path), port=port)


async def cluster_status(url):
    async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("cluster_status", {})


def ready_within(sidecar, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{sidecar.url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls(mechanism, stack_env, start_sidecar, tmp_path, free_port):
    sasl = {"mechanism": mechanism, "usernameFile": stack_env["MCPK_KAFKA_SASL_USERNAME_FILE"],
            "passwordFile": stack_env["MCPK_KAFKA_SASL_PASSWORD_FILE"]}
    config = config_for(stack_env, free_port, stack_env["MCPK_KAFKA_SASL_SSL_BOOTSTRAP"], {"caFile": stack_env["MCPK_KAFKA_CA_FILE"]}, sasl)
    sidecar = start_with(start_sidecar, tmp_path, config, free_port)
    sidecar.wait_ready()
    result = anyio.run(cluster_status, sidecar.url)
    assert not result.is_error, result
    assert result.structured_content["cluster_id"] == stack_env["KAFKA_CLUSTER_ID"]
    password = pathlib.Path(stack_env["MCPK_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()
    assert password not in sidecar.log.read_text()


def test_a_wrong_password_is_refused_and_never_shown(stack_env, start_sidecar, tmp_path, free_port):
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password-4d1b0e\n")
    sasl = {"mechanism": "SCRAM-SHA-512", "usernameFile": stack_env["MCPK_KAFKA_SASL_USERNAME_FILE"], "passwordFile": str(wrong)}
    config = config_for(stack_env, free_port, stack_env["MCPK_KAFKA_SASL_SSL_BOOTSTRAP"], {"caFile": stack_env["MCPK_KAFKA_CA_FILE"]}, sasl)
    sidecar = start_with(start_sidecar, tmp_path, config, free_port)
    assert not ready_within(sidecar, 8), "ready with a wrong password"
    result = anyio.run(cluster_status, sidecar.url)
    assert result.is_error
    error = tool_error(result)
    # Not "unreachable": the broker said why, and retrying will not help.
    assert error["code"] == "PERMISSION_DENIED" and "SASL credentials" in error["message"], error
    assert error["retriable"] is False
    assert sidecar.proc.poll() is None, "the process stays up"
    assert "not-the-password-4d1b0e" not in sidecar.log.read_text() + json.dumps(error)


def test_mutual_tls(stack_env, start_sidecar, tmp_path, free_port):
    from conftest import _another_port

    ca = stack_env["MCPK_KAFKA_CA_FILE"]
    tls = {"caFile": ca, "certFile": stack_env["MCPK_KAFKA_CLIENT_CERT_FILE"], "keyFile": stack_env["MCPK_KAFKA_CLIENT_KEY_FILE"]}
    sidecar = start_with(start_sidecar, tmp_path, config_for(stack_env, free_port, stack_env["MCPK_KAFKA_MTLS_BOOTSTRAP"], tls), free_port)
    sidecar.wait_ready()
    assert not anyio.run(cluster_status, sidecar.url).is_error

    # The same listener without a client certificate: the broker refuses the handshake.
    port = _another_port()
    anonymous = start_with(start_sidecar, tmp_path, config_for(stack_env, port, stack_env["MCPK_KAFKA_MTLS_BOOTSTRAP"], {"caFile": ca}), port)
    assert not ready_within(anonymous, 8), "ready without a client certificate"
    refused = anyio.run(cluster_status, anonymous.url)
    assert refused.is_error and tool_error(refused)["code"] == "PERMISSION_DENIED", refused
    assert "TLS handshake" in tool_error(refused)["message"]
