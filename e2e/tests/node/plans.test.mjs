// A two-phase mutation through the TypeScript SDK, on a staging server with
// Kubernetes auth (as test_sidecar_plans.py): the dry run returns a plan,
// the apply names it, and Kafka really changed. RBAC refusals arrive as
// PERMISSION_DENIED tool errors.

import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, dropTopic, eventually, ok, refused, saToken, stackEnv, startWithConfig, toolGrants, uniqueName } from "./harness.mjs";

const env = stackEnv();
const SERVER = "node-plans";
const TOOLS = ["list_topics", "describe_topic", "create_topic", "create_partitions", "delete_topic"];

test("a planned create_topic and create_partitions apply on a staging server, and change the topic", async (t) => {
  // `planner` may call every tool; `viewer` only describe_topic.
  const ns = toolGrants(t, env, SERVER, { planner: TOOLS, viewer: ["describe_topic"] });
  const sidecar = await startWithConfig(t, (port) => ({
    server: { name: SERVER, namespace: ns, environment: "staging" },
    listen: { address: `127.0.0.1:${port}` },
    kafka: { bootstrapServers: [env.KAFKA_BOOTSTRAP_SERVERS] },
    tools: TOOLS,
    auth: { mode: "kubernetes" },
  }), { KUBECONFIG: env.KUBECONFIG });
  await sidecar.waitReady();
  const { client } = await connect(t, sidecar, { bearer: saToken(env, ns, "planner", SERVER) });
  const { client: viewer } = await connect(t, sidecar, { bearer: saToken(env, ns, "viewer", SERVER) });
  const topic = uniqueName("node-plan");
  const partitions = async () => (await ok(client, "describe_topic", { topic })).partitions.length;

  try {
    const planned = await ok(client, "create_topic", { topic, partitions: 1, dry_run: true });
    assert.match(planned.plan.id, /^plan-/);
    assert.ok(planned.plan.expires_at, JSON.stringify(planned));
    await refused(client, "describe_topic", { topic }, "NOT_FOUND");
    const created = await ok(client, "create_topic", { topic, partitions: 1, plan_id: planned.plan.id });
    assert.equal(created.created, true);
    await eventually("the created topic is described with 1 partition", async () => (await partitions()) === 1);

    const grow = await ok(client, "create_partitions", { topic, total: 3, dry_run: true });
    assert.deepEqual([grow.before, grow.after, grow.dry_run], [1, 3, true]);
    assert.equal(await partitions(), 1, "a dry run changes nothing");
    // Someone without the grant cannot apply it.
    const denied = await refused(viewer, "create_partitions", { topic, total: 3, plan_id: grow.plan.id }, "PERMISSION_DENIED");
    assert.match(denied.message, /create_partitions/);
    const grown = await ok(client, "create_partitions", { topic, total: 3, plan_id: grow.plan.id });
    assert.deepEqual([grown.before, grown.after, grown.dry_run], [1, 3, false]);
    await eventually("the topic is described with 3 partitions", async () => (await partitions()) === 3);
  } finally {
    await dropTopic(client, topic, { twoPhase: true });
  }
});
