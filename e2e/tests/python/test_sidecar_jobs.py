"""Tool calls as Kafka jobs, against the real broker and apiserver: every
outcome a job can have, with its reply and its audit record (one each);
two-phase mutations as jobs; HTTP and jobs refused alike; and crash safety:
workers killed mid-stream answer every mutation job exactly once and every
observe job at least once, and never run a mutation twice (checked on
Kafka, not only in the replies).

The client is examples/jobs/mcp_kafka_jobs.py, as a user would use it."""

import json
import pathlib
import signal
import sys
import time
import uuid

import anyio
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import _another_port, as_caller, outcome, sa_token

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "examples" / "jobs"))
from mcp_kafka_jobs import JobClient  # noqa: E402

SERVER = "jobs"
GRANTED = ["list_topics", "describe_topic", "publish_message", "create_topic"]
TOOLS = ["list_topics", "describe_topic", "publish_message", "create_topic", "create_partitions"]
FAULT_ENV = "MCP_KAFKA_SIDECAR_TEST_FAULT"


def audit_records(sidecar):
    return [json.loads(line) for line in sidecar.log.read_text().splitlines() if '"mcp-kafka-sidecar.audit/v1"' in line]


class Topics:
    """The job topics of one test (unique names: the broker is shared)."""

    def __init__(self, bootstrap: str, partitions: int):
        self.bootstrap = bootstrap
        base = f"jobs-{uuid.uuid4().hex[:8]}"
        self.requests, self.replies, self.other_replies = f"{base}.requests", f"{base}.replies", f"{base}.replies2"
        self.dead_letters, self.journal, self.target = f"{base}.dead", f"{base}.journal", f"{base}.target"
        compacted = {"cleanup.policy": "compact,delete", "retention.ms": "86400000"}
        wanted = [NewTopic(self.requests, partitions, 1), NewTopic(self.journal, partitions, 1, config=compacted),
                  NewTopic(self.replies, 3, 1), NewTopic(self.other_replies, 1, 1), NewTopic(self.dead_letters, 1, 1),
                  NewTopic(self.target, 1, 1)]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics(wanted).values():
            future.result(30)

    def section(self, **extra):
        return {"requestTopic": self.requests, "replyTopics": [self.replies, self.other_replies],
                "deadLetterTopic": self.dead_letters, "journalTopic": self.journal, **extra}

    def read_all(self, topic: str) -> list:
        """Every committed record of `topic` (read to its end)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "enable.partition.eof": True})
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records, at_end = [], set()
        deadline = time.monotonic() + 30
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            records.append(message)
        consumer.close()
        return records


@pytest.fixture
def grants(tool_grants):
    return tool_grants(SERVER, {"agent": GRANTED, "bystander": None})


@pytest.fixture
def worker(grants, stack_env, start_sidecar, tmp_path):
    """worker(topics, environment=..., env=..., **config): a sidecar with a jobs section."""

    def start(topics, environment="dev", env=None, wait=True, **extra):
        port = _another_port()
        config = {
            "server": {"name": SERVER, "namespace": grants, "environment": environment},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": TOOLS,
            "auth": {"mode": "kubernetes"},
            "jobs": topics.section(),
            **extra,
        }
        path = tmp_path / f"jobs-{port}.json"
        path.write_text(json.dumps(config))
        sidecar = start_sidecar("--config", str(path), env={"KUBECONFIG": stack_env["KUBECONFIG"], **(env or {})}, port=port)
        if wait:
            sidecar.wait_ready()
            wait_assigned(sidecar)
        return sidecar

    return start


def wait_assigned(sidecar, timeout=60):
    """Until the worker says it took a partition (joined the group)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "job partition assigned" in sidecar.log.read_text():
            return
        if sidecar.proc.poll() is not None:
            pytest.fail(f"the sidecar exited: {sidecar.log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"the job worker took no partition: {sidecar.log.read_text()[-3000:]}")


def metrics(sidecar) -> dict[str, float]:
    """The sidecar's /metrics samples, by name with labels."""
    import urllib.request

    with urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and not line.startswith("#")}


def ago(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))


