// Every error code a client can provoke, as the TypeScript SDK receives it:
// an error result (never a thrown protocol error) with no structuredContent,
// a text that starts with the code, and `_meta["mcpkafka.dev/error"]`.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertToolError, call, connect, dropTopic, eventually, freePort, ok, refused, stackEnv, startStandalone, startWithConfig, uniqueName,
} from "./harness.mjs";

const env = stackEnv();

test("bad arguments are INVALID_ARGUMENT", async (t) => {
  const sidecar = await startStandalone(t, env);
  await sidecar.waitReady();
  const { client } = await connect(t, sidecar);

  const badName = await refused(client, "describe_topic", { topic: "../etc/passwd" }, "INVALID_ARGUMENT", { retriable: false });
  assert.match(badName.message, /topic name/);
  const unknownField = await refused(client, "list_topics", { no_such_field: true }, "INVALID_ARGUMENT", { retriable: false });
  assert.match(unknownField.message, /no_such_field/);
  const wrongType = await refused(client, "consume_messages", { topic: "any", max_messages: "many" }, "INVALID_ARGUMENT");
  assert.match(wrongType.message, /max_messages/);
});

test("a missing topic, and a tool this server does not expose, are NOT_FOUND", async (t) => {
  const sidecar = await startStandalone(t, env);
  await sidecar.waitReady();
  const { client, tools } = await connect(t, sidecar);

  const missing = uniqueName("node-no-such");
  const error = await refused(client, "describe_topic", { topic: missing }, "NOT_FOUND", { retriable: false });
  assert.match(error.message, /does not exist/);
  assert.ok(!tools.some((tool) => tool.name === "create_topic"), "the default tools are the observe tools");
  await refused(client, "create_topic", { topic: missing, partitions: 1 }, "NOT_FOUND", { retriable: false });
});

test("asking for more than the server's caps, or calling faster than its rate, is LIMIT_EXCEEDED", async (t) => {
  // One call per second sustained, two at once.
  const sidecar = await startStandalone(t, env, "--calls-per-second", "1");
  await sidecar.waitReady();
  const { client } = await connect(t, sidecar);

  const overCap = await refused(client, "consume_messages", { topic: "any", max_messages: 101 }, "LIMIT_EXCEEDED", { retriable: false });
  assert.match(overCap.message, /max_messages 101 exceeds this server's limit of 100/);
  // That call took the first of the burst's two tokens; at one a second,
  // at most one more comes back while these four quick calls run.
  const results = [];
  for (let n = 0; n < 4; n++) results.push(await call(client, "cluster_status"));
  assert.ok(!results[0].isError, JSON.stringify(results[0]));
  const overRate = results.filter((r) => r.isError);
  assert.ok(overRate.length >= 2, JSON.stringify(results));
  for (const r of overRate) {
    assert.match(assertToolError(r, "LIMIT_EXCEEDED", { retriable: true }).message, /retry in/);
  }
});

test("in a two-phase environment a direct mutation is PERMISSION_DENIED, a spent plan PLAN_EXPIRED, a stale one CONFLICT", async (t) => {
  const sidecar = await startWithConfig(t, (port) => ({
    server: { name: "node-errors", environment: "dev" },
    listen: { address: `127.0.0.1:${port}` },
    kafka: { bootstrapServers: [env.KAFKA_BOOTSTRAP_SERVERS] },
    tools: ["describe_topic", "create_topic", "create_partitions", "delete_topic"],
    auth: { mode: "none" },
    mutations: "twoPhase",
  }));
  await sidecar.waitReady();
  const { client } = await connect(t, sidecar);
  const topic = uniqueName("node-plans");
  const create = { topic, partitions: 1 };
  const plan = async (tool, args) => (await ok(client, tool, { ...args, dry_run: true })).plan.id;

  const direct = await refused(client, "create_topic", create, "PERMISSION_DENIED", { retriable: false });
  assert.match(direct.message, /two-phase/);

  try {
    const createPlan = await plan("create_topic", create);
    await ok(client, "create_topic", { ...create, plan_id: createPlan });
    await refused(client, "create_topic", { ...create, plan_id: createPlan }, "PLAN_EXPIRED", { retriable: false });

    // The topic grows to 3 partitions between the plan for 2 and its apply.
    const stale = await plan("create_partitions", { topic, total: 2 });
    await ok(client, "create_partitions", { topic, total: 3, plan_id: await plan("create_partitions", { topic, total: 3 }) });
    await refused(client, "create_partitions", { topic, total: 2, plan_id: stale }, "CONFLICT", { retriable: false });
    await eventually("the topic has the 3 partitions of the apply that went through", async () =>
      (await ok(client, "describe_topic", { topic })).partitions.length === 3);
  } finally {
    await dropTopic(client, topic, { twoPhase: true });
  }
});

test("a server fenced to another cluster ID answers FENCED", async (t) => {
  const expected = "NotTheLocalCluster0000";
  const sidecar = await startWithConfig(t, (port) => ({
    server: { name: "node-fence", environment: "dev" },
    listen: { address: `127.0.0.1:${port}` },
    kafka: { bootstrapServers: [env.KAFKA_BOOTSTRAP_SERVERS], expectedClusterId: expected },
    tools: ["cluster_status", "list_topics"],
    auth: { mode: "none" },
  }));
  // Not ready, and says why, once its probe has read the real cluster's ID.
  await sidecar.waitFor("/readyz", (status, body) => status === 503 && body.includes(env.KAFKA_CLUSTER_ID));
  const { client } = await connect(t, sidecar);
  for (const tool of ["cluster_status", "list_topics"]) {
    const error = await refused(client, tool, {}, "FENCED", { retriable: false });
    assert.ok(error.message.includes(expected) && error.message.includes(env.KAFKA_CLUSTER_ID), error.message);
  }
});

test("a server whose broker is unreachable answers KAFKA_UNAVAILABLE, retriable", async (t) => {
  const dead = await freePort();
  const sidecar = await startWithConfig(t, (port) => ({
    server: { name: "node-down", environment: "dev" },
    listen: { address: `127.0.0.1:${port}` },
    kafka: { bootstrapServers: [`127.0.0.1:${dead}`], requestTimeoutMs: 1000 },
    tools: ["list_topics"],
    auth: { mode: "none" },
  }));
  await sidecar.waitFor("/healthz", (status) => status === 200);
  await sidecar.waitFor("/readyz", (status) => status === 503);
  const { client } = await connect(t, sidecar);
  await refused(client, "list_topics", {}, "KAFKA_UNAVAILABLE", { retriable: true });
});
