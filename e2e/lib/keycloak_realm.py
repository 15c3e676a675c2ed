#!/usr/bin/env python3
"""The test ground's identity provider, set up through Keycloak's admin REST API.

Standard library only: e2e/stack runs it with the system's python3 at every
Keycloak start (`setup` is idempotent: what exists is updated to what is
described here, what is missing is created), and the tests import it
(e2e/tests/python/oidc_ground.py) for what they change while running.

    keycloak_realm.py setup --url URL --ca-file CA --state-dir DIR
    keycloak_realm.py env --url URL --ca-file CA --state-dir DIR
    keycloak_realm.py resource add|remove RESOURCE_URL [--realm R]... (state from MCPK_STACK_ENV)
    keycloak_realm.py keys rotate|restore [--realm R]

Two realms with the same users, groups and clients: `mcp` (the issuer the
sidecars trust) and `other` (a second issuer, for "a token from another
issuer"). Secrets (users' passwords, the test clients' secret) are made once
per state dir into 0600 files; nothing here prints them.
"""

import argparse
import hashlib
import http.client
import json
import os
import secrets
import ssl
import sys
import urllib.parse

REALMS = ("mcp", "other")
ADMIN_USERNAME = "admin"
# username -> (group, first name); emails are verified and names set so that
# Keycloak's user profile asks for nothing at the first login.
USERS = {"alice": ("kafka-operators", "Alice"), "bob": ("kafka-viewers", "Bob")}
GROUPS = ("kafka-operators", "kafka-viewers")
# Confidential clients with direct access grants (password grant), for tests
# and benchmarks that need a user's token without a login page; the short
# one's tokens expire after SHORT_TOKEN_SECONDS.
TEST_CLIENT = "mcpk-tests"
SHORT_CLIENT = "mcpk-tests-short"
SHORT_TOKEN_SECONDS = 10
# One realm default client scope holds what a sidecar needs in a token: the
# groups claim, and the audience mappers of the registered resources. A
# dynamically registered client gets the realm's default scopes only when
# its registration names no `scope`. One that does gets the scopes named as
# optional ones (given only when the authorization request asks for them)
# and `basic` as its one default: a token asked for without `mcp` then has
# no aud, and a resource indicator makes Keycloak 26.7.3 fail with HTTP 500
# (a NullPointerException in its resource indicators). So this scope has a
# name a server's metadata can list in scopes_supported, which MCP clients
# send both when they register and when they ask for a code.
MCP_SCOPE = "mcp"
# Keycloak's resource indicators (RFC 8707, feature resource-indicators) accept
# `resource=URL` only when a client already in the token's `aud` carries
# that URL as its `resource_url` attribute; the token's aud then becomes
# exactly [URL]. So each MCP resource URL is a client of this prefix (named
# by a hash of the URL) with an audience mapper in MCP_SCOPE.
RESOURCE_CLIENT_PREFIX = "mcp-resource-"
# Key providers added by `keys rotate` (removed by `keys restore`); the
# realm's own rsa-generated provider has priority 100.
ROTATED_KEY_PREFIX = "mcpk-rotated-"
REGISTRATION_POLICY = "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy"
KEY_PROVIDER = "org.keycloak.keys.KeyProvider"


class AdminError(Exception):
    """An admin API call answered with an unexpected status (the message names
    the call and Keycloak's error, never a secret)."""


class Admin:
    """Keycloak's admin REST API as the bootstrap admin of realm master."""

    def __init__(self, url: str, ca_file: str, password: str, username: str = ADMIN_USERNAME):
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        self._host, self._port, self._base = parts.hostname, parts.port or 443, parts.path
        self.ssl = ssl.create_default_context(cafile=ca_file)
        self._conn = None
        self._username = username
        self._password = password
        self._token = None

    def _login(self) -> str:
        form = {"grant_type": "password", "client_id": "admin-cli", "username": self._username, "password": self._password}
        status, body, _ = self.raw("POST", "/realms/master/protocol/openid-connect/token", form=form)
        if status != 200:
            raise AdminError(f"admin login failed with HTTP {status}: {describe(body)}")
        return body["access_token"]

    def raw(self, method: str, path: str, body=None, form=None, token: str | None = None, timeout: float = 30):
        """One request; returns (status, parsed JSON or text, headers)."""
        data, headers = encode_body(form, body, {"Accept": "application/json"})
        if token:
            headers["Authorization"] = "Bearer " + token
        # One kept-alive connection: setup makes ~70 calls, and a TLS
        # handshake each doubled its time. A connection Keycloak closed (idle,
        # or restarted) is opened again, once.
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self._host, self._port, context=self.ssl, timeout=timeout)
            try:
                self._conn.request(method, self._base + path, body=data, headers=headers)
                response = self._conn.getresponse()
                return response.status, parse(response.read()), response.headers
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body=None, ok=(200, 201, 204)):
        """An admin API call (path under /admin/realms), logging in again once
        when the admin's token (60 s by default) has expired."""
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._login()
            status, answer, headers = self.raw(method, "/admin/realms" + path, body=body, token=self._token)
            if status == 401 and attempt == 1:
                self._token = None
                continue
            if status not in ok:
                raise AdminError(f"{method} /admin/realms{path}: HTTP {status}: {describe(answer)}")
            return status, answer, headers
        raise AssertionError("unreachable")

    def get(self, path: str):
        return self.call("GET", path)[1]

    def create(self, path: str, body) -> str:
        """POST a new object; returns its id (from Location)."""
        _, _, headers = self.call("POST", path, body, ok=(201,))
        return headers["Location"].rstrip("/").rsplit("/", 1)[1]