def test_each_outcome_has_one_reply_and_one_audit_record(worker, grants, stack_env):
    from test_sidecar_auth import resigned

    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 2)
    sidecar = worker(topics)
    token = sa_token(stack_env, grants, "agent", SERVER)
    bystander = sa_token(stack_env, grants, "bystander", SERVER)
    expired = resigned(stack_env, token, -60)
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        cases = {
            "ok": jobs.submit("list_topics", {}, token=token),
            "tool_error": jobs.submit("describe_topic", {"topic": f"{topics.target}-missing"}, token=token),
            "rbac": jobs.submit("create_partitions", {"topic": topics.target, "total": 2}, token=token),
            "rbac_nothing_granted": jobs.submit("list_topics", {}, token=bystander),
            "policy": jobs.submit("delete_topic", {"topic": topics.target}, token=token),
            "expired": jobs.submit("list_topics", {}, token=expired),
            "no_token": jobs.submit("list_topics", {}),
            "deadline": jobs.submit("list_topics", {}, token=token, deadline=ago(60)),
            "unknown_tool": jobs.submit("drop_everything", {}, token=token),
            "bad_arguments": jobs.submit("list_topics", None, token=token,
                                         value=json.dumps({"jobId": "bad-args-" + uuid.uuid4().hex, "tool": "list_topics",
                                                           "arguments": [1, 2]}).encode()),
            "misdirected": jobs.submit("list_topics", {}, token=token, reply_to="_mcp_audit"),
        }
        replies = jobs.replies([j for k, j in cases.items() if k != "bad_arguments"], timeout=90, settle=2)
        # Malformed records without a usable jobId: dead-lettered, not blocking.
        jobs.submit("list_topics", None, token=token, value=b"{not json")
        jobs.submit("list_topics", None, token=token, value=json.dumps({"tool": "list_topics"}).encode())
        after = jobs.submit("list_topics", {}, token=token)
        assert jobs.replies([after], timeout=60)[after][0]["ok"], "a malformed record blocked the partition"
    # Jobs of one partition run side by side, so `after` may be answered
    # before a malformed record is through: wait until nothing is in flight.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = metrics(sidecar)
        if seen["mcp_kafka_jobs_received_total"] >= len(cases) + 3 and seen["mcp_kafka_jobs_in_flight"] == 0:
            break
        time.sleep(0.2)

    def only(key):
        got = replies[cases[key]]
        assert len(got) == 1, (key, got)
        return got[0]

    expected = {"ok": "ok", "tool_error": "NOT_FOUND", "rbac": "PERMISSION_DENIED", "rbac_nothing_granted": "PERMISSION_DENIED",
                "policy": "NOT_FOUND", "expired": "UNAUTHENTICATED", "no_token": "UNAUTHENTICATED", "deadline": "TIMEOUT",
                "unknown_tool": "NOT_FOUND", "misdirected": "PERMISSION_DENIED"}
    for key, code in expected.items():
        reply = only(key)
        assert (reply["error"]["code"] if not reply["ok"] else "ok") == code, (key, reply)
        assert reply["startedAt"] <= reply["finishedAt"]
    ok = only("ok")
    assert topics.target in [t["name"] for t in ok["result"]["topics"]] or "topics" in ok["result"], ok
    assert "result" not in only("rbac") and only("rbac")["error"]["retriable"] is False
    assert "no RBAC grant of verb create_partitions" in only("rbac")["error"]["message"]
    assert "deadline" in only("deadline")["error"]["message"]

    # One audit record per answered job, saying via kafka, with the outcome the reply had.
    records = [r for r in audit_records(sidecar) if r.get("via") == "kafka"]
    by_job = {}
    for r in records:
        by_job.setdefault(r.get("jobId"), []).append(r)
    for key, code in expected.items():
        got = by_job.get(cases[key], [])
        assert len(got) == 1, (key, got)
        assert got[0]["outcome"] == code, (key, got[0])
    assert by_job[cases["ok"]][0]["decision"] == "allow"
    assert by_job[cases["ok"]][0]["subject"]["username"] == f"system:serviceaccount:{grants}:agent"
    assert by_job[cases["rbac"]][0]["decision"] == "deny"
    assert by_job[cases["ok"]][0]["requestId"].startswith(f"{topics.requests}/")
    dead_audited = [r for r in records if r.get("jobId") is None and "dead-lettered" in (r["reason"] or "")]
    assert len(dead_audited) == 2 and {r["outcome"] for r in dead_audited} == {"INVALID_ARGUMENT"}, dead_audited

    # The bad-arguments job was answered to its jobId.
    bad_replies = [json.loads(m.value()) for m in topics.read_all(topics.replies) if m.key().startswith(b"bad-args-")]
    assert [r["error"]["code"] for r in bad_replies] == ["INVALID_ARGUMENT"], bad_replies
    # The misdirected job was answered on the default topic, and nothing reached the named one.
    assert [m.key().decode() for m in topics.read_all(topics.replies)].count(cases["misdirected"]) == 1

    dead = [json.loads(m.value()) for m in topics.read_all(topics.dead_letters)]
    assert len(dead) == 2, dead
    assert {d["error"]["code"] for d in dead} == {"INVALID_ARGUMENT"}
    assert all(d["topic"] == topics.requests and "authorization" in d["headers"] for d in dead)

    # Metrics: received, answered by outcome, dead-lettered, in flight, lag per partition.
    seen = metrics(sidecar)
    assert seen['mcp_kafka_jobs_received_total'] >= len(cases) + 3, seen
    assert seen['mcp_kafka_jobs_answered_total{outcome="ok"}'] == 2
    assert seen['mcp_kafka_jobs_answered_total{outcome="UNAUTHENTICATED"}'] == 2
    assert seen['mcp_kafka_jobs_answered_total{outcome="TIMEOUT"}'] == 1
    assert seen['mcp_kafka_jobs_answered_total{outcome="PERMISSION_DENIED"}'] == 3
    assert seen['mcp_kafka_jobs_dead_lettered_total'] == 2
    assert seen['mcp_kafka_jobs_in_flight'] == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lag = {k: v for k, v in metrics(sidecar).items() if k.startswith("mcp_kafka_jobs_lag{")}
        if sorted(lag) == ['mcp_kafka_jobs_lag{partition="0"}', 'mcp_kafka_jobs_lag{partition="1"}'] and not any(lag.values()):
            break
        time.sleep(0.5)
    assert sorted(lag) == ['mcp_kafka_jobs_lag{partition="0"}', 'mcp_kafka_jobs_lag{partition="1"}'] and not any(lag.values()), lag

    # The token is nowhere but in the request records' headers.
    everything = sidecar.log.read_text() + "".join(
        m.value().decode() for t in (topics.replies, topics.dead_letters, topics.journal) for m in topics.read_all(t))
    for secret in (token, expired, bystander):
        assert secret not in everything


