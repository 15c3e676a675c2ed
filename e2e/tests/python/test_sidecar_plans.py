"""Two-phase mutations on a staging server with Kubernetes auth: a dry run
makes a plan bound to its caller, tool, arguments and the state it read; the
apply names it. Every refusal leaves Kafka as it was (checked on Kafka)."""

import json
import time
import uuid

import anyio
import pytest
from conftest import as_caller, outcome, sa_token, tool_error

SERVER = "plans"
TOOLS = ["list_topics", "describe_topic", "create_topic", "create_partitions", "update_topic_config",
         "publish_message", "reset_group_offsets", "list_groups", "describe_group"]


@pytest.fixture
def callers(tool_grants):
    """Namespace with `alice` and `bob`, both granted every tool of the server."""
    return tool_grants(SERVER, {"alice": TOOLS, "bob": TOOLS})


@pytest.fixture
def staging(callers, stack_env, start_sidecar, tmp_path):
    def start(**extra):
        from conftest import _another_port

        port = _another_port()
        config = {
            "server": {"name": SERVER, "namespace": callers, "environment": "staging"},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": TOOLS,
            "auth": {"mode": "kubernetes"},
            **extra,
        }
        path = tmp_path / f"staging-{port}.json"
        path.write_text(json.dumps(config))
        sidecar = start_sidecar("--config", str(path), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=port)
        sidecar.wait_ready()
        return sidecar

    return start


class Caller:
    def __init__(self, stack_env, ns, name, url):
        self.bearer = sa_token(stack_env, ns, name, SERVER)
        self.url = url

    def call(self, tool, args):
        async def work(session):
            return await session.call_tool(tool, args)

        return anyio.run(as_caller, self.url, self.bearer, work)

    def plan(self, tool, args):
        result = self.call(tool, {**args, "dry_run": True})
        assert not result.is_error, result
        return result.structured_content["plan"]["id"]

    def plan_and_apply(self, tool, args):
        applied = self.call(tool, {**args, "plan_id": self.plan(tool, args)})
        assert not applied.is_error, applied
        return applied


def partitions(caller, topic):
    described = caller.call("describe_topic", {"topic": topic})
    return None if described.is_error else len(described.structured_content["partitions"])


def audit_records(sidecar):
    return [json.loads(line) for line in sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]


def test_a_plan_applies_once_only_for_its_caller_and_arguments(staging, callers, stack_env):
    sidecar = staging()
    alice, bob = (Caller(stack_env, callers, n, sidecar.url) for n in ("alice", "bob"))
    topic = f"plans-{uuid.uuid4().hex[:8]}"
    create = {"topic": topic, "partitions": 1}

    # In staging a mutation without a plan is refused.
    direct = alice.call("create_topic", create)
    assert outcome(direct) == "PERMISSION_DENIED" and "two-phase" in tool_error(direct)["message"]
    assert partitions(alice, topic) is None

    # Plan, then apply: Kafka changes.
    planned = alice.call("create_topic", {**create, "dry_run": True})
    assert not planned.is_error, planned
    plan = planned.structured_content["plan"]
    assert plan["id"].startswith("plan-") and plan["expires_at"]
    assert partitions(alice, topic) is None, "a dry run changes nothing"
    assert outcome(alice.call("create_topic", {**create, "plan_id": plan["id"]})) == "ok"
    assert partitions(alice, topic) == 1

    # A plan is spent by its apply.
    reused = alice.call("create_topic", {**create, "plan_id": plan["id"]})
    assert outcome(reused) == "PLAN_EXPIRED"

    grow = {"topic": topic, "total": 3}
    plan_id = alice.plan("create_partitions", grow)
    # Another caller cannot apply it, and learns nothing from trying.
    stolen = bob.call("create_partitions", {**grow, "plan_id": plan_id})
    assert outcome(stolen) == "PERMISSION_DENIED"
    assert "another caller" in tool_error(stolen)["message"]
    # Other arguments than planned are refused.
    assert outcome(alice.call("create_partitions", {"topic": topic, "total": 4, "plan_id": plan_id})) == "INVALID_ARGUMENT"
    assert partitions(alice, topic) == 1, "refused applies changed nothing"
    assert outcome(alice.call("create_partitions", {**grow, "plan_id": plan_id})) == "ok"
    assert partitions(alice, topic) == 3

    # The audit trail ties each apply to its plan, with the diff.
    records = [r for r in audit_records(sidecar) if r["tool"] == "create_partitions" and r["outcome"] == "ok"]
    plan_record, apply_record = records
    assert plan_record["dryRun"] and plan_record["planId"] == plan_id == apply_record["planId"]
    assert apply_record["diff"]["before"] == 1 and apply_record["diff"]["after"] == 3 and not apply_record["dryRun"]
    assert apply_record["subject"]["username"] == f"system:serviceaccount:{callers}:alice"


