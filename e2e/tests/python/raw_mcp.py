"""A minimal MCP client over Streamable HTTP (2025-06-18 sessions) that
shows what the SDK hides: HTTP statuses and headers (it turns a 401, 413 or
429 into an exception and drops the session), and the client's source
address (any of 127.0.0.0/8), which the sidecar's per-source limits key on."""

import http.client
import json

from conftest import ERROR_META_KEY

PROTOCOL = "2025-06-18"


class Answer:
    """One HTTP answer: status, headers, and the JSON-RPC message with an id, if any."""

    def __init__(self, status, headers, message):
        self.status, self.headers, self.message = status, headers, message

    @property
    def outcome(self):
        """For a tools/call: "ok", or the tool error's code."""
        result = (self.message or {}).get("result", {})
        return result["_meta"][ERROR_META_KEY]["code"] if result.get("isError") else "ok"

    @property
    def rpc_error(self):
        return (self.message or {}).get("error")


def post(port, body, headers=None, source="127.0.0.1", timeout=30) -> Answer:
    """POST /mcp from `source`; `body` is a dict (sent as JSON) or bytes. A new connection each time."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST", "/mcp", body=data, headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **(headers or {})})
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        status, answer_headers = response.status, response.headers  # case-insensitive
    finally:
        conn.close()
    events = [line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
    messages = []
    for raw in events or ([text] if text.strip().startswith("{") else []):
        try:
            messages.append(json.loads(raw))
        except ValueError:
            pass
    return Answer(status, answer_headers, next((m for m in messages if "id" in m), None))


def initialize_body(client="raw-test"):
    return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": client, "version": "0"}}}


class RawSession:
    def __init__(self, port, token=None, source="127.0.0.1"):
        self.port, self.token, self.source, self.session, self.next_id = port, token, source, None, 0

    def headers(self):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.session:
            headers |= {"Mcp-Session-Id": self.session, "MCP-Protocol-Version": PROTOCOL}
        return headers

    def initialize(self) -> Answer:
        answer = post(self.port, initialize_body(), self.headers(), self.source)
        if answer.status == 200:
            self.session = answer.headers.get("Mcp-Session-Id")
            post(self.port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, self.headers(), self.source)
        return answer

    def request(self, method, params=None, pad=0) -> Answer:
        """A JSON-RPC request in this session; `pad` adds that many bytes
        to `params._meta` (a body of a chosen size that MCP ignores)."""
        self.next_id += 1
        params = dict(params or {})
        if pad:
            params["_meta"] = {"pad": "x" * pad}
        return post(self.port, {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params},
                    self.headers(), self.source)

    def call(self, tool, arguments=None, pad=0) -> Answer:
        return self.request("tools/call", {"name": tool, "arguments": arguments or {}}, pad)
