// Shared by the node tests: the local test ground (e2e/stack up) as the
// Python tests' conftest.py reads it, sidecar processes on free loopback
// ports, MCP clients of the official TypeScript SDK, and the error contract.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

export const OBSERVE = [
  "cluster_status", "list_brokers", "list_topics", "describe_topic", "describe_configs",
  "list_groups", "describe_group", "get_consumer_lag", "fetch_offsets", "consume_messages",
  "describe_acls",
];
export const MUTATE = [
  "create_topic", "delete_topic", "create_partitions", "update_topic_config",
  "publish_message", "delete_group", "reset_group_offsets",
];

/** The `export KEY=VALUE` lines of the stack's env file. */
export function stackEnv() {
  const file = process.env.MCPK_STACK_ENV ?? path.join(E2E_DIR, ".stack", "env");
  if (!fs.existsSync(file)) {
    throw new Error(`the test ground is not up (${file} is missing): run \`e2e/stack up\``);
  }
  const env = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

/** The sidecar built by e2e/test (cargo build --workspace --bins). */
function sidecarBinary() {
  const target = process.env.CARGO_TARGET_DIR ?? path.join(E2E_DIR, "..", "target");
  const bin = process.env.MCPK_SIDECAR_BIN ?? path.join(target, "debug", "mcp-kafka-sidecar");
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it with \`cargo build --bins\` (e2e/test does)`);
  }
  return bin;
}

/** A port nothing listens on right now (as conftest's free_port). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export function uniqueName(prefix) {
  return `${prefix}-${Math.random().toString(16).slice(2, 10)}`;
}

const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "mcpk-node-tests-"));
const running = new Set();
// A test process that ends early (a failed assertion in a hook, Ctrl-C)
// must not leave sidecars behind.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A sidecar process; `stop()` ends it (tests call it in `t.after`). */
export class Sidecar {
  constructor(args, port, name, env = {}) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.log = path.join(LOG_DIR, `${name}-${port}.log`);
    const out = fs.openSync(this.log, "w");
    this.proc = spawn(sidecarBinary(), args, { stdio: ["ignore", out, out], env: { ...process.env, ...env } });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => resolve({ code, signal }));
      this.proc.once("error", (error) => resolve({ error: error.message }));
    });
    this.exitedWith = null;
    this.exited.then((how) => { this.exitedWith = how; running.delete(this.proc); });
    running.add(this.proc);
  }

  logText() {
    return fs.readFileSync(this.log, "utf8");
  }

  /** Polls `path` until `accept(status, body)` holds, failing if the process exits. */
  async waitFor(what, accept, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    let last = "no answer";
    while (Date.now() < deadline) {
      if (this.exitedWith) {
        assert.fail(`the sidecar exited (${JSON.stringify(this.exitedWith)}); log ${this.log}:\n${this.logText()}`);
      }
      try {
        const r = await fetch(`${this.url}${what}`, { signal: AbortSignal.timeout(1000) });
        const body = await r.text();
        last = `${r.status} ${body.trim()}`;
        if (accept(r.status, body)) return { status: r.status, body };
      } catch {
        // Not listening yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`${what} of the sidecar never answered as expected in ${timeoutMs} ms (last: ${last}); log: ${this.log}`);
  }

  waitReady() {
    return this.waitFor("/readyz", (status) => status === 200);
  }

  async stop() {
    if (!this.exitedWith) {
      this.proc.kill("SIGTERM");
      const killed = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(killed);
    }
  }
}

/** A standalone dev server (auth none, loopback) against the stack's broker. */
export async function startStandalone(t, env, ...args) {
  const port = await freePort();
  const sidecar = new Sidecar(
    ["--listen", `127.0.0.1:${port}`, "--bootstrap-servers", env.KAFKA_BOOTSTRAP_SERVERS, ...args],
    port,
    "standalone",
  );
  t.after(() => sidecar.stop());
  return sidecar;
}

/** A server from a config file; `config(port)` gives its content. */
export async function startWithConfig(t, config, env = {}) {
  const port = await freePort();
  const file = path.join(LOG_DIR, `config-${port}.json`);
  fs.writeFileSync(file, JSON.stringify(config(port)));
  const sidecar = new Sidecar(["--config", file], port, "configured", env);
  t.after(() => sidecar.stop());
  return sidecar;
}

/**
 * An initialized SDK client on the sidecar's /mcp, closed after the test.
 * It lists the tools first: the SDK checks each result's structuredContent
 * against the tool's outputSchema only for tools it has listed.
 */
export async function connect(t, sidecar, { bearer } = {}) {
  const client = new Client({ name: "mcpk-node-tests", version: "0.0.0" });
  const requestInit = bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : undefined;
  await client.connect(new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { requestInit }));
  t.after(() => client.close());
  const { tools } = await client.listTools();
  return { client, tools };
}

/** A call that must succeed; returns its structured content. */
export async function ok(client, name, args = {}) {
  const result = await call(client, name, args);
  assert.ok(!result.isError, `${name} failed: ${JSON.stringify(result)}`);
  assert.equal(typeof result.structuredContent, "object", `${name} has no structured content`);
  return result.structuredContent;
}

/**
 * Polls `check()` until it returns a truthy value (which it returns); a
 * throw counts as "not yet" and is shown if time runs out.
 */
