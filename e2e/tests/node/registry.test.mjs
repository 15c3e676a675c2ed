// Schema-aware payloads through the official TypeScript SDK, on the test
// ground's real Schema Registry: the registry tools' schemas compile in
// strict Ajv (they are listed only where a registry is configured, so the
// standalone check in schemas.test.mjs cannot see them), and a schema
// registered, a value published with it and peeked back pass the SDK's own
// check of structuredContent against each tool's outputSchema.

import assert from "node:assert/strict";
import { test } from "node:test";

import Ajv2020 from "ajv/dist/2020.js";

import { connect, dropTopic, ok, refused, stackEnv, startWithConfig, uniqueName } from "./harness.mjs";

const env = stackEnv();
const REGISTRY_TOOLS = ["list_subjects", "get_schema", "check_compatibility", "register_schema", "delete_subject"];

const ORDER = {
  type: "record", name: "Order", namespace: "node.test",
  fields: [
    { name: "id", type: "long" },
    { name: "note", type: ["null", "string"], default: null },
    { name: "price", type: { type: "bytes", logicalType: "decimal", precision: 10, scale: 2 } },
  ],
};

test("registry tools compile in strict Ajv, and register, publish and peek pass the SDK's output checks", async (t) => {
  assert.ok(env.MCPK_SCHEMA_REGISTRY_URL, "the test ground has no schema registry (MCPK_SCHEMA_REGISTRY_URL)");
  const sidecar = await startWithConfig(t, (port) => ({
    server: { name: "node-registry", environment: "dev" },
    listen: { address: `127.0.0.1:${port}` },
    kafka: { bootstrapServers: [env.KAFKA_BOOTSTRAP_SERVERS] },
    tools: ["create_topic", "delete_topic", "publish_message", "consume_messages", ...REGISTRY_TOOLS],
    auth: { mode: "none" },
    schemaRegistry: { url: env.MCPK_SCHEMA_REGISTRY_URL, timeoutMs: 2000 },
  }));
  await sidecar.waitReady();
  const { client, tools } = await connect(t, sidecar);

  const problems = [];
  for (const tool of tools) {
    for (const which of ["inputSchema", "outputSchema"]) {
      try {
        new Ajv2020({ strict: true }).compile(tool[which]);
      } catch (e) {
        problems.push(`${tool.name} ${which}: ${e.message}`);
      }
    }
  }
  assert.deepEqual(problems, [], problems.join("\n"));
  for (const name of REGISTRY_TOOLS) {
    assert.ok(tools.some((tool) => tool.name === name), `${name} is not listed`);
  }

  const topic = uniqueName("node-registry");
  const subject = `${topic}-value`;
  await ok(client, "create_topic", { topic, partitions: 1 });
  try {
    const registered = await ok(client, "register_schema", { subject, schema: JSON.stringify(ORDER) });
    assert.equal(registered.registered.version, 1, JSON.stringify(registered));
    assert.deepEqual((await ok(client, "list_subjects", { prefix: topic })).subjects, [subject]);
    const described = await ok(client, "get_schema", { subject });
    assert.equal(described.id, registered.registered.id);

    // 64-bit exactness is the Python tests' (JSON.parse rounds past 2^53).
    const order = { id: 4102444800123, note: "node", price: "12.30" };
    const sent = await ok(client, "publish_message", { topic, value: JSON.stringify(order), value_schema: {} });
    assert.equal(sent.value_schema.schema_id, registered.registered.id);
    // A misfit names its field and writes nothing.
    const misfit = await refused(client, "publish_message",
      { topic, value: JSON.stringify({ ...order, price: "1.234" }), value_schema: {} }, "INVALID_ARGUMENT");
    assert.match(misfit.message, /\$\.price/);

    const peeked = await ok(client, "consume_messages", { topic, from: "earliest", max_messages: 10 });
    assert.equal(peeked.messages.length, 1, JSON.stringify(peeked));
    const [message] = peeked.messages;
    assert.deepEqual(message.value, { json: order });
    assert.deepEqual(message.value_schema, { format: "avro", schema_id: registered.registered.id, subject, version: 1 });

    const deleted = await ok(client, "delete_subject", { subject, permanent: true });
    assert.deepEqual(deleted.versions, [1]);
  } finally {
    await dropTopic(client, topic);
  }
});
