"""Topic and group scopes on a shared broker: two teams, each with a server
in its own namespace (real TokenReview and SubjectAccessReview), each
server scoped to its team's prefixes. Team A's agent cannot list, describe,
peek at, produce to, change, reset or delete team B's topics or groups
through any tool, native or mcp-confluent's names; Kafka is unchanged
afterwards; within its scope everything works; a client with a narrower
scope of its own gets it; a reload moves the scope; the audit record of a
refusal names the rule."""

import json
import time
import uuid

import anyio
import pytest
from conftest import _another_port, as_caller, outcome, sa_token, tool_error
from test_sidecar_reload_limits import wait_for_reload

SERVER = "shared"


def names():
    run = uuid.uuid4().hex[:6]
    a, b = f"team-a-{run}", f"team-b-{run}"
    return {
        "a": a, "b": b,
        "a_orders": f"{a}.orders", "a_payments": f"{a}.payments",
        "b_orders": f"{b}.orders", "b_missing": f"{b}.never-created",
        "a_group": f"{a}-billing", "b_group": f"{b}-billing",
    }


def scope_of(team: str, topics=None):
    return {"topics": {"allow": topics or [{"name": f"{team}.", "patternType": "prefix"}]},
            "groups": {"allow": [{"name": f"{team}-", "patternType": "prefix"}]}}


