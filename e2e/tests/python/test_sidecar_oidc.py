"""Sign-in with the organization's identity provider (auth.oidc): the
sidecar is an OAuth resource server for a real Keycloak (the ground's), its
callers still authorized per tool by the real apiserver's
SubjectAccessReview, as the prefixed user and groups their token names.

The official Python SDK's OAuth client signs a person in with no token to
start from (401, Protected Resource Metadata, the provider's metadata,
dynamic registration, PKCE with the resource indicator), driven headlessly
through Keycloak's own login form."""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import anyio
import jwt
import pytest
from conftest import as_caller, kubectl, sa_token, tool_error
from cryptography.hazmat.primitives.asymmetric import rsa

import oidc_ground

SERVER = "orders"
TOOLS = ["cluster_status", "list_topics", "describe_topic"]
# What the Group of alice (kafka-operators) may call; bob's group (kafka-viewers) has no grant.
OPERATOR_TOOLS = ["list_topics", "describe_topic"]


@pytest.fixture
def group_grants(stack_env):
    """A namespace where a Role with the operators' tools is bound to the
    Group oidc:kafka-operators, and one with list_topics to a ServiceAccount
    `agent` (Kubernetes callers keep working next to signed-in ones)."""
    import subprocess
    import uuid

    ns = f"sidecar-oidc-{uuid.uuid4().hex[:8]}"

    def role(name, verbs, subject):
        return [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
             "rules": [{"apiGroups": ["mcpkafka.dev"], "resources": ["mcpkafkaservers/tools"], "resourceNames": [SERVER], "verbs": verbs}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": [subject]},
        ]

    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent", "namespace": ns}},
            *role("operators", OPERATOR_TOOLS, {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:kafka-operators"}),
            *role("agent", ["list_topics"], {"kind": "ServiceAccount", "name": "agent", "namespace": ns})]
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    yield ns
    subprocess.run([stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "delete", "namespace", ns, "--wait=false"],
                   capture_output=True)


@pytest.fixture
def signed_in_sidecar(group_grants, stack_env, start_sidecar, tmp_path, free_port):
    resource = f"http://127.0.0.1:{free_port}/mcp"
    oidc_ground.register_resource(resource)
    config = tmp_path / "sidecar.yaml"
    config.write_text(json.dumps({
        "server": {"name": SERVER, "namespace": group_grants, "environment": "dev"},
        "listen": {"address": f"127.0.0.1:{free_port}"},
        "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
        "tools": TOOLS,
        "auth": {"mode": "kubernetes", "oidc": {
            "issuer": stack_env["MCPK_OIDC_ISSUER"],
            "caFile": stack_env["MCPK_OIDC_CA_FILE"],
            "resource": resource,
            "usernameClaim": "preferred_username",
            # The short-lived tokens' test waits out the skew.
            "clockSkewSeconds": 1,
            "fetchTimeoutMs": 2000,
            # What the ground's realm gives the resource audience with (see oidc_ground).
            "scopes": ["mcp"],
        }},
    }))
    sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": stack_env["KUBECONFIG"]}, port=free_port)
    sidecar.wait_ready()
    sidecar.resource = resource
    sidecar.namespace = group_grants
    return sidecar


def post_initialize(url, bearer=None):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    req = urllib.request.Request(f"{url}/mcp", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def metadata_url(sidecar):
    return f"{sidecar.url}/.well-known/oauth-protected-resource/mcp"


def assert_refused(sidecar, bearer, what):
    status, headers = post_initialize(sidecar.url, bearer)
    assert status == 401, f"{what}: {status}"
    challenge = headers["WWW-Authenticate"]
    assert f'resource_metadata="{metadata_url(sidecar)}"' in challenge, f"{what}: {challenge}"
    assert 'error="invalid_token"' in challenge, f"{what}: {challenge}"


def test_the_metadata_names_the_resource_and_the_provider_and_every_401_points_at_it(signed_in_sidecar, stack_env):
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        with urllib.request.urlopen(signed_in_sidecar.url + path, timeout=10) as r:
            assert r.status == 200
            metadata = json.load(r)
        assert metadata["resource"] == signed_in_sidecar.resource, metadata
        assert metadata["authorization_servers"] == [stack_env["MCPK_OIDC_ISSUER"]], metadata
        assert metadata["bearer_methods_supported"] == ["header"], metadata
    status, headers = post_initialize(signed_in_sidecar.url)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert f'resource_metadata="{metadata_url(signed_in_sidecar)}"' in challenge, challenge
    assert "error=" not in challenge, "no token is not an invalid token"
    assert 'scope="mcp"' in challenge, challenge


def audit_records(sidecar):
    records = []
    for line in sidecar.log.read_text().splitlines():
        if line.startswith("{") and '"kind":"mcp-kafka-sidecar.audit/v1"' in line:
            records.append(json.loads(line))
    return records


def test_the_python_sdk_signs_in_and_rbac_decides_per_tool_by_the_users_group(signed_in_sidecar, stack_env):
    async def tour(session):
        listed = sorted(t.name for t in (await session.list_tools()).tools)
        topics = await session.call_tool("list_topics", {})
        status = await session.call_tool("cluster_status", {})
        return listed, topics, status

    (listed, topics, status), sign_in, storage = anyio.run(oidc_ground.signed_in_session, signed_in_sidecar.resource, "alice", tour)
    assert len(sign_in.redirects) == 1, "one sign-in"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(sign_in.authorization_urls[0]).query)
    assert query["resource"] == [signed_in_sidecar.resource], query
    assert query["code_challenge_method"] == ["S256"], query
    assert sign_in.authorization_urls[0].startswith(stack_env["MCPK_OIDC_ISSUER"]), "the provider the metadata named"
    _, claims = oidc_ground.decode(storage.tokens.access_token)
    assert signed_in_sidecar.resource in oidc_ground.audiences(claims), claims
    client_id = storage.client_info.client_id
    assert claims["azp"] == client_id, "dynamically registered"
    assert listed == sorted(OPERATOR_TOOLS), listed
    assert not topics.is_error, topics
    assert tool_error(status)["code"] == "PERMISSION_DENIED"

    records = [r for r in audit_records(signed_in_sidecar) if r["tool"] in ("list_topics", "cluster_status")]
    assert [(r["tool"], r["decision"]) for r in records] == [("list_topics", "allow"), ("cluster_status", "deny")], records
    for r in records:
        assert r["subject"]["username"] == "oidc:alice", r
        assert "oidc:kafka-operators" in r["subject"]["groups"], r
        assert r["subject"]["issuer"] == stack_env["MCPK_OIDC_ISSUER"], r
        assert r["subject"]["client"] == client_id, r

    async def bob_tour(session):
        listed = [t.name for t in (await session.list_tools()).tools]
        return listed, await session.call_tool("list_topics", {})

    (listed, topics), _, _ = anyio.run(oidc_ground.signed_in_session, signed_in_sidecar.resource, "bob", bob_tour)
    assert listed == [], "bob's group has no grant"
    assert tool_error(topics)["code"] == "PERMISSION_DENIED"


def test_a_serviceaccount_token_keeps_working_next_to_signed_in_users(signed_in_sidecar, stack_env):
    token = sa_token(stack_env, signed_in_sidecar.namespace, "agent", SERVER)

    async def work(session):
        return [t.name for t in (await session.list_tools()).tools]

    assert anyio.run(as_caller, signed_in_sidecar.url, token, work) == ["list_topics"]


def forged(claims, kid, private_key=None, alg="RS256"):
    key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def b64(value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_bytes(kid):
    """The provider's public key (its JWK's modulus): what an algorithm
    confusion attack signs with, as if it were an HMAC secret."""
    jwk = next(k for k in oidc_ground.ground().jwks()["keys"] if k["kid"] == kid)
    return base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))


def hs256(claims, kid, secret):
    # By hand: PyJWT itself refuses to key HMAC with a public key.
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def test_expired_foreign_other_issuer_and_forged_tokens_are_refused_with_401(signed_in_sidecar, stack_env):
    resource = signed_in_sidecar.resource
    good = oidc_ground.token("alice", resource)
    header, claims = oidc_ground.decode(good)
    assert post_initialize(signed_in_sidecar.url, good)[0] == 200, "the control: a good token passes"

    other_server = resource.replace("/mcp", "/other-mcp")
    refused = {
        "a token for another server": oidc_ground.token("alice", other_server),
        "a token from another issuer": oidc_ground.token("alice", resource, realm=oidc_ground.OTHER_REALM),
        "a forged token (another key, the real kid)": forged(claims, header["kid"]),
        "a token with its claims changed": ".".join([good.split(".")[0], b64({**claims, "preferred_username": "admin"}),
                                                     good.split(".")[2]]),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': header['kid']})}.{b64(claims)}.",
        "HS256 keyed with the public key": hs256(claims, header["kid"], public_key_bytes(header["kid"])),
    }
    short = oidc_ground.token("alice", resource, short_lived=True)
    for what, token in refused.items():
        assert_refused(signed_in_sidecar, token, what)

    _, short_claims = oidc_ground.decode(short)
    # Past its exp and the sidecar's 1 s skew.
    time.sleep(max(0, short_claims["exp"] - time.time()) + 2.5)
    assert_refused(signed_in_sidecar, short, "an expired token")


def key_fetches(sidecar, outcome):
    with urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'mcp_kafka_oidc_key_fetches_total{{outcome="{outcome}"}}'):
                return float(line.split()[-1])
    return 0.0


