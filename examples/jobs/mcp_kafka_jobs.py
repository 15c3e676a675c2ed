"""Submit MCP Kafka tool calls as Kafka jobs, and wait for their replies.

A job is one record on the server's request topic (spec.jobs.requestTopic):

    value    {"jobId": "...", "tool": "list_topics", "arguments": {...}, "deadline": "RFC 3339"?}
    headers  authorization: "Bearer <token>"   (a token for the server's audience)
             replyTo: "<one of spec.jobs.replyTopics>"   (optional; default: the first)
    key      anything; records with the same key go to the same partition,
             which dedups jobIds and keeps a dry run's plan for its apply

The reply, keyed by jobId, on the reply topic (read it with isolation.level=read_committed):

    {"jobId": "...", "ok": true, "result": <the tool's structured output>, "startedAt": ..., "finishedAt": ...}
    {"jobId": "...", "ok": false, "error": {"code": "PERMISSION_DENIED", "message": ..., "retriable": false}, ...}

Usage (confluent-kafka >= 2):

    with JobClient("kafka:9092", "orders.jobs", "orders.jobs.replies") as jobs:
        reply = jobs.call("list_topics", {}, token=open("/var/run/secrets/mcp/token").read().strip())
        print(reply["result"])

or from a shell:

    python mcp_kafka_jobs.py --bootstrap kafka:9092 --requests orders.jobs --replies orders.jobs.replies \
        --token-file token list_topics '{}'
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition


class JobClient:
    """A producer for jobs and a consumer of one reply topic (from its end
    at start: only replies to jobs submitted after it are seen)."""

    def __init__(self, bootstrap: str, request_topic: str, reply_topic: str, config: dict | None = None):
        common = {"bootstrap.servers": bootstrap, **(config or {})}
        # acks=all and idempotence: a submitted job is on the topic once.
        self._producer = Producer({**common, "acks": "all", "enable.idempotence": True, "linger.ms": 1})
        self._consumer = Consumer({**common, "group.id": f"mcp-jobs-client-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "isolation.level": "read_committed"})
        self.request_topic, self.reply_topic = request_topic, reply_topic
        metadata = self._consumer.list_topics(reply_topic, timeout=10)
        partitions = metadata.topics[reply_topic].partitions
        if not partitions:
            raise KafkaException(f"reply topic {reply_topic} does not exist")
        self._consumer.assign([TopicPartition(reply_topic, p, OFFSET_END) for p in partitions])
        # Wait until every partition has a position, so no reply is missed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self._consumer.poll(0.05)
            if all(tp.offset >= 0 for tp in self._consumer.position(self._consumer.assignment())):
                break
        self._replies: dict[str, list[dict]] = {}

    def submit(self, tool: str, arguments: dict | None = None, *, token: str | None = None,
               job_id: str | None = None, key: str | None = None, deadline: str | None = None,
               reply_to: str | None = None, value: bytes | None = None) -> str:
        """Puts one job on the request topic and returns its jobId. `value`
        sends raw bytes instead (to test malformed records)."""
        job_id = job_id or uuid.uuid4().hex
        if value is None:
            job = {"jobId": job_id, "tool": tool, "arguments": arguments or {}}
            if deadline:
                job["deadline"] = deadline
            value = json.dumps(job).encode()
        headers = []
        if token:
            headers.append(("authorization", f"Bearer {token}".encode()))
        if reply_to:
            headers.append(("replyTo", reply_to.encode()))
        errors = []
        self._producer.produce(self.request_topic, value=value, key=(key or job_id).encode(), headers=headers,
                               on_delivery=lambda err, _msg: errors.append(err) if err else None)
        self._producer.flush(30)
        if errors:
            raise KafkaException(errors[0])
        return job_id

    def replies(self, job_ids: list[str], timeout: float = 60.0, settle: float = 0.0) -> dict[str, list[dict]]:
        """Reads replies until each of `job_ids` has one (then `settle` more
        seconds, to see any second reply), or until `timeout`. Returns every
        reply seen, by jobId (a list: exactly one each, normally)."""
        deadline = time.monotonic() + timeout
        settled = None
        while time.monotonic() < (settled or deadline):
            message = self._consumer.poll(0.1)
            if message is not None and not message.error():
                reply = json.loads(message.value())
                self._replies.setdefault(reply["jobId"], []).append(reply)
            if settled is None and all(j in self._replies for j in job_ids):
                settled = time.monotonic() + settle
        return {j: self._replies.get(j, []) for j in job_ids}

    def call(self, tool: str, arguments: dict | None = None, *, token: str | None = None,
             timeout: float = 60.0, **submit) -> dict:
        """Submits one job and returns its reply."""
        job_id = self.submit(tool, arguments, token=token, **submit)
        got = self.replies([job_id], timeout)[job_id]
        if not got:
            raise TimeoutError(f"no reply to job {job_id} within {timeout}s")
        return got[0]

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(10)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--requests", required=True, help="the server's request topic")
    parser.add_argument("--replies", required=True, help="one of the server's reply topics")
    parser.add_argument("--token-file", help="a file holding a bearer token for the server's audience")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("tool")
    parser.add_argument("arguments", nargs="?", default="{}", help="a JSON object")
    args = parser.parse_args()
    token = open(args.token_file).read().strip() if args.token_file else None
    with JobClient(args.bootstrap, args.requests, args.replies) as jobs:
        reply = jobs.call(args.tool, json.loads(args.arguments), token=token, timeout=args.timeout,
                          reply_to=args.replies)
    print(json.dumps(reply, indent=2))
    raise SystemExit(0 if reply["ok"] else 1)


if __name__ == "__main__":
    main()
