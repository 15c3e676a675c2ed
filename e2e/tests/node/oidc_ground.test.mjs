// The TypeScript SDK's OAuth client against the test ground's identity
// provider itself (no sidecar yet): its discovery of Keycloak's metadata,
// dynamic registration, PKCE with a resource indicator, the headless
// sign-in, and the code exchange, giving a token whose aud is that resource
// and whose groups are the user's. The same once more through the SDK's
// auth() with HeadlessOAuthProvider, as a transport drives it.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  auth,
  discoverAuthorizationServerMetadata,
  exchangeAuthorization,
  registerClient,
  startAuthorization,
} from "@modelcontextprotocol/sdk/client/auth.js";
import * as jose from "jose";

import { HeadlessOAuthProvider, audiences, decodeJwt, headlessLogin, oidcEnv, passwordToken, registerResource } from "./oidc.mjs";

// Resource URLs nobody serves (Keycloak only needs them registered); fixed,
// so that runs do not pile up registrations.
const RESOURCES = ["http://127.0.0.1:18082/mcp", "http://127.0.0.1:18083/mcp", "http://127.0.0.1:18084/mcp"];

/** The claims once signature (the realm's JWKS), iss, aud and exp check out. */
async function verify(env, token, audience, issuer = env.MCPK_OIDC_ISSUER) {
  const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/protocol/openid-connect/certs`));
  const { payload } = await jose.jwtVerify(token, jwks, { issuer, audience, algorithms: ["RS256"] });
  return payload;
}

test("the SDK's own steps against Keycloak: discovery, registration, PKCE with resource, headless sign-in, token for that resource", async () => {
  const env = oidcEnv();
  const issuer = env.MCPK_OIDC_ISSUER;
  const resource = RESOURCES[0];
  registerResource(resource);

  const metadata = await discoverAuthorizationServerMetadata(issuer);
  assert.equal(metadata.issuer, issuer);
  assert.ok(metadata.code_challenge_methods_supported.includes("S256"));
  assert.ok(metadata.registration_endpoint, "Keycloak offers dynamic registration");

  const redirectUrl = "http://127.0.0.1:39998/callback";
  const clientMetadata = {
    client_name: "mcpk node self-test",
    redirect_uris: [redirectUrl],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  };
  const clientInformation = await registerClient(issuer, { metadata, clientMetadata });
  assert.ok(clientInformation.client_id);

  const { authorizationUrl, codeVerifier } = await startAuthorization(issuer, {
    metadata, clientInformation, redirectUrl, resource: new URL(resource),
  });
  assert.equal(authorizationUrl.searchParams.get("resource"), resource);
  assert.equal(authorizationUrl.searchParams.get("code_challenge_method"), "S256");

  const code = await headlessLogin(authorizationUrl, "alice");
  const tokens = await exchangeAuthorization(issuer, {
    metadata, clientInformation, authorizationCode: code, codeVerifier, redirectUri: redirectUrl, resource: new URL(resource),
  });
  const claims = await verify(env, tokens.access_token, resource);
  assert.deepEqual(audiences(claims), [resource]);
  assert.equal(claims.azp, clientInformation.client_id);
  assert.deepEqual(claims.groups, ["kafka-operators"]);
  assert.equal(claims.preferred_username, "alice");
});

test("auth() with HeadlessOAuthProvider: REDIRECT, then the kept code gives AUTHORIZED and tokens for the resource", async () => {
  const env = oidcEnv();
  const issuer = env.MCPK_OIDC_ISSUER;
  const resource = RESOURCES[1];
  registerResource(resource);
  // What a sidecar's protected resource metadata will say; handed to the
  // provider as discovery state, since no sidecar serves it here. With
  // scopes_supported the SDK registers with, and asks for, that scope.
  for (const scopes of [undefined, ["mcp"]]) {
    const provider = new HeadlessOAuthProvider("bob");
    provider.saveDiscoveryState({
      authorizationServerUrl: issuer,
      resourceMetadata: { resource, authorization_servers: [issuer], ...(scopes ? { scopes_supported: scopes } : {}) },
    });
    assert.equal(await auth(provider, { serverUrl: resource }), "REDIRECT");
    assert.ok(provider.authorizationCode, "the headless sign-in kept a code");
    const asked = provider.authorizationUrls.at(-1);
    assert.equal(asked.searchParams.get("resource"), resource);
    assert.equal(asked.searchParams.get("scope"), scopes ? scopes.join(" ") : null);

    assert.equal(await auth(provider, { serverUrl: resource, authorizationCode: provider.authorizationCode }), "AUTHORIZED");
    const claims = await verify(env, provider.tokens().access_token, resource);
    assert.deepEqual(audiences(claims), [resource]);
    assert.deepEqual(claims.groups, ["kafka-viewers"]);
    assert.equal(claims.azp, provider.clientInformation().client_id);
  }
});

test("a wrong password ends the headless sign-in with Keycloak's message", async () => {
  const env = oidcEnv();
  const metadata = await discoverAuthorizationServerMetadata(env.MCPK_OIDC_ISSUER);
  const redirectUrl = "http://127.0.0.1:39998/callback";
  const clientInformation = await registerClient(env.MCPK_OIDC_ISSUER, {
    metadata, clientMetadata: { redirect_uris: [redirectUrl], token_endpoint_auth_method: "none", client_name: "mcpk node self-test" },
  });
  const { authorizationUrl } = await startAuthorization(env.MCPK_OIDC_ISSUER, { metadata, clientInformation, redirectUrl });
  await assert.rejects(headlessLogin(authorizationUrl, "alice", { password: `not-${Math.random()}` }), /Invalid username or password/);
});

test("passwordToken: a user's token for a resource, short-lived on request", async () => {
  const env = oidcEnv();
  const resource = RESOURCES[2];
  const claims = await verify(env, await passwordToken("alice", resource), resource);
  assert.equal(claims.exp - claims.iat, 300);
  const short = decodeJwt(await passwordToken("alice", resource, { shortLived: true })).claims;
  assert.equal(short.exp - short.iat, Number(env.MCPK_OIDC_SHORT_TOKEN_SECONDS));
  const other = await passwordToken("alice", resource, { realm: "other" });
  assert.equal((await verify(env, other, resource, env.MCPK_OIDC_OTHER_ISSUER)).iss, env.MCPK_OIDC_OTHER_ISSUER);
});