def test_two_phase_jobs_in_staging(worker, grants, stack_env):
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 1)
    worker(topics, environment="staging")
    token = sa_token(stack_env, grants, "agent", SERVER)
    new_topic = f"{topics.target}-made"
    create = {"topic": new_topic, "partitions": 2}
    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        # Same key for the dry run and its apply: the same partition, the same worker, its plan.
        direct = jobs.call("create_topic", create, token=token, key="session-1")
        assert not direct["ok"] and direct["error"]["code"] == "PERMISSION_DENIED" and "two-phase" in direct["error"]["message"]
        assert new_topic not in admin.list_topics(timeout=10).topics
        planned = jobs.call("create_topic", {**create, "dry_run": True}, token=token, key="session-1")
        assert planned["ok"], planned
        plan_id = planned["result"]["plan"]["id"]
        assert new_topic not in admin.list_topics(timeout=10).topics, "a dry run changes nothing"
        applied = jobs.call("create_topic", {**create, "plan_id": plan_id}, token=token, key="session-1")
        assert applied["ok"], applied
        assert len(admin.list_topics(timeout=10).topics[new_topic].partitions) == 2
        again = jobs.call("create_topic", {**create, "plan_id": plan_id}, token=token, key="session-1")
        assert again["error"]["code"] == "PLAN_EXPIRED", again


def test_http_and_jobs_are_refused_alike(worker, grants, stack_env):
    """Policy (a tool the server does not expose), the environment's fence
    (prod: no mutation without a break-glass window), scopes and RBAC
    refuse a job as they refuse the same call over MCP HTTP."""
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 1)
    scope = {"topics": {"allow": [{"name": topics.target}]}, "groups": {"allow": []}}
    sidecar = worker(topics, environment="prod", scope=scope)
    token = sa_token(stack_env, grants, "agent", SERVER)
    calls = [("delete_topic", {"topic": topics.target}),            # not exposed (policy)
             ("publish_message", {"topic": topics.target, "value": "x"}),  # prod, no break-glass
             ("describe_topic", {"topic": topics.requests}),         # out of scope
             ("create_partitions", {"topic": topics.target, "total": 3}),  # not granted
             ("describe_topic", {"topic": topics.target})]           # allowed

    async def over_http(session):
        return [outcome(await session.call_tool(tool, args)) for tool, args in calls]

    http = anyio.run(as_caller, sidecar.url, token, over_http)
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        ids = [jobs.submit(tool, args, token=token) for tool, args in calls]
        replies = jobs.replies(ids, timeout=60)
    as_jobs = [r[0]["error"]["code"] if not r[0]["ok"] else "ok" for r in (replies[i] for i in ids)]
    assert http == as_jobs == ["NOT_FOUND", "PERMISSION_DENIED", "PERMISSION_DENIED", "PERMISSION_DENIED", "ok"], (http, as_jobs)
    assert topics.read_all(topics.target) == [], "nothing was published"