def test_rotated_keys_are_fetched_and_a_hung_provider_leaves_cached_keys_serving(signed_in_sidecar, stack_env):
    resource = signed_in_sidecar.resource
    before = oidc_ground.token("alice", resource)
    unseen_by_old_key = oidc_ground.token("bob", resource)
    old_kid = oidc_ground.decode(before)[0]["kid"]
    assert post_initialize(signed_in_sidecar.url, before)[0] == 200
    fetched = key_fetches(signed_in_sidecar, "ok")
    # The sidecar fetches keys at most every 10 s; its start fetched them.
    time.sleep(10.5)
    with oidc_ground.rotated_keys() as new_kid:
        assert new_kid != old_kid
        after = oidc_ground.token("alice", resource)
        assert oidc_ground.decode(after)[0]["kid"] == new_kid
        assert post_initialize(signed_in_sidecar.url, after)[0] == 200, "a new key, fetched on first sight"
        assert key_fetches(signed_in_sidecar, "ok") == fetched + 1
        unseen_by_new_key = oidc_ground.token("bob", resource)
        _, claims = oidc_ground.decode(unseen_by_new_key)
        time.sleep(10.5)  # so that an unknown key may make a fetch again
        # The provider now accepts connections and answers nothing.
        with oidc_ground.stopped():
            assert post_initialize(signed_in_sidecar.url, unseen_by_new_key)[0] == 200, "cached keys keep serving"
            assert post_initialize(signed_in_sidecar.url, unseen_by_old_key)[0] == 200
            failed = key_fetches(signed_in_sidecar, "failed")
            started = time.monotonic()
            assert_refused(signed_in_sidecar, forged(claims, "a-kid-nobody-published"), "an unknown key, provider hung")
            waited = time.monotonic() - started
            assert key_fetches(signed_in_sidecar, "failed") == failed + 1, "it asked, within fetchTimeoutMs"
            assert waited >= 1.5, f"the refusal came after the bounded fetch ({waited:.1f} s)"
    # Rotated back: the old key verifies again (it never left the key set).
    assert post_initialize(signed_in_sidecar.url, oidc_ground.token("alice", resource))[0] == 200


def test_no_token_secret_or_code_appears_in_the_sidecars_log_or_audit(signed_in_sidecar, stack_env):
    async def tour(session):
        return await session.call_tool("list_topics", {})

    _, sign_in, storage = anyio.run(oidc_ground.signed_in_session, signed_in_sidecar.resource, "alice", tour)
    password_token = oidc_ground.token("bob", signed_in_sidecar.resource)
    post_initialize(signed_in_sidecar.url, password_token)
    assert_refused(signed_in_sidecar, password_token[:-4] + "AAAA", "a broken signature")
    log = signed_in_sidecar.log.read_text()
    assert audit_records(signed_in_sidecar), "the canary looked at audit records"
    canaries = {
        "the access token": storage.tokens.access_token,
        "its signature": storage.tokens.access_token.split(".")[2],
        "the refresh token": storage.tokens.refresh_token or "-",
        "the code": sign_in.redirects[0]["code"],
        "bob's token": password_token,
        "bob's signature": password_token.split(".")[2],
        "alice's password": oidc_ground.ground().password("alice"),
    }
    for what, secret in canaries.items():
        if secret != "-":
            assert secret not in log, f"{what} is in the sidecar's log"
