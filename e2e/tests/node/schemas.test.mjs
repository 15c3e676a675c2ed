// Every tool's inputSchema and outputSchema (native tools, and the compat
// tools with mcp-confluent's names) compiles in Ajv's JSON Schema
// 2020-12 build in strict mode, with no formats registered: a client with a
// strict validator rejects a schema with unknown keywords or formats (such
// as schemars' "uint"), so the sidecar must not publish one.

import assert from "node:assert/strict";
import { test } from "node:test";

import Ajv2020 from "ajv/dist/2020.js";

import { connect, stackEnv, startStandalone } from "./harness.mjs";

const env = stackEnv();

test("every tool's inputSchema and outputSchema compiles with strict Ajv 2020-12", async (t) => {
  // mcp-confluent's tool names too: their input schemas are this server's.
  const sidecar = await startStandalone(t, env, "--tools", "all", "--tool-names", "native,confluent");
  await sidecar.waitReady();
  const { tools } = await connect(t, sidecar);
  const names = tools.map((tool) => tool.name);
  for (const expected of ["list_topics", "create-topics", "consume-messages", "get_topic_metadata"]) {
    assert.ok(names.includes(expected), `${expected} is not listed: ${names.join(", ")}`);
  }

  const problems = [];
  for (const tool of tools) {
    for (const which of ["inputSchema", "outputSchema"]) {
      // mcp-confluent's (kebab-case) tools answer in its shapes, which no
      // output schema describes.
      if (which === "outputSchema" && tool[which] === undefined && !tool.name.includes("_")) continue;
      // A fresh instance per schema: one schema's $id or definitions cannot
      // make another compile.
      const ajv = new Ajv2020({ strict: true });
      try {
        ajv.compile(tool[which]);
      } catch (e) {
        problems.push(`${tool.name} ${which}: ${e.message}`);
      }
    }
  }
  assert.deepEqual(problems, [], `schemas strict Ajv 2020-12 refuses:\n${problems.join("\n")}`);
});

test("the strict validator refuses what it should, so the test above can fail", () => {
  const ajv = new Ajv2020({ strict: true });
  assert.throws(() => ajv.compile({ type: "integer", format: "uint" }), /unknown format "uint"/);
  assert.throws(() => ajv.compile({ type: "object", properties: {}, bogus: 1 }), /unknown keyword/);
  assert.doesNotThrow(() => ajv.compile({ type: "object", properties: { n: { type: "integer", minimum: 0 } } }));
});