def test_a_duplicate_job_id_gets_the_first_reply_and_runs_once(worker, grants, stack_env):
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 1)
    sidecar = worker(topics)
    token = sa_token(stack_env, grants, "agent", SERVER)
    job_id = f"dup-{uuid.uuid4().hex}"
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        for _ in range(3):
            jobs.submit("publish_message", {"topic": topics.target, "value": job_id}, token=token, job_id=job_id)
        replies = jobs.replies([job_id], timeout=60, settle=3)[job_id]
    assert len(replies) == 3 and all(r == replies[0] for r in replies), replies
    assert replies[0]["ok"], replies[0]
    assert [m.value().decode() for m in topics.read_all(topics.target)] == [job_id], "published once"
    audited = [r for r in audit_records(sidecar) if r.get("jobId") == job_id]
    assert [r["decision"] for r in audited] == ["allow", "deny", "deny"], audited


def test_a_worker_killed_between_mutation_and_reply_yields_outcome_unknown(worker, grants, stack_env):
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 1)
    doomed = worker(topics, env={FAULT_ENV: "exit-after-mutation"})
    token = sa_token(stack_env, grants, "agent", SERVER)
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        job_id = jobs.submit("publish_message", {"topic": topics.target, "value": "once"}, token=token)
        doomed.proc.wait(timeout=60)
        assert doomed.proc.returncode == 86, doomed.log.read_text()[-2000:]
        assert [m.value() for m in topics.read_all(topics.target)] == [b"once"], "the mutation ran"
        assert jobs.replies([job_id], timeout=2)[job_id] == [], "no reply before the crash"
        heir = worker(topics)
        replies = jobs.replies([job_id], timeout=90, settle=2)[job_id]
    assert [m.value() for m in topics.read_all(topics.target)] == [b"once"], "run once, not again"
    assert len(replies) == 1 and not replies[0]["ok"], replies
    assert replies[0]["error"]["code"] == "OUTCOME_UNKNOWN", replies
    [record] = [r for r in audit_records(heir) if r.get("jobId") == job_id]
    assert record["outcome"] == "OUTCOME_UNKNOWN" and record["via"] == "kafka"


def test_three_workers_one_killed_mid_stream_answer_every_job_once(worker, grants, stack_env):
    """A SIGKILLed worker: every mutation job answered exactly once (its
    reply and journal entry are one transaction), every observe job at
    least once and ok (its reply is written before its entry, outside a
    transaction: one whose worker died between the two runs again), no
    mutation applied twice."""
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 6)
    fast = {"limits": {"callsPerSecond": 2000, "callBurst": 4000}}
    workers = [worker(topics, **fast) for _ in range(3)]
    token = sa_token(stack_env, grants, "agent", SERVER)

    def kill():
        workers[0].proc.send_signal(signal.SIGKILL)
        workers[0].proc.wait(timeout=10)

    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        # Mid-stream: replies are flowing, jobs are running.
        publishes, observes = stream_of_jobs(jobs, topics, token, 240, 80, kill)
        replies = jobs.replies(publishes + observes, timeout=180, settle=5)
    check_answered_once(topics, replies, publishes, observes, "the kill")


def stream_of_jobs(jobs, topics, token, count, interrupt_at, interrupt):
    """`count` jobs, publishes and describes alternating; at `interrupt_at`,
    once replies flow (the first 10 publishes answered), `interrupt()`.
    Returns the publish and observe job IDs."""
    publishes, observes = [], []
    for i in range(count):
        if i % 2:
            publishes.append(jobs.submit("publish_message", {"topic": topics.target, "value": f"v-{i}"}, token=token))
        else:
            observes.append(jobs.submit("describe_topic", {"topic": topics.target}, token=token))
        if i == interrupt_at:
            jobs.replies(publishes[:10], timeout=60)
            interrupt()
    return publishes, observes