def encode_body(form, body, headers: dict) -> tuple[bytes | None, dict]:
    """A request's body and headers: a form (urlencoded), JSON, or none."""
    if form is not None:
        return urllib.parse.urlencode(form).encode(), {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    if body is not None:
        return json.dumps(body).encode(), {**headers, "Content-Type": "application/json"}
    return None, headers


def parse(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def describe(answer) -> str:
    """Keycloak's error fields, for messages (an admin answer holds no secret;
    a token answer's error does not either)."""
    if isinstance(answer, dict):
        return ", ".join(f"{k}={answer[k]}" for k in ("error", "error_description", "errorMessage") if k in answer) or "no error field"
    return (answer or "")[:200]


# --- secrets ---------------------------------------------------------------


def write_private(path: str, text: str) -> None:
    """Create a 0600 file (never widening an existing one's mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def state_secrets(state_dir: str) -> dict:
    """The users' passwords and the test clients' secret: made once per state
    dir, so a warm restart keeps what tests and files already hold."""
    users_file = os.path.join(state_dir, "users.json")
    secret_file = os.path.join(state_dir, "test-client-secret")
    if not os.path.exists(users_file):
        users = {
            name: {"password": secrets.token_urlsafe(18), "groups": [group], "email": f"{name}@mcpk.test"}
            for name, (group, _) in USERS.items()
        }
        write_private(users_file, json.dumps(users, indent=2) + "\n")
    if not os.path.exists(secret_file):
        write_private(secret_file, secrets.token_urlsafe(24))
    with open(users_file) as f, open(secret_file) as g:
        return {"users": json.load(f), "client_secret": g.read().strip()}


# --- realm setup -----------------------------------------------------------


def ensure_realm(admin: Admin, realm: str) -> None:
    status, _, _ = admin.call("GET", f"/{realm}", ok=(200, 404))
    if status == 404:
        admin.call("POST", "", {"realm": realm, "enabled": True}, ok=(201,))
    # Brute-force protection off: tests try wrong passwords on purpose and
    # must not lock alice out for the next test.
    admin.call("PUT", f"/{realm}", {"realm": realm, "enabled": True, "bruteForceProtected": False, "accessTokenLifespan": 300})


def find(items, key: str, value):
    return next((item for item in items if item.get(key) == value), None)


def ensure_client_scope(admin: Admin, realm: str, name: str, rep: dict) -> str:
    """A realm default client scope named `name` with at least the mappers
    of rep (added to a scope made before they were). Returns its id."""
    existing = find(admin.get(f"/{realm}/client-scopes"), "name", name)
    scope_id = existing["id"] if existing else admin.create(f"/{realm}/client-scopes", {"name": name, **rep})
    models = f"/{realm}/client-scopes/{scope_id}/protocol-mappers/models"
    have = admin.get(models)
    for mapper in rep.get("protocolMappers", []):
        if not find(have, "name", mapper["name"]):
            admin.create(models, mapper)
    if not find(admin.get(f"/{realm}/default-default-client-scopes"), "id", scope_id):
        admin.call("PUT", f"/{realm}/default-default-client-scopes/{scope_id}")
    return scope_id


MCP_SCOPE_REP = {
    "protocol": "openid-connect",
    "description": "an MCP server's token: the username and groups claims and the registered resources' audiences",
    "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"},
    "protocolMappers": [
        {
            "name": "groups",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-group-membership-mapper",
            # Group names without their path ("kafka-operators", not "/kafka-operators").
            "config": {
                "full.path": "false",
                "claim.name": "groups",
                "access.token.claim": "true",
                "id.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        },
        {
            # preferred_username in every MCP token, also when the client
            # asked for no `profile` scope (MCP clients ask for the scopes the
            # server's metadata names, here only `mcp`).
            "name": "username",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-usermodel-property-mapper",
            "config": {
                "user.attribute": "username",
                "claim.name": "preferred_username",
                "jsonType.label": "String",
                "access.token.claim": "true",
                "id.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        },
    ],
}


def ensure_group(admin: Admin, realm: str, name: str) -> str:
    existing = find(admin.get(f"/{realm}/groups?search={urllib.parse.quote(name)}&exact=true"), "name", name)
    return existing["id"] if existing else admin.create(f"/{realm}/groups", {"name": name})


def ensure_user(admin: Admin, realm: str, username: str, first_name: str, spec: dict, group_ids: dict) -> None:
    rep = {
        "username": username,
        "enabled": True,
        "email": spec["email"],
        "emailVerified": True,
        "firstName": first_name,
        "lastName": "Tester",
        "requiredActions": [],
    }
    existing = admin.get(f"/{realm}/users?username={username}&exact=true")
    if existing:
        user_id = existing[0]["id"]
        admin.call("PUT", f"/{realm}/users/{user_id}", rep)
    else:
        user_id = admin.create(f"/{realm}/users", rep)
    admin.call("PUT", f"/{realm}/users/{user_id}/reset-password", {"type": "password", "value": spec["password"], "temporary": False})
    wanted = {group_ids[g] for g in spec["groups"]}
    current = {g["id"] for g in admin.get(f"/{realm}/users/{user_id}/groups")}
    for gid in wanted - current:
        admin.call("PUT", f"/{realm}/users/{user_id}/groups/{gid}")
    for gid in current - wanted:
        admin.call("DELETE", f"/{realm}/users/{user_id}/groups/{gid}")


def client_id_of(admin: Admin, realm: str, client_id: str) -> str | None:
    found = admin.get(f"/{realm}/clients?clientId={urllib.parse.quote(client_id, safe='')}")
    return found[0]["id"] if found else None


def ensure_client(admin: Admin, realm: str, rep: dict) -> str:
    """Create or update a client; returns its internal id."""
    internal = client_id_of(admin, realm, rep["clientId"])
    if internal:
        admin.call("PUT", f"/{realm}/clients/{internal}", {**rep, "id": internal})
        return internal
    return admin.create(f"/{realm}/clients", rep)


def test_client_rep(client_id: str, secret: str, lifespan: int | None) -> dict:
    return {
        "clientId": client_id,
        "name": "e2e tests: users' tokens by password grant",
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": True,
        "serviceAccountsEnabled": False,
        "attributes": {"access.token.lifespan": str(lifespan)} if lifespan else {},
    }


def ensure_registration_policies(admin: Admin, realm: str) -> None:
    """Anonymous dynamic client registration (RFC 7591) as MCP clients do it:
    from loopback, with loopback redirect URIs. Keycloak's defaults refuse it
    ("Trusted Hosts": no host is trusted) and stop at 200 clients in a realm,
    which a long-lived state dir reaches (every sign-in test registers one).
    "Allowed Client Scopes" stays as it is: a `scope` naming anything but the
    realm's default scopes (`openid` too, which is no client scope here) is
    refused at registration, which says more than the tokens without aud
    that such a client would get (see MCP_SCOPE)."""
    policies = admin.get(f"/{realm}/components?type={REGISTRATION_POLICY}")
    wanted = {
        "trusted-hosts": {
            "trusted-hosts": ["127.0.0.1", "localhost"],
            "host-sending-registration-request-must-match": ["true"],
            "client-uris-must-match": ["true"],
        },
        "max-clients": {"max-clients": ["100000"]},
    }
    for policy in policies:
        config = wanted.get(policy["providerId"])
        if policy.get("subType") != "anonymous" or config is None:
            continue
        if any(policy.get("config", {}).get(k) != v for k, v in config.items()):
            policy["config"] = {**policy.get("config", {}), **config}
            admin.call("PUT", f"/{realm}/components/{policy['id']}", policy)


def setup_realm(admin: Admin, realm: str, state: dict) -> None:
    ensure_realm(admin, realm)
    scope_id = ensure_client_scope(admin, realm, MCP_SCOPE, MCP_SCOPE_REP)
    group_ids = {name: ensure_group(admin, realm, name) for name in GROUPS}
    for username, (_, first_name) in USERS.items():
        ensure_user(admin, realm, username, first_name, state["users"][username], group_ids)
    for client_id, lifespan in ((TEST_CLIENT, None), (SHORT_CLIENT, SHORT_TOKEN_SECONDS)):
        internal = ensure_client(admin, realm, test_client_rep(client_id, state["client_secret"], lifespan))
        # A client made before the scope was a realm default lacks it.
        admin.call("PUT", f"/{realm}/clients/{internal}/default-client-scopes/{scope_id}")
    ensure_registration_policies(admin, realm)
    prune_resources(admin, realm)


# --- resources (RFC 8707 audiences) ----------------------------------------


def resource_client_id(url: str) -> str:
    return RESOURCE_CLIENT_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:16]


def add_resource(admin: Admin, realm: str, url: str) -> str:
    """Make `resource=url` valid in realm: a client carrying url as its
    resource_url, whose client ID every token's aud holds until the
    resource indicator narrows aud to [url]. Idempotent; returns the client ID."""
    client_id = resource_client_id(url)
    ensure_client(admin, realm, {
        "clientId": client_id,
        "name": url,
        "description": "an MCP resource server (audience only: no flow is enabled)",
        "protocol": "openid-connect",
        "publicClient": False,
        "bearerOnly": False,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "attributes": {"resource_url": url},
    })
    scope = find(admin.get(f"/{realm}/client-scopes"), "name", MCP_SCOPE)
    if scope is None:
        raise AdminError(f"realm {realm} has no client scope {MCP_SCOPE}: run setup first")
    mappers = admin.get(f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models")
    if not find(mappers, "name", client_id):
        admin.create(f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models", {
            "name": client_id,
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.client.audience": client_id, "access.token.claim": "true",
                       "id.token.claim": "false", "introspection.token.claim": "true"},
        })
    return client_id


def prune_resources(admin: Admin, realm: str) -> None:
    """Remove every registered resource: each one's client ID is in every
    token's aud until a resource indicator narrows it, so resources that
    tests registered (one per port) must not pile up over a state dir's
    life. Setup runs this; tests register what they use."""
    scope = find(admin.get(f"/{realm}/client-scopes"), "name", MCP_SCOPE)
    if scope:
        for mapper in admin.get(f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models"):
            if mapper["name"].startswith(RESOURCE_CLIENT_PREFIX):
                admin.call("DELETE", f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models/{mapper['id']}")
    for client in admin.get(f"/{realm}/clients?clientId={RESOURCE_CLIENT_PREFIX}&search=true&max=10000"):
        if client["clientId"].startswith(RESOURCE_CLIENT_PREFIX):
            admin.call("DELETE", f"/{realm}/clients/{client['id']}")


def remove_resource(admin: Admin, realm: str, url: str) -> None:
    client_id = resource_client_id(url)
    scope = find(admin.get(f"/{realm}/client-scopes"), "name", MCP_SCOPE)
    if scope:
        for mapper in admin.get(f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models"):
            if mapper["name"] == client_id:
                admin.call("DELETE", f"/{realm}/client-scopes/{scope['id']}/protocol-mappers/models/{mapper['id']}")
    internal = client_id_of(admin, realm, client_id)
    if internal:
        admin.call("DELETE", f"/{realm}/clients/{internal}")


# --- signing keys ----------------------------------------------------------


def active_signing_kid(admin: Admin, realm: str, algorithm: str = "RS256") -> str:
    """The kid new tokens carry: the active key of the highest priority."""
    keys = [k for k in admin.get(f"/{realm}/keys")["keys"]
            if k.get("algorithm") == algorithm and k.get("status") == "ACTIVE" and k.get("use") == "SIG"]
    return max(keys, key=lambda k: int(k.get("providerPriority", 0)))["kid"]


def rotate_key(admin: Admin, realm: str) -> str:
    """A new RS256 key provider above every other one: new tokens carry its
    kid; the older keys stay active, so their tokens keep verifying (and
    stay in the JWKS). Returns the new kid."""
    realm_id = admin.get(f"/{realm}")["id"]
    providers = admin.get(f"/{realm}/components?type={KEY_PROVIDER}")
    top = max((int(p.get("config", {}).get("priority", ["0"])[0]) for p in providers), default=100)
    n = sum(1 for p in providers if p["name"].startswith(ROTATED_KEY_PREFIX)) + 1
    admin.create(f"/{realm}/components", {
        "name": f"{ROTATED_KEY_PREFIX}{n}",
        "providerId": "rsa-generated",
        "providerType": KEY_PROVIDER,
        "parentId": realm_id,
        "config": {"priority": [str(top + 10)], "enabled": ["true"], "active": ["true"],
                   "algorithm": ["RS256"], "keySize": ["2048"]},
    })
    return active_signing_kid(admin, realm)


def restore_keys(admin: Admin, realm: str) -> None:
    """Undo rotate_key: remove the added providers (their keys leave the
    JWKS; tokens they signed stop verifying)."""
    for provider in admin.get(f"/{realm}/components?type={KEY_PROVIDER}"):
        if provider["name"].startswith(ROTATED_KEY_PREFIX):
            admin.call("DELETE", f"/{realm}/components/{provider['id']}")


# --- command line ----------------------------------------------------------


def oidc_env(url: str, ca_file: str, state_dir: str) -> str:
    """The env file's lines for the tests (names of files, never their content)."""
    return "\n".join([
        f"export MCPK_OIDC_ISSUER={url}/realms/{REALMS[0]}",
        f"export MCPK_OIDC_OTHER_ISSUER={url}/realms/{REALMS[1]}",
        f"export MCPK_OIDC_CA_FILE={ca_file}",
        f"export MCPK_OIDC_USERS_FILE={state_dir}/users.json",
        f"export MCPK_OIDC_TEST_CLIENT_ID={TEST_CLIENT}",
        f"export MCPK_OIDC_SHORT_CLIENT_ID={SHORT_CLIENT}",
        f"export MCPK_OIDC_SHORT_TOKEN_SECONDS={SHORT_TOKEN_SECONDS}",
        f"export MCPK_OIDC_TEST_CLIENT_SECRET_FILE={state_dir}/test-client-secret",
    ]) + "\n"


def admin_from_state(url: str, ca_file: str, state_dir: str) -> Admin:
    with open(os.path.join(state_dir, "admin-password")) as f:
        return Admin(url, ca_file, f.read().strip())


def read_env_file(path: str) -> dict:
    env = {}
    with open(path) as f:
        for line in f:
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].rstrip("\n").split("=", 1)
                env[key] = value
    return env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("setup", "env", "resource", "keys"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--url")
    parser.add_argument("--ca-file")
    parser.add_argument("--state-dir")
    parser.add_argument("--realm", action="append", help="realm(s) for resource/keys (default: all)")
    opts = parser.parse_args(argv)
    if not (opts.url and opts.ca_file and opts.state_dir):
        # resource/keys from a test: the stack's env file names everything.
        env = read_env_file(os.environ.get("MCPK_STACK_ENV") or os.path.join(os.path.dirname(__file__), "..", ".stack", "env"))
        opts.url = opts.url or env["MCPK_KEYCLOAK_URL"]
        opts.ca_file = opts.ca_file or env["MCPK_OIDC_CA_FILE"]
        opts.state_dir = opts.state_dir or env["MCPK_KEYCLOAK_STATE_DIR"]
    if opts.command == "env":
        sys.stdout.write(oidc_env(opts.url, opts.ca_file, opts.state_dir))
        return 0
    admin = admin_from_state(opts.url, opts.ca_file, opts.state_dir)
    realms = opts.realm or list(REALMS)
    if opts.command == "setup":
        state = state_secrets(opts.state_dir)
        for realm in REALMS:
            setup_realm(admin, realm, state)
            print(f"realm {realm}: users {', '.join(USERS)}; clients {TEST_CLIENT}, {SHORT_CLIENT}")
    elif opts.command == "resource" and len(opts.args) == 2 and opts.args[0] in ("add", "remove"):
        for realm in realms:
            if opts.args[0] == "add":
                print(f"realm {realm}: resource {opts.args[1]} is client {add_resource(admin, realm, opts.args[1])}")
            else:
                remove_resource(admin, realm, opts.args[1])
    elif opts.command == "keys" and opts.args in (["rotate"], ["restore"]):
        for realm in realms:
            if opts.args[0] == "rotate":
                print(f"realm {realm}: new tokens carry kid {rotate_key(admin, realm)}")
            else:
                restore_keys(admin, realm)
                print(f"realm {realm}: tokens carry kid {active_signing_kid(admin, realm)}")
    else:
        parser.error("usage: resource add|remove URL, keys rotate|restore")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except AdminError as e:
        print(f"keycloak_realm: {e}", file=sys.stderr)
        sys.exit(1)
