// The test ground's identity provider (Keycloak, e2e/stack) for the
// TypeScript SDK's OAuth client: an OAuthClientProvider that signs a user
// in without a browser, and the same helpers as the Python tests'
// oidc_ground.py (users, tokens by password grant, resources).
//
// Keycloak's certificate is issued by the ground's CA (MCPK_OIDC_CA_FILE);
// Node trusts it only when started with NODE_EXTRA_CA_CERTS pointing at it,
// which e2e/tests/node/run does. Nothing here prints a password, a client
// secret, a code or a token.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { stackEnv } from "./harness.mjs";

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const REALM_SCRIPT = path.join(E2E_DIR, "lib", "keycloak_realm.py");

/** The ground's Keycloak as the env file names it; fails clearly without one. */
export function oidcEnv() {
  const env = stackEnv();
  if (!env.MCPK_OIDC_ISSUER) {
    throw new Error("the test ground has no identity provider (MCPK_OIDC_ISSUER): restart it with `e2e/stack up`");
  }
  const ca = fs.readFileSync(env.MCPK_OIDC_CA_FILE, "utf8").trim();
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (!extra || !fs.existsSync(extra) || !fs.readFileSync(extra, "utf8").includes(ca)) {
    throw new Error(`node must start with NODE_EXTRA_CA_CERTS naming a file that holds ${env.MCPK_OIDC_CA_FILE}, to trust Keycloak (e2e/tests/node/run does)`);
  }
  return env;
}

function users(env) {
  return JSON.parse(fs.readFileSync(env.MCPK_OIDC_USERS_FILE, "utf8"));
}

/** (header, claims) of a JWT, not verified: for asserting what was issued. */
export function decodeJwt(token) {
  const [header, claims] = token.split(".").slice(0, 2).map((part) => JSON.parse(Buffer.from(part, "base64url").toString()));
  return { header, claims };
}

/** aud as a list: Keycloak writes one audience as a string. */
export function audiences(claims) {
  return typeof claims.aud === "string" ? [claims.aud] : (claims.aud ?? []);
}

/**
 * Let tokens be asked for `resource=url` (RFC 8707) in both realms: Keycloak
 * accepts only resources it knows (e2e/lib/keycloak_realm.py, the one place
 * that knows how). Idempotent; cached for this process. A sign-in test
 * registers its server's URL before the SDK asks for a code; every
 * Keycloak start forgets them all again.
 */
const registered = new Set();
export function registerResource(url) {
  if (registered.has(url)) return;
  const run = spawnSync("python3", [REALM_SCRIPT, "resource", "add", url], { encoding: "utf8", env: process.env });
  if (run.status !== 0) {
    throw new Error(`registering the resource ${url} failed: ${run.stderr.trim()}`);
  }
  registered.add(url);
}

/**
 * An access token for `user` from the test client's password grant (the
 * short-lived client with `shortLived`), with aud exactly `resource`.
 */
export async function passwordToken(user, resource, { shortLived = false, realm = "mcp" } = {}) {
  try {
    return await passwordGrant(user, resource, shortLived, realm);
  } catch (e) {
    // Keycloak forgot the resource (a restart's setup prunes them): once more.
    if (e.error !== "invalid_target") throw e;
    registered.delete(resource);
    return await passwordGrant(user, resource, shortLived, realm);
  }
}

async function passwordGrant(user, resource, shortLived, realm) {
  const env = oidcEnv();
  registerResource(resource);
  const issuer = `${env.MCPK_KEYCLOAK_URL}/realms/${realm}`;
  const body = new URLSearchParams({
    grant_type: "password",
    client_id: shortLived ? env.MCPK_OIDC_SHORT_CLIENT_ID : env.MCPK_OIDC_TEST_CLIENT_ID,
    client_secret: fs.readFileSync(env.MCPK_OIDC_TEST_CLIENT_SECRET_FILE, "utf8").trim(),
    username: user,
    password: users(env)[user].password,
    resource,
  });
  const response = await fetch(`${issuer}/protocol/openid-connect/token`, { method: "POST", body });
  const answer = await response.json();
  if (!response.ok) {
    throw Object.assign(new Error(`token for ${user}: HTTP ${response.status} ${answer.error}: ${answer.error_description}`), { error: answer.error });
  }
  return answer.access_token;
}

// --- the headless sign-in -------------------------------------------------

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", "#x27": "'" };
const unescape = (s) => s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_, e) => ENTITIES[e]);

