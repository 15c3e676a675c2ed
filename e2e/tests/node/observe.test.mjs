// The sidecar as the official TypeScript MCP SDK sees it: the tools it
// lists, and every observe tool called on a topic and group made here. The
// SDK checks each structured result against the tool's outputSchema (the
// harness lists the tools first), so a result it accepts conforms.

import assert from "node:assert/strict";
import { test } from "node:test";

import { MUTATE, OBSERVE, connect, dropTopic, eventually, ok, stackEnv, startStandalone, uniqueName } from "./harness.mjs";

const env = stackEnv();

test("every tool is listed with an object inputSchema and outputSchema and its annotations", async (t) => {
  const sidecar = await startStandalone(t, env, "--tools", "all");
  await sidecar.waitReady();
  const { client, tools } = await connect(t, sidecar);

  assert.equal(client.getServerVersion().name, "mcp-kafka-sidecar");
  const byName = Object.fromEntries(tools.map((tool) => [tool.name, tool]));
  assert.deepEqual(Object.keys(byName).sort(), [...OBSERVE, ...MUTATE].sort());
  for (const tool of tools) {
    assert.equal(tool.inputSchema.type, "object", tool.name);
    assert.equal(tool.outputSchema?.type, "object", tool.name);
    assert.equal(tool.annotations?.readOnlyHint, OBSERVE.includes(tool.name), tool.name);
  }
  for (const name of MUTATE) assert.ok("dry_run" in byName[name].inputSchema.properties, name);
  assert.equal(byName.delete_topic.annotations.destructiveHint, true);
});

test("each observe tool answers on a topic and a consumer group made for the test", async (t) => {
  const sidecar = await startStandalone(t, env, "--tools", "all");
  await sidecar.waitReady();
  const { client } = await connect(t, sidecar);
  const topic = uniqueName("node-observe");
  const group = uniqueName("node-group");

  try {
    await ok(client, "create_topic", { topic, partitions: 2 });
    await eventually("the new topic has both partitions", async () => {
      const r = await client.callTool({ name: "describe_topic", arguments: { topic } });
      return !r.isError && r.structuredContent.partitions.length === 2;
    });
    for (let n = 0; n < 3; n++) {
      await ok(client, "publish_message", { topic, partition: 0, key: `k${n}`, value: JSON.stringify({ n }) });
    }
    await ok(client, "publish_message", { topic, partition: 1, value: "plain text" });
    // A group Kafka has not seen, seeded with committed offsets: offset 1 on
    // each partition leaves a lag of 2 on partition 0 and none on 1.
    await ok(client, "reset_group_offsets", { group_id: group, topic, to: "offset", offset: 1 });

    const status = await ok(client, "cluster_status");
    assert.equal(status.cluster_id, env.KAFKA_CLUSTER_ID);
    assert.ok(status.broker_count >= 1 && status.topic_count >= 1, JSON.stringify(status));

    const { brokers } = await ok(client, "list_brokers");
    assert.ok(brokers.length >= 1 && brokers.every((b) => b.host && b.port > 0), JSON.stringify(brokers));

    const listed = await ok(client, "list_topics", { name_contains: topic });
    assert.deepEqual(listed.topics.map((x) => [x.name, x.partitions]), [[topic, 2]]);

    const described = await ok(client, "describe_topic", { topic });
    assert.deepEqual(
      described.partitions.map((p) => [p.partition, p.earliest_offset, p.latest_offset]),
      [[0, 0, 3], [1, 0, 1]],
    );

    const configs = await ok(client, "describe_configs", { resource_type: "topic", name: topic, include_defaults: true });
    assert.ok(configs.configs.some((c) => c.name === "cleanup.policy" && c.value === "delete"), JSON.stringify(configs));

    const groups = await ok(client, "list_groups", { name_contains: group });
    assert.deepEqual(groups.groups.map((g) => g.group_id), [group]);

    const describedGroup = await ok(client, "describe_group", { group_id: group });
    assert.equal(describedGroup.group_id, group);
    assert.deepEqual(describedGroup.members, []);

    const lag = await ok(client, "get_consumer_lag", { group_id: group });
    assert.deepEqual(
      lag.partitions.map((p) => [p.topic, p.partition, p.committed_offset, p.latest_offset, p.lag]),
      [[topic, 0, 1, 3, 2], [topic, 1, 1, 1, 0]],
    );
    assert.equal(lag.total_lag, 2);

    const offsets = await ok(client, "fetch_offsets", { topic });
    assert.deepEqual(offsets.partitions.map((p) => [p.partition, p.earliest, p.latest]), [[0, 0, 3], [1, 0, 1]]);

    const peek = await ok(client, "consume_messages", { topic, partition: 0, from: "earliest" });
    assert.deepEqual(
      peek.messages.map((m) => [m.offset, m.key, m.value]),
      [0, 1, 2].map((n) => [n, { text: `k${n}` }, { json: { n } }]),
    );
  } finally {
    await client.callTool({ name: "delete_group", arguments: { group_id: group } }).catch((e) => console.error(e.message));
    await dropTopic(client, topic);
  }
});