export async function eventually(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const done = await check();
      if (done) return done;
      last = done;
    } catch (e) {
      last = e;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`${what}: not so after ${timeoutMs} ms (last: ${last?.message ?? JSON.stringify(last)})`);
}

function kubectl(env, args, input) {
  const out = spawnSync(env.MCPK_KUBECTL, ["--kubeconfig", env.KUBECONFIG, ...args], {
    input, encoding: "utf8", timeout: 60_000,
  });
  assert.equal(out.status, 0, `kubectl ${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

/**
 * A new namespace with one ServiceAccount per key of `grants`, each bound
 * by a Role to custom verbs (the tool names) on mcpkafkaservers/tools of
 * `server` (as conftest's tool_grants). Deleted after the test.
 */
export function toolGrants(t, env, server, grants) {
  const ns = uniqueName("node-auth");
  const items = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }];
  for (const [sa, verbs] of Object.entries(grants)) {
    items.push({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa, namespace: ns } });
    items.push({
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: sa, namespace: ns },
      rules: [{ apiGroups: ["mcpkafka.dev"], resources: ["mcpkafkaservers/tools"], resourceNames: [server], verbs }],
    });
    items.push({
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: sa, namespace: ns },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: sa },
      subjects: [{ kind: "ServiceAccount", name: sa, namespace: ns }],
    });
  }
  kubectl(env, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
  t.after(() => kubectl(env, ["delete", "namespace", ns, "--wait=false"]));
  return ns;
}

/**
 * A new namespace where each key of `grants`, a Group as the sidecar names
 * signed-in users' groups (`oidc:kafka-operators`), is bound by a Role to
 * custom verbs on mcpkafkaservers/tools of `server`. Deleted after the test.
 */
export function groupGrants(t, env, server, grants) {
  const ns = uniqueName("node-oidc");
  const items = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }];
  for (const [group, verbs] of Object.entries(grants)) {
    const name = group.replace(/[^a-z0-9-]/g, "-");
    items.push({
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name, namespace: ns },
      rules: [{ apiGroups: ["mcpkafka.dev"], resources: ["mcpkafkaservers/tools"], resourceNames: [server], verbs }],
    });
    items.push({
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name, namespace: ns },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: group }],
    });
  }
  kubectl(env, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
  t.after(() => kubectl(env, ["delete", "namespace", ns, "--wait=false"]));
  return ns;
}

/** A TokenRequest token of `sa` for the server's default audience. */
export function saToken(env, ns, sa, server) {
  return kubectl(env, ["create", "token", sa, "-n", ns, "--audience", `mcpkafka.dev/${ns}/${server}`]).trim();
}

/**
 * Deletes a topic a test made (planning the delete first where mutations
 * are two-phase). A failure is logged, not thrown: it must not hide the
 * test's own outcome.
 */
export async function dropTopic(client, topic, { twoPhase = false } = {}) {
  try {
    let args = { topic };
    if (twoPhase) {
      const planned = await client.callTool({ name: "delete_topic", arguments: { topic, dry_run: true } });
      if (planned.isError) return; // never created
      args = { topic, plan_id: planned.structuredContent.plan.id };
    }
    const result = await client.callTool({ name: "delete_topic", arguments: args });
    if (result.isError && !result.content[0].text.startsWith("NOT_FOUND")) {
      console.error(`could not delete the test topic ${topic}: ${result.content[0].text}`);
    }
  } catch (e) {
    console.error(`could not delete the test topic ${topic}: ${e.message}`);
  }
}

export const ERROR_META = "mcpkafka.dev/error";

/**
 * The tool-error contract: `isError`, no structuredContent (it would have to
 * match the tool's outputSchema), a text block that starts with the code,
 * and the code, message and retriability in `_meta["mcpkafka.dev/error"]`.
 * Returns the `_meta` error for further checks.
 */
export function assertToolError(result, code, { retriable } = {}) {
  const shown = JSON.stringify(result);
  assert.equal(result.isError, true, `not an error result: ${shown}`);
  assert.equal(result.structuredContent, undefined, `an error result carries structuredContent: ${shown}`);
  assert.equal(result.content?.[0]?.type, "text", shown);
  assert.ok(result.content[0].text.startsWith(`${code}:`), `the text does not start with ${code}: ${shown}`);
  const error = result._meta?.[ERROR_META];
  assert.ok(error, `no _meta["${ERROR_META}"]: ${shown}`);
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "retriable"], shown);
  assert.equal(error.code, code, shown);
  assert.equal(typeof error.message, "string");
  assert.ok(error.message.length > 0, shown);
  assert.equal(typeof error.retriable, "boolean", shown);
  if (retriable !== undefined) assert.equal(error.retriable, retriable, shown);
  return error;
}

/**
 * A tool call whose answer is a result, success or error: the SDK throwing
 * instead (e.g. because an error result's structuredContent does not match
 * the outputSchema) fails the test with that reason.
 */
export async function call(client, name, args = {}) {
  try {
    return await client.callTool({ name, arguments: args });
  } catch (e) {
    assert.fail(`the SDK threw on a call of ${name} instead of returning its result: ${e.message}`);
  }
}

/** Calls a tool that must fail with `code`; returns the `_meta` error. */
export async function refused(client, name, args, code, expect) {
  return assertToolError(await call(client, name, args), code, expect);
}
