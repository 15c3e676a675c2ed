"""mcp-confluent's tool names (`toolNames: [native, confluent]`) under
Kubernetes auth: a compat tool is listed and callable exactly when the caller
may call its native tool (the RBAC verb is the native name), its calls follow
the environment's rules (two-phase plans in staging), and every native call
it makes is audited under both names. Real Roles, TokenReview and
SubjectAccessReview, the stack's broker."""

import json
import uuid

import anyio
import pytest
from conftest import as_caller, outcome, sa_token, tool_error

SERVER = "compat"
TOOLS = ["list_topics", "describe_topic", "create_topic", "delete_topic"]


@pytest.fixture
def rbac(tool_grants):
    """`reader` may call list_topics only; `admin` every tool of the server."""
    return tool_grants(SERVER, {"reader": ["list_topics"], "admin": TOOLS})


@pytest.fixture
def server(rbac, stack_env, start_sidecar, tmp_path):
    """server(tool_names, environment="dev"): a sidecar with Kubernetes auth
    (tool_names None: the field left out, its default)."""
    started = []

    def start(tool_names, environment="dev"):
        port = _port()
        body = {
            "server": {"name": SERVER, "namespace": rbac, "environment": environment},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": TOOLS,
            "auth": {"mode": "kubernetes"},
        }
        if tool_names is not None:
            body["toolNames"] = tool_names
        config = tmp_path / f"sidecar{len(started)}.json"
        config.write_text(json.dumps(body))
        sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=port)
        sidecar.wait_ready()
        started.append(sidecar)
        return sidecar

    return start


def _port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as(stack_env, ns, sa, url, work):
    return anyio.run(as_caller, url, sa_token(stack_env, ns, sa, SERVER), work)


async def listed(session):
    return {t.name: t for t in (await session.list_tools()).tools}


def audit_records(sidecar, ns, sa):
    name = f"system:serviceaccount:{ns}:{sa}"
    records = [json.loads(line) for line in sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]
    return [r for r in records if (r.get("subject") or {}).get("username") == name]


def test_a_compat_tool_is_listed_and_callable_exactly_when_its_native_tool_is(server, rbac, stack_env):
    sidecar = server(["native", "confluent"])
    topic = f"compat-{uuid.uuid4().hex[:8]}"

    async def admin_setup(session):
        tools = await listed(session)
        made = await session.call_tool("create-topics", {"topics": [{"topic": topic, "numPartitions": 2}]})
        return tools, made

    admin_tools, made = run_as(stack_env, rbac, "admin", sidecar.url, admin_setup)
    assert not made.is_error, made
    assert made.structured_content["created"] == [topic]
    assert {"create-topics", "delete-topics", "list-topics", "get_topic_metadata"} <= set(admin_tools)
    # A compat tool does what its native tool does, and says so the same way.
    for compat, native in [("list-topics", "list_topics"), ("delete-topics", "delete_topic"),
                           ("create-topics", "create_topic"), ("get_topic_metadata", "describe_topic")]:
        assert admin_tools[compat].annotations == admin_tools[native].annotations, compat
    assert admin_tools["delete-topics"].annotations.destructive_hint is True

    async def reader(session):
        tools = await listed(session)
        allowed = await session.call_tool("list-topics", {})
        denied = await session.call_tool("delete-topics", {"topicNames": [topic]})
        # Bad arguments are refused as the call is: the caller learns nothing
        # about the arguments of a tool it may not call.
        denied_bad_args = await session.call_tool("delete-topics", {"topicNames": []})
        return tools, allowed, denied, denied_bad_args

    tools, allowed, denied, denied_bad_args = run_as(stack_env, rbac, "reader", sidecar.url, reader)
    assert sorted(tools) == ["list-topics", "list_topics"]
    assert not allowed.is_error, allowed
    assert topic in allowed.structured_content["topics"]
    assert allowed.content[0].text.startswith("Kafka topics: "), "mcp-confluent's wording"
    for refused in (denied, denied_bad_args):
        error = tool_error(refused)
        assert error["code"] == "PERMISSION_DENIED", error
        assert "delete_topic" in error["message"], "the verb a grant needs"
        assert refused.structured_content is None, "the error contract of native tools"

    # The topic is still there.
    async def still_there(session):
        return await session.call_tool("list-topics", {})

    assert topic in run_as(stack_env, rbac, "reader", sidecar.url, still_there).structured_content["topics"]

    # One record per native call, under both names; refusals too.
    assert [(r["tool"], r.get("calledAs"), r["decision"], r["outcome"]) for r in audit_records(sidecar, rbac, "reader")] == [
        ("list_topics", "list-topics", "allow", "ok"),
        ("delete_topic", "delete-topics", "deny", "PERMISSION_DENIED"),
        ("delete_topic", "delete-topics", "deny", "PERMISSION_DENIED"),
        ("list_topics", "list-topics", "allow", "ok"),
    ]

    async def admin_cleanup(session):
        invalid = await session.call_tool("delete-topics", {"topicNames": []})
        deleted = await session.call_tool("delete-topics", {"topicNames": [topic]})
        return invalid, deleted

    invalid, deleted = run_as(stack_env, rbac, "admin", sidecar.url, admin_cleanup)
    assert tool_error(invalid)["code"] == "INVALID_ARGUMENT", "allowed callers do see argument errors"
    assert "topicNames" in tool_error(invalid)["message"]
    assert not deleted.is_error and deleted.structured_content["deleted"] == [topic], deleted
    records = [(r["tool"], r.get("calledAs"), r["decision"], r["outcome"], r["arguments"].get("topic"))
               for r in audit_records(sidecar, rbac, "admin")]
    assert records == [
        ("create_topic", "create-topics", "allow", "ok", topic),
        ("delete_topic", "delete-topics", "deny", "INVALID_ARGUMENT", None),
        ("delete_topic", "delete-topics", "allow", "ok", topic),
    ], records