def write_config(path, stack_env, ns, port, tools, scope, client_scopes=()):
    path.write_text(json.dumps({
        "server": {"name": SERVER, "namespace": ns, "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]], "metadataMaxAgeMs": 0},
        "tools": tools,
        "toolNames": ["native", "confluent"],
        "auth": {"mode": "kubernetes"},
        "scope": scope,
        "clientScopes": list(client_scopes),
    }))


async def calls(url, token, work):
    async def run(session):
        return [await session.call_tool(tool, args) for tool, args in work]
    return await as_caller(url, token, run)


def refusals_by_team_a(n):
    """Every tool that names a topic or group, naming team B's (and one that
    does not exist: the answer must not tell them apart)."""
    return {
        "describe_topic": [{"topic": n["b_orders"]}, {"topic": n["b_missing"]}],
        "describe_configs": [{"resource_type": "topic", "name": n["b_orders"]}],
        "fetch_offsets": [{"topic": n["b_orders"]}],
        "consume_messages": [{"topic": n["b_orders"], "from": "earliest"}],
        "publish_message": [{"topic": n["b_orders"], "value": "from team a"}],
        "create_topic": [{"topic": n["b_missing"], "partitions": 1}],
        "delete_topic": [{"topic": n["b_orders"]}, {"topic": n["b_orders"], "dry_run": True}],
        "create_partitions": [{"topic": n["b_orders"], "total": 4}],
        "update_topic_config": [{"topic": n["b_orders"], "set": {"retention.ms": "1000"}}],
        "describe_group": [{"group_id": n["b_group"]}],
        "get_consumer_lag": [{"group_id": n["b_group"]}, {"group_id": n["a_group"], "topic": n["b_orders"]}],
        "delete_group": [{"group_id": n["b_group"]}],
        "reset_group_offsets": [{"group_id": n["b_group"], "topic": n["b_orders"], "to": "latest"},
                                {"group_id": n["a_group"], "topic": n["b_orders"], "to": "latest"}],
        "describe_acls": [{"resource_type": "topic", "name": n["b_orders"]},
                          {"resource_type": "group", "name": n["b_group"], "principal": "self"}],
    }


LISTINGS = {"cluster_status", "list_brokers", "list_topics", "list_groups"}


def kafka_state(admin_url, n):
    """What Kafka holds of team B's: partitions, the non-default configs, end
    offsets, the group's committed offsets (through an unscoped server)."""
    work = [("describe_topic", {"topic": n["b_orders"]}),
            ("fetch_offsets", {"topic": n["b_orders"]}),
            ("get_consumer_lag", {"group_id": n["b_group"]}),
            ("list_topics", {"name_contains": n["b"]})]
    results = anyio.run(calls, admin_url, "unused", work)
    assert all(not r.is_error for r in results), results
    state = [r.structured_content for r in results]
    return json.dumps(state, sort_keys=True)


@pytest.fixture
def ground(tool_grants, stack_env, start_sidecar, tmp_path):
    """Team A's and team B's servers and an unscoped admin server; the
    topics and groups of both teams; callers' tokens."""
    n = names()
    admin = start_sidecar("--tools", "all", "--metadata-max-age-ms", "0")
    admin.wait_ready()
    tools = [t.name for t in anyio.run(as_caller, admin.url, "unused", lambda s: s.list_tools()).tools]
    ns_a = tool_grants(SERVER, {"agent": tools, "reporter": ["list_topics", "describe_topic"]})
    ns_b = tool_grants(SERVER, {"agent": tools})
    env = {"KUBECONFIG": stack_env["KUBECONFIG"]}
    servers = {}
    for team, ns in (("a", ns_a), ("b", ns_b)):
        port = _another_port()
        config = tmp_path / f"team-{team}.json"
        client_scopes = []
        if team == "a":
            # The reporter's own scope: only the orders topic.
            client_scopes = [{"username": f"system:serviceaccount:{ns}:reporter",
                              "scope": scope_of(n["a"], [{"name": n["a_orders"]}])}]
        write_config(config, stack_env, ns, port, tools, scope_of(n[team]), client_scopes)
        sidecar = start_sidecar("--config", str(config), env=env, port=port)
        servers[team] = (sidecar, config, ns, port)
    for sidecar, *_ in servers.values():
        sidecar.wait_ready()
    # Each team makes its own topics and a group with committed offsets,
    # through its own server: within scope, mutations work.
    for team in ("a", "b"):
        sidecar, _, ns, _ = servers[team]
        token = sa_token(stack_env, ns, "agent", SERVER)
        work = [("create_topic", {"topic": n[f"{team}_orders"], "partitions": 2})]
        if team == "a":
            work.append(("create_topic", {"topic": n["a_payments"], "partitions": 1}))
        work += [("publish_message", {"topic": n[f"{team}_orders"], "value": f"{team} {i}", "partition": 0}) for i in range(3)]
        work.append(("reset_group_offsets", {"group_id": n[f"{team}_group"], "topic": n[f"{team}_orders"], "to": "earliest"}))
        results = anyio.run(calls, sidecar.url, token, work)
        assert [outcome(r) for r in results] == ["ok"] * len(work), [r.content for r in results]
    # Team A's group also committed on team B's topic (a group may read
    # another team's topics); only the unscoped admin can seed that.
    seeded = anyio.run(calls, admin.url, "unused",
                       [("reset_group_offsets", {"group_id": n["a_group"], "topic": n["b_orders"], "to": "earliest"})])
    assert outcome(seeded[0]) == "ok", seeded[0].content
    return n, servers, admin, tools


def test_team_a_cannot_reach_team_b_through_any_tool(ground, stack_env):
    n, servers, admin, tools = ground
    team_a, _, ns_a, _ = servers["a"]
    refusals = refusals_by_team_a(n)
    # Every tool is either a listing or in the table: a new tool must say.
    assert set(refusals) | LISTINGS == set(tools), set(tools) ^ (set(refusals) | LISTINGS)
    before = kafka_state(admin.url, n)
    work = [(tool, args) for tool, cases in refusals.items() for args in cases]
    # mcp-confluent's names run as the native tools, under the same scope.
    work += [("consume-messages", {"topics": [{"name": n["b_orders"]}]}),
             ("produce-message", {"topicName": n["b_orders"], "value": {"message": "x"}}),
             ("delete-topics", {"topicNames": [n["b_orders"]]})]
    token = sa_token(stack_env, ns_a, "agent", SERVER)
    results = anyio.run(calls, team_a.url, token, work)
    for (tool, args), result in zip(work, results):
        assert outcome(result) == "PERMISSION_DENIED", (tool, args, result.content)
        message = tool_error(result)["message"]
        assert "outside this server's scope (matches no allowed pattern)" in message, (tool, message)
        assert n["b"] in message, (tool, message)
    # An existing and a missing topic are refused alike (only the name differs).
    existing, missing = (tool_error(r)["message"] for r in results[:2])
    assert existing.replace(n["b_orders"], "X") == missing.replace(n["b_missing"], "X")
    assert kafka_state(admin.url, n) == before, "team A's calls changed team B's topic or group"
    # Kafka's own view: the topic team A tried to create does not exist.
    assert not any(t["name"] == n["b_missing"] for t in json.loads(before)[3]["topics"])


def test_listings_show_only_the_teams_own_topics_and_groups(ground, stack_env):
    n, servers, _admin, _ = ground
    team_a, _, ns_a, _ = servers["a"]
    token = sa_token(stack_env, ns_a, "agent", SERVER)
    work = [("list_topics", {}), ("list_groups", {}), ("cluster_status", {}),
            ("describe_group", {"group_id": n["a_group"]}), ("get_consumer_lag", {"group_id": n["a_group"]}),
            ("list-topics", {})]
    topics, groups, status, group, lag, compat_topics = (r.structured_content for r in anyio.run(calls, team_a.url, token, work))
    assert sorted(t["name"] for t in topics["topics"]) == [n["a_orders"], n["a_payments"]]
    assert topics["scoped"] is True and topics["total"] == 2
    assert [g["group_id"] for g in groups["groups"]] == [n["a_group"]] and groups["scoped"] is True
    assert (status["topic_count"], status["partition_count"], status["scoped"]) == (2, 3, True)
    assert group["scoped"] is True
    # The group committed on team B's topic too: its lag shows only team A's.
    assert {p["topic"] for p in lag["partitions"]} == {n["a_orders"]}, lag
    assert all(n["b"] not in json.dumps(x) for x in (topics, groups, group, lag, compat_topics))
    assert n["a_orders"] in json.dumps(compat_topics)


def test_within_scope_everything_works(ground, stack_env):
    n, servers, _admin, _ = ground
    team_a, _, ns_a, _ = servers["a"]
    token = sa_token(stack_env, ns_a, "agent", SERVER)
    t, g = n["a_orders"], n["a_group"]
    work = [("describe_topic", {"topic": t}), ("describe_configs", {"resource_type": "topic", "name": t}),
            ("describe_configs", {"resource_type": "broker", "name": "1"}),
            ("fetch_offsets", {"topic": t}), ("consume_messages", {"topic": t, "from": "earliest"}),
            ("update_topic_config", {"topic": t, "set": {"retention.ms": "3600000"}}),
            ("create_partitions", {"topic": t, "total": 3}),
            ("describe_group", {"group_id": g}), ("get_consumer_lag", {"group_id": g, "topic": t}),
            ("reset_group_offsets", {"group_id": g, "topic": t, "to": "latest"}),
            ("delete_group", {"group_id": g}), ("delete_topic", {"topic": n["a_payments"]})]
    results = anyio.run(calls, team_a.url, token, work)
    assert [outcome(r) for r in results] == ["ok"] * len(work), [(w[0], r.content) for w, r in zip(work, results) if r.is_error]
    assert [m["value"]["text"] for m in results[4].structured_content["messages"]] == ["a 0", "a 1", "a 2"]


def test_a_clients_own_scope_narrows_the_servers(ground, stack_env):
    n, servers, _admin, _ = ground
    team_a, _, ns_a, _ = servers["a"]
    token = sa_token(stack_env, ns_a, "reporter", SERVER)
    listed, own, sibling = anyio.run(calls, team_a.url, token, [
        ("list_topics", {}), ("describe_topic", {"topic": n["a_orders"]}), ("describe_topic", {"topic": n["a_payments"]})])
    assert [t["name"] for t in listed.structured_content["topics"]] == [n["a_orders"]]
    assert outcome(own) == "ok"
    assert outcome(sibling) == "PERMISSION_DENIED", sibling.content


def test_a_reload_moves_the_scope_and_refusals_are_audited_with_their_rule(ground, stack_env):
    n, servers, _admin, tools = ground
    team_a, config, ns_a, port = servers["a"]
    token = sa_token(stack_env, ns_a, "agent", SERVER)
    before = anyio.run(calls, team_a.url, token, [("describe_topic", {"topic": n["b_orders"]})])[0]
    assert outcome(before) == "PERMISSION_DENIED"
    # A deny rule wins over the allow rule it overlaps; team B's orders are let in.
    scope = scope_of(n["a"], [{"name": f"{n['a']}.", "patternType": "prefix"}, {"name": n["b_orders"]}])
    scope["topics"]["deny"] = [{"name": n["a_payments"]}]
    write_config(config, stack_env, ns_a, port, tools, scope)
    wait_for_reload(team_a, 1)
    now_b, now_payments = anyio.run(calls, team_a.url, token, [
        ("describe_topic", {"topic": n["b_orders"]}), ("describe_topic", {"topic": n["a_payments"]})])
    assert outcome(now_b) == "ok", now_b.content
    assert outcome(now_payments) == "PERMISSION_DENIED"
    assert f'denied by literal "{n["a_payments"]}"' in tool_error(now_payments)["message"]
    # Each refusal left a record: decision deny, the rule as the reason.
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in team_a.log.read_text().splitlines() if line.startswith("{") and '"tool"' in line]
        denials = [r for r in records if r.get("decision") == "deny" and r.get("outcome") == "PERMISSION_DENIED"]
        if len(denials) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    reasons = [d["reason"] for d in denials]
    assert any("matches no allowed pattern" in r and n["b_orders"] in r for r in reasons), reasons
    assert any(f'denied by literal "{n["a_payments"]}"' in r for r in reasons), reasons
