"""listen.metricsAddress: /metrics on a listener of its own (for a scraper
that the NetworkPolicy keeps away from /mcp), and then not on the MCP
address; unset, /metrics is on the MCP address as before. SIGTERM stops
both listeners."""

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from conftest import _another_port, sidecar_binary
from raw_mcp import RawSession


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def config(path, stack_env, port, metrics_port):
    path.write_text(json.dumps({
        "server": {"name": "metrics-port", "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{port}", "metricsAddress": f"127.0.0.1:{metrics_port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": ["list_topics"],
        "auth": {"mode": "none"},
    }))
    return path


def test_metrics_are_served_only_on_the_metrics_address_when_it_is_set(stack_env, start_sidecar, tmp_path, free_port):
    metrics_port = _another_port()
    path = config(tmp_path / "sidecar.json", stack_env, free_port, metrics_port)
    sidecar = start_sidecar("--config", str(path), port=free_port)
    sidecar.wait_ready()
    session = RawSession(sidecar.port)
    assert session.initialize().status == 200
    assert session.call("list_topics").outcome == "ok"

    metrics_url = f"http://127.0.0.1:{metrics_port}"
    status, content_type, text = get(f"{metrics_url}/metrics")
    assert status == 200 and content_type.startswith("application/openmetrics-text"), (status, content_type)
    # The sidecar's own counters: the call just made over /mcp is in them.
    assert 'mcp_kafka_tool_calls_total{tool="list_topics",outcome="ok"} 1' in text, text
    assert "mcp_kafka_active_sessions 1" in text

    assert get(f"{sidecar.url}/metrics")[0] == 404, "the MCP address no longer serves /metrics"
    assert get(f"{sidecar.url}/healthz")[0] == 200 and get(f"{sidecar.url}/readyz")[0] == 200
    for path in ("/mcp", "/healthz", "/readyz", "/"):
        assert get(f"{metrics_url}{path}")[0] == 404, f"the metrics listener serves {path}"


def test_without_a_metrics_address_metrics_stay_on_the_mcp_address(start_sidecar):
    sidecar = start_sidecar("--tools", "observe")  # standalone mode
    sidecar.wait_ready()
    status, content_type, text = get(f"{sidecar.url}/metrics")
    assert status == 200 and "mcp_kafka_kafka_up" in text, (status, text[:200])


def test_sigterm_stops_both_listeners_and_a_taken_metrics_port_stops_the_start(stack_env, tmp_path, free_port):
    metrics_port = _another_port()
    path = config(tmp_path / "sidecar.json", stack_env, free_port, metrics_port)
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(sidecar_binary()), "--config", str(path)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while get_or_none(f"http://127.0.0.1:{metrics_port}/metrics") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert get_or_none(f"http://127.0.0.1:{free_port}/healthz") == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
        for port in (free_port, metrics_port):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    finally:
        if proc.poll() is None:
            proc.kill()

    # The metrics port taken by someone else: the sidecar does not start half.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        path = config(tmp_path / "taken.json", stack_env, _another_port(), taken_port)
        run = subprocess.run([str(sidecar_binary()), "--config", str(path)], capture_output=True, timeout=60)
    assert run.returncode != 0
    assert f"listening on 127.0.0.1:{taken_port}" in run.stderr.decode(), run.stderr.decode()


def get_or_none(url):
    try:
        return get(url)[0]
    except OSError:
        return None