def check_answered_once(topics, replies, publishes, observes, fault):
    """Every job answered; every mutation exactly once and applied at most
    once (on Kafka: each value published once), its reply ok or
    OUTCOME_UNKNOWN; every observe job ok, at least once."""
    missing = [j for j, r in replies.items() if not r]
    assert not missing, f"{len(missing)} jobs unanswered"
    twice = {j: replies[j] for j in publishes if len(replies[j]) != 1}
    assert not twice, f"mutations answered more than once: {list(twice.items())[:3]}"
    assert all(r["ok"] for j in observes for r in replies[j]), [replies[j] for j in observes if not all(r["ok"] for r in replies[j])][:3]
    observed_again = [j for j in observes if len(replies[j]) > 1]
    published = [m.value().decode() for m in topics.read_all(topics.target)]
    assert len(published) == len(set(published)), "a mutation was applied twice"
    by_value = {f"v-{i}": j for i, j in zip(range(1, 2 * len(publishes), 2), publishes)}
    for value, job_id in by_value.items():
        reply = replies[job_id][0]
        if reply["ok"]:
            assert published.count(value) == 1, value
        else:
            assert reply["error"]["code"] == "OUTCOME_UNKNOWN", reply
    unknown = [j for j in publishes if not replies[j][0]["ok"]]
    print(f"{len(publishes) - len(unknown)} publishes ok, {len(unknown)} OUTCOME_UNKNOWN after {fault};"
          f" {len(observed_again)} observe jobs answered twice")


def test_a_worker_stopped_gracefully_finishes_its_jobs_and_hands_over(worker, grants, stack_env):
    """SIGTERM: the worker stops taking jobs, finishes those it runs,
    commits and leaves the group; the other takes over at once. No job is
    left OUTCOME_UNKNOWN, none is answered twice, none applied twice."""
    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 4)
    fast = {"limits": {"callsPerSecond": 2000, "callBurst": 4000}}
    leaving, staying = worker(topics, **fast), worker(topics, **fast)
    token = sa_token(stack_env, grants, "agent", SERVER)
    publishes = []
    with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
        for i in range(120):
            publishes.append(jobs.submit("publish_message", {"topic": topics.target, "value": f"g-{i}"}, token=token))
            if i == 40:
                jobs.replies(publishes[:5], timeout=60)
                leaving.proc.send_signal(signal.SIGTERM)
        replies = jobs.replies(publishes, timeout=120, settle=3)
    assert leaving.proc.wait(timeout=60) == 0, leaving.log.read_text()[-2000:]
    assert all(len(r) == 1 for r in replies.values()), [r for r in replies.values() if len(r) != 1][:3]
    assert [r[0]["error"]["code"] for r in replies.values() if not r[0]["ok"]] == []
    published = sorted(m.value().decode() for m in topics.read_all(topics.target))
    assert published == sorted(f"g-{i}" for i in range(120))
    answered_by_leaving = [r for r in audit_records(leaving) if r.get("via") == "kafka"]
    assert answered_by_leaving, "the leaving worker answered nothing before it left"
    assert staying.proc.poll() is None
    # A hand-over is routine: neither worker logged an ERROR (reading a
    # journal partition to its end was one, "PartitionEOF", until 2026-12-03).
    for sidecar in (leaving, staying):
        errors = [line for line in sidecar.log.read_text().splitlines() if '"level":"ERROR"' in line]
        assert errors == [], errors[:3]


def test_at_most_max_in_flight_jobs_run_at_once(worker, grants, stack_env):
    import threading

    topics = Topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], 2)
    fast = {"limits": {"callsPerSecond": 2000, "callBurst": 4000}}
    sidecar = worker(topics, jobs=topics.section(maxInFlight=2), **fast)
    token = sa_token(stack_env, grants, "agent", SERVER)
    observed, done = [], threading.Event()

    def sample():
        while not done.is_set():
            observed.append(metrics(sidecar)["mcp_kafka_jobs_in_flight"])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with JobClient(topics.bootstrap, topics.requests, topics.replies) as jobs:
            ids = [jobs.submit("publish_message", {"topic": topics.target, "value": f"c-{i}"}, token=token) for i in range(80)]
            replies = jobs.replies(ids, timeout=120)
    finally:
        done.set()
        sampler.join()
    assert all(len(r) == 1 and r[0]["ok"] for r in replies.values())
    print(f"in flight: max {max(observed)} over {len(observed)} samples")
    assert 1 <= max(observed) <= 2, max(observed)