function attributes(tag) {
  const attrs = {};
  for (const m of tag.matchAll(/([\w-]+)(?:\s*=\s*"([^"]*)")?/g)) attrs[m[1].toLowerCase()] = unescape(m[2] ?? "");
  return attrs;
}

/** The forms of a page: id, action, fields (name -> value) and submit buttons. */
function forms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map(([, open, inner]) => {
    const { id, action } = attributes(open);
    const fields = {};
    const buttons = {};
    for (const [, tag, attrs] of inner.matchAll(/<(input|button)\b([^>]*)>/gi)) {
      const a = attributes(attrs);
      const type = a.type ?? (tag.toLowerCase() === "button" ? "submit" : "text");
      if (!a.name) continue;
      if (type === "submit") buttons[a.name] = a.value ?? "";
      else if ((type !== "checkbox" && type !== "radio") || "checked" in a) fields[a.name] = a.value ?? "";
    }
    return { id, action, fields, buttons };
  });
}

/** Keycloak's messages under a field ("Invalid username or password."). */
function feedback(html) {
  return [...html.matchAll(/kc-feedback-text[^>]*>([^<]*)</g)].map((m) => m[1].trim()).filter(Boolean);
}

/**
 * Sign `user` in as a browser would, without one: GET the authorization URL
 * (Keycloak's login page), post its form with the cookies it set, accept
 * the consent page if one comes, and return the `code` of the redirect to
 * the client, which is never followed. Fetches use `redirect: "manual"`.
 */
export async function headlessLogin(authorizationUrl, user, { password } = {}) {
  const env = oidcEnv();
  const origin = new URL(env.MCPK_KEYCLOAK_URL).origin;
  const jar = new Map();
  const send = async (url, body) => {
    const headers = { Accept: "text/html" };
    if (jar.size) headers.Cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetch(url, { method: body ? "POST" : "GET", body, headers, redirect: "manual" });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair] = cookie.split(";");
      const eq = pair.indexOf("=");
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return response;
  };
  let url = new URL(authorizationUrl);
  let response = await send(url);
  let credentials = { username: user, password: password ?? users(env)[user].password };
  for (let step = 0; step < 6; step++) {
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get("location"), url);
      await response.body?.cancel();
      if (location.origin === origin) {
        url = location;
        response = await send(url);
        continue;
      }
      const code = location.searchParams.get("code");
      if (code) return code;
      throw new Error(`redirected to the client without a code: error=${location.searchParams.get("error")}`);
    }
    if (response.status !== 200) throw new Error(`HTTP ${response.status} from the identity provider`);
    const html = await response.text();
    const page = forms(html);
    const login = page.find((f) => f.id === "kc-form-login");
    const consent = page.find((f) => "accept" in f.buttons);
    if (login && credentials) {
      url = new URL(login.action, url);
      response = await send(url, new URLSearchParams({ ...login.fields, ...credentials }));
      credentials = undefined; // posted once: a second login page is a refusal
    } else if (consent) {
      url = new URL(consent.action, url);
      response = await send(url, new URLSearchParams({ ...consent.fields, accept: consent.buttons.accept || "Yes" }));
    } else {
      throw new Error(`sign-in refused: ${feedback(html).join("; ") || "an unexpected page"}`);
    }
  }
  throw new Error("too many steps before the redirect to the client");
}

// --- the SDK's OAuthClientProvider ------------------------------------------

/**
 * An OAuthClientProvider (the SDK's client/auth.js interface) for one user,
 * kept in memory: it registers dynamically (a public client with a loopback
 * redirect URI nobody serves) and its redirectToAuthorization signs the user
 * in headlessly and keeps the code, which the test hands to
 * `transport.finishAuth(provider.authorizationCode)` after the first
 * connect fails with UnauthorizedError.
 */
export class HeadlessOAuthProvider {
  constructor(user, { password, redirectUrl = "http://127.0.0.1:39998/callback", clientName = "mcpk e2e (TypeScript SDK)", scope } = {}) {
    this.user = user;
    this.password = password;
    this._redirectUrl = redirectUrl;
    this._metadata = {
      client_name: clientName,
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      ...(scope ? { scope } : {}),
    };
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._discovery = undefined;
    this.authorizationCode = undefined;
    /** Every authorization URL the SDK asked to open, for assertions. */
    this.authorizationUrls = [];
  }

  get redirectUrl() {
    return this._redirectUrl;
  }

  get clientMetadata() {
    return this._metadata;
  }

  clientInformation() {
    return this._client;
  }

  saveClientInformation(info) {
    this._client = info;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
  }

  async redirectToAuthorization(authorizationUrl) {
    this.authorizationUrls.push(new URL(authorizationUrl));
    this.authorizationCode = await headlessLogin(authorizationUrl, this.user, { password: this.password });
  }

  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }

  codeVerifier() {
    if (!this._verifier) throw new Error("no code verifier saved");
    return this._verifier;
  }

  saveDiscoveryState(state) {
    this._discovery = state;
  }

  discoveryState() {
    return this._discovery;
  }

  invalidateCredentials(scope) {
    if (scope === "all" || scope === "client") this._client = undefined;
    if (scope === "all" || scope === "tokens") this._tokens = undefined;
    if (scope === "all" || scope === "verifier") this._verifier = undefined;
    if (scope === "all" || scope === "discovery") this._discovery = undefined;
  }
}