def test_the_servers_tool_names_decide_which_names_are_listed_and_answered(server, rbac, stack_env):
    async def names_and_calls(session):
        names = sorted(await listed(session))
        compat = await session.call_tool("list-topics", {})
        native = await session.call_tool("list_topics", {})
        return names, outcome(compat), outcome(native)

    native_only = server(None)  # the default: [native]
    names, compat, native = run_as(stack_env, rbac, "admin", native_only.url, names_and_calls)
    assert names == sorted(TOOLS), "no compat names"
    assert (compat, native) == ("NOT_FOUND", "ok")

    compat_only = server(["confluent"])
    names, compat, native = run_as(stack_env, rbac, "admin", compat_only.url, names_and_calls)
    assert names == sorted(["list-topics", "create-topics", "delete-topics", "get_topic_metadata"])
    assert (compat, native) == ("ok", "NOT_FOUND")


def test_compat_mutations_follow_the_environments_two_phase_rule(server, rbac, stack_env):
    staging = server(["native", "confluent"], environment="staging")
    topics = [f"compat-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    create = {"topics": [{"topic": t, "numPartitions": 1} for t in topics]}

    async def admin(session):
        direct = await session.call_tool("create-topics", create)
        planned = await session.call_tool("create-topics", {**create, "dry_run": True})
        assert not planned.is_error, planned
        plan_ids = planned.structured_content["plan_ids"]
        applied = await session.call_tool("create-topics", {**create, "plan_ids": plan_ids})
        again = await session.call_tool("create-topics", {**create, "plan_ids": plan_ids})
        listing = await session.call_tool("list-topics", {})
        cleanup = [await session.call_tool("delete-topics", {"topicNames": [t], "dry_run": True}) for t in topics]
        for t, plan in zip(topics, cleanup):
            await session.call_tool("delete-topics", {"topicNames": [t], "plan_id": plan.structured_content["plan_ids"][0]})
        return direct, planned, applied, again, listing

    direct, planned, applied, again, listing = run_as(stack_env, rbac, "admin", staging.url, admin)
    error = tool_error(direct)
    assert error["code"] == "PERMISSION_DENIED" and "two-phase" in error["message"], error
    assert len(planned.structured_content["plan_ids"]) == 2
    assert not applied.is_error and applied.structured_content["created"] == topics, applied
    assert tool_error(again)["code"] == "PLAN_EXPIRED", "a plan is spent by its apply"
    assert set(topics) <= set(listing.structured_content["topics"])

    records = audit_records(staging, rbac, "admin")
    creates = [(r["calledAs"], r["dryRun"], r["planId"] is not None, r["outcome"]) for r in records if r["tool"] == "create_topic"]
    # The refused direct call stops at its first topic; the plan and its apply
    # are one native call per topic.
    assert creates[:5] == [("create-topics", False, False, "PERMISSION_DENIED"),
                           ("create-topics", True, True, "ok"), ("create-topics", True, True, "ok"),
                           ("create-topics", False, True, "ok"), ("create-topics", False, True, "ok")], creates