def test_a_plan_is_refused_when_the_state_changed_since(staging, callers, stack_env):
    sidecar = staging()
    alice, bob = (Caller(stack_env, callers, n, sidecar.url) for n in ("alice", "bob"))
    topic = f"plans-{uuid.uuid4().hex[:8]}"
    alice.plan_and_apply("create_topic", {"topic": topic, "partitions": 1})

    # A config changed by someone else between plan and apply.
    retention = {"topic": topic, "set": {"retention.ms": "1000000"}}
    plan_id = alice.plan("update_topic_config", retention)
    bob.plan_and_apply("update_topic_config", {"topic": topic, "set": {"retention.ms": "2000000"}})
    conflict = alice.call("update_topic_config", {**retention, "plan_id": plan_id})
    assert outcome(conflict) == "CONFLICT", conflict
    configs = alice.call("describe_topic", {"topic": topic}).structured_content["configs"]
    assert configs.get("retention.ms") == "2000000", configs

    # Partitions added by someone else between plan and apply.
    plan_id = alice.plan("create_partitions", {"topic": topic, "total": 2})
    bob.plan_and_apply("create_partitions", {"topic": topic, "total": 3})
    conflict = alice.call("create_partitions", {"topic": topic, "total": 2, "plan_id": plan_id})
    assert outcome(conflict) == "CONFLICT", conflict
    assert partitions(alice, topic) == 3


def test_a_plan_expires(staging, callers, stack_env):
    sidecar = staging(plans={"ttlSeconds": 2})
    alice = Caller(stack_env, callers, "alice", sidecar.url)
    topic = f"plans-{uuid.uuid4().hex[:8]}"
    create = {"topic": topic, "partitions": 1}
    plan_id = alice.plan("create_topic", create)
    time.sleep(3)
    expired = alice.call("create_topic", {**create, "plan_id": plan_id})
    assert outcome(expired) == "PLAN_EXPIRED", expired
    assert partitions(alice, topic) is None


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_reset_plan_is_refused_once_the_group_has_an_active_member(staging, callers, stack_env, tmp_path, protocol):
    """A group with committed offsets and no members: a reset is planned;
    then a real consumer joins and stays (with the classic protocol, and
    with Kafka 4's consumer group protocol); the apply is CONFLICT and the
    committed offsets are what they were, as Kafka's own tool reads them."""
    from conftest import GroupMember, consumer_group_rows

    sidecar = staging()
    alice = Caller(stack_env, callers, "alice", sidecar.url)
    topic, group = f"plans-{uuid.uuid4().hex[:8]}", f"plans-group-{uuid.uuid4().hex[:8]}"
    alice.plan_and_apply("create_topic", {"topic": topic, "partitions": 1})
    for i in range(3):
        alice.plan_and_apply("publish_message", {"topic": topic, "value": f"message {i}", "partition": 0})
    alice.plan_and_apply("reset_group_offsets", {"group_id": group, "topic": topic, "to": "latest"})

    def committed():
        return {int(row[2]): row[3] for row in consumer_group_rows(stack_env, group, "offsets")}

    assert committed() == {0: "3"}
    rewind = {"group_id": group, "topic": topic, "to": "earliest"}
    planned = alice.call("reset_group_offsets", {**rewind, "dry_run": True})
    assert not planned.is_error, planned
    assert planned.structured_content["partitions"] == [{"partition": 0, "before": 3, "after": 0}]
    plan_id = planned.structured_content["plan"]["id"]

    member = GroupMember(stack_env, topic, group, tmp_path / f"consumer-{protocol}.log", protocol)
    try:
        deadline = time.monotonic() + 60
        while not consumer_group_rows(stack_env, group, "members"):
            assert member.proc.poll() is None, (tmp_path / f"consumer-{protocol}.log").read_text()
            assert time.monotonic() < deadline, "the consumer never joined the group"
            time.sleep(0.5)
        conflict = alice.call("reset_group_offsets", {**rewind, "plan_id": plan_id})
        assert outcome(conflict) == "CONFLICT", conflict
        assert committed() == {0: "3"}, "a refused apply moved the committed offsets"
    finally:
        member.stop()

    # The control: once the group is empty again, the same reset planned anew applies.
    alice.plan_and_apply("reset_group_offsets", rewind)
    assert committed() == {0: "0"}


def test_an_active_group_of_the_consumer_protocol_is_seen_as_active(staging, callers, stack_env, tmp_path):
    """Kafka 4's consumer group protocol (KIP-848, `group.protocol=consumer`):
    a group with a member is described with it, listed as alive, and a reset
    dry run refuses it as for a classic group, rather than planning a change
    its apply cannot make."""
    from conftest import GroupMember, consumer_group_rows

    sidecar = staging()
    alice = Caller(stack_env, callers, "alice", sidecar.url)
    topic, group = f"plans-{uuid.uuid4().hex[:8]}", f"plans-group-{uuid.uuid4().hex[:8]}"
    alice.plan_and_apply("create_topic", {"topic": topic, "partitions": 1})
    member = GroupMember(stack_env, topic, group, tmp_path / "consumer.log", "consumer")
    try:
        deadline = time.monotonic() + 60
        while not consumer_group_rows(stack_env, group, "members"):
            assert member.proc.poll() is None and time.monotonic() < deadline, "the consumer never joined the group"
            time.sleep(0.5)
        described = alice.call("describe_group", {"group_id": group})
        listed = alice.call("list_groups", {"name_contains": group})
        dry_run = alice.call("reset_group_offsets", {"group_id": group, "topic": topic, "to": "earliest", "dry_run": True})
    finally:
        member.stop()

    def alive(state):  # a KIP-848 group with members is Assigning, Reconciling or Stable
        return "alive" if state not in ("Empty", "Dead") else state

    seen = {
        "describe_group": outcome(described) if described.is_error
        else (alive(described.structured_content["state"]), len(described.structured_content["members"])),
        "list_groups": [alive(g["state"]) for g in listed.structured_content["groups"]],
        "reset dry run": outcome(dry_run),
    }
    assert seen == {"describe_group": ("alive", 1), "list_groups": ["alive"], "reset dry run": "CONFLICT"}, seen
