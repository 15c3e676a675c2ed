// Sign-in with the organization's identity provider, as the official
// TypeScript SDK's OAuth client does it against a sidecar with auth.oidc:
// it starts with no token, follows the 401 to the Protected Resource
// Metadata and the provider's, registers, signs the user in (headlessly,
// through Keycloak's own login form) with PKCE and the resource indicator,
// and calls tools that RBAC allows by the user's group.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import * as jose from "jose";

import { assertToolError, call, groupGrants, ok, startWithConfig } from "./harness.mjs";
import { HeadlessOAuthProvider, audiences, decodeJwt, oidcEnv, passwordToken, registerResource } from "./oidc.mjs";

const SERVER = "orders";
const OPERATOR_TOOLS = ["describe_topic", "list_topics"];

async function signInSidecar(t, env) {
  const ns = groupGrants(t, env, SERVER, { "oidc:kafka-operators": OPERATOR_TOOLS });
  let resource;
  const sidecar = await startWithConfig(t, (port) => {
    resource = `http://127.0.0.1:${port}/mcp`;
    registerResource(resource);
    return {
      server: { name: SERVER, namespace: ns, environment: "dev" },
      listen: { address: `127.0.0.1:${port}` },
      kafka: { bootstrapServers: [env.KAFKA_BOOTSTRAP_SERVERS] },
      tools: ["cluster_status", ...OPERATOR_TOOLS],
      auth: {
        mode: "kubernetes",
        oidc: {
          issuer: env.MCPK_OIDC_ISSUER, caFile: env.MCPK_OIDC_CA_FILE, resource,
          usernameClaim: "preferred_username", scopes: ["mcp"], clockSkewSeconds: 1,
        },
      },
    };
  }, { KUBECONFIG: env.KUBECONFIG });
  await sidecar.waitReady();
  sidecar.resource = resource;
  return sidecar;
}

/** A client that signs `user` in by itself: the first connect ends in
 * UnauthorizedError after the sign-in, finishAuth trades the code, the
 * second connect goes through. */
async function signedIn(t, sidecar, user) {
  const provider = new HeadlessOAuthProvider(user);
  const url = new URL(sidecar.resource);
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider });
  await assert.rejects(new Client({ name: "mcpk-signin", version: "0" }).connect(first), UnauthorizedError);
  assert.ok(provider.authorizationCode, "the SDK sent the user to sign in");
  await first.finishAuth(provider.authorizationCode);
  const client = new Client({ name: "mcpk-signin", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
  t.after(() => client.close());
  return { client, provider };
}

async function initializeWith(sidecar, bearer) {
  const r = await fetch(sidecar.resource, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "0" } } }),
  });
  await r.text();
  return { status: r.status, challenge: r.headers.get("www-authenticate") };
}

test("the SDK signs alice in with no token to start from; her group's tools only; bob is denied", async (t) => {
  const env = oidcEnv();
  const sidecar = await signInSidecar(t, env);

  const { client, provider } = await signedIn(t, sidecar, "alice");
  const asked = provider.authorizationUrls[0];
  assert.ok(asked.href.startsWith(env.MCPK_OIDC_ISSUER), "the provider the metadata named");
  assert.equal(asked.searchParams.get("resource"), sidecar.resource);
  assert.equal(asked.searchParams.get("code_challenge_method"), "S256");
  assert.equal(asked.searchParams.get("scope"), "mcp", "the scope the 401 and the metadata name");
  const { claims } = decodeJwt(provider.tokens().access_token);
  assert.deepEqual(audiences(claims), [sidecar.resource]);
  assert.equal(claims.azp, provider.clientInformation().client_id, "registered dynamically");

  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((tool) => tool.name).sort(), OPERATOR_TOOLS);
  await ok(client, "list_topics");
  assertToolError(await call(client, "cluster_status"), "PERMISSION_DENIED");

  const bob = (await signedIn(t, sidecar, "bob")).client;
  assert.deepEqual((await bob.listTools()).tools, [], "bob's group has no grant");
  assertToolError(await call(bob, "list_topics"), "PERMISSION_DENIED");
});

test("an expired token, one for another server, one from another issuer and a forged one get 401 with resource_metadata", async (t) => {
  const env = oidcEnv();
  const sidecar = await signInSidecar(t, env);
  const good = await passwordToken("alice", sidecar.resource);
  assert.equal((await initializeWith(sidecar, good)).status, 200, "the control: a good token passes");
  const { header, claims } = decodeJwt(good);
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const short = await passwordToken("alice", sidecar.resource, { shortLived: true });
  const refused = {
    "another server": await passwordToken("alice", sidecar.resource.replace("/mcp", "/other-mcp")),
    "another issuer": await passwordToken("alice", sidecar.resource, { realm: "other" }),
    "forged (another key, the real kid)": await new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: header.kid }).sign(privateKey),
  };
  const { claims: shortClaims } = decodeJwt(short);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, shortClaims.exp * 1000 - Date.now()) + 2500));
  refused.expired = short;
  const metadata = `${sidecar.url}/.well-known/oauth-protected-resource/mcp`;
  for (const [what, token] of Object.entries(refused)) {
    const { status, challenge } = await initializeWith(sidecar, token);
    assert.equal(status, 401, what);
    assert.ok(challenge.includes(`resource_metadata="${metadata}"`), `${what}: ${challenge}`);
    assert.ok(challenge.includes('error="invalid_token"'), `${what}: ${challenge}`);
  }
});
