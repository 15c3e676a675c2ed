"""The test ground's identity provider (Keycloak) does what the sign-in tests
rely on: tokens whose iss, aud, groups, exp and kid are as described, key
rotation, a second issuer, dynamic registration for loopback redirect URIs,
a headless sign-in with PKCE, and a way to make it unreachable. Against the
real Keycloak of e2e/stack; nothing here starts a sidecar."""

import socket
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest

import oidc_ground
from oidc_ground import LoginError, TokenError, audiences, decode, keycloak_realm

# Resource URLs nobody serves: Keycloak only needs them registered.
RESOURCE = "http://127.0.0.1:18080/mcp"
OTHER_RESOURCE = "http://127.0.0.1:18081/mcp"
REDIRECT = "http://127.0.0.1:39999/callback"


@pytest.fixture(scope="module")
def oidc(stack_env):
    try:
        return oidc_ground.OidcGround(stack_env)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


def verify(oidc, token: str, audience: str, realm: str = oidc_ground.REALM) -> dict:
    """The token's claims once its signature (by a key of the realm's JWKS),
    iss, aud and exp check out, as a resource server would check them."""
    kid = decode(token)[0]["kid"]
    key = jwt.PyJWKSet.from_dict(oidc.jwks(realm))[kid].key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=oidc.issuer(realm))


def jwks_kids(oidc, realm: str = oidc_ground.REALM) -> set[str]:
    return {k["kid"] for k in oidc.jwks(realm)["keys"] if k.get("use") == "sig"}


def test_a_users_token_names_the_issuer_the_resource_and_the_users_groups(oidc, stack_env):
    for user, groups in (("alice", ["kafka-operators"]), ("bob", ["kafka-viewers"])):
        token = oidc.token(user, RESOURCE)
        claims = verify(oidc, token, RESOURCE)
        assert claims["iss"] == stack_env["MCPK_OIDC_ISSUER"]
        assert audiences(claims) == [RESOURCE]
        assert claims["groups"] == groups == oidc.groups(user)
        assert claims["preferred_username"] == user
        assert claims["azp"] == stack_env["MCPK_OIDC_TEST_CLIENT_ID"]
        assert claims["exp"] - claims["iat"] == 300


def test_a_short_lived_token_expires_after_the_configured_seconds(oidc, stack_env):
    seconds = int(stack_env["MCPK_OIDC_SHORT_TOKEN_SECONDS"])
    before = time.time()
    claims = verify(oidc, oidc.token("alice", RESOURCE, short_lived=True), RESOURCE)
    assert claims["exp"] - claims["iat"] == seconds
    assert claims["exp"] <= before + seconds + 2
    assert claims["groups"] == ["kafka-operators"]


def test_a_token_for_another_server_names_only_that_server(oidc):
    token = oidc.token("alice", OTHER_RESOURCE)
    assert audiences(decode(token)[1]) == [OTHER_RESOURCE]
    with pytest.raises(jwt.InvalidAudienceError):
        verify(oidc, token, RESOURCE)
    # Without a resource indicator, aud names no resource URL at all.
    assert RESOURCE not in audiences(decode(oidc.token("alice", None))[1])


def test_a_resource_keycloak_does_not_know_is_refused_with_invalid_target(oidc):
    unknown = f"http://127.0.0.1:18089/{uuid.uuid4().hex}"
    with pytest.raises(TokenError) as refused:
        oidc.token_response("alice", unknown, register=False)
    assert (refused.value.status, refused.value.error) == (400, "invalid_target")


def test_the_other_realm_is_another_issuer_with_other_keys(oidc, stack_env):
    token = oidc.token("alice", RESOURCE, realm=oidc_ground.OTHER_REALM)
    claims = verify(oidc, token, RESOURCE, realm=oidc_ground.OTHER_REALM)
    assert claims["iss"] == stack_env["MCPK_OIDC_OTHER_ISSUER"] != stack_env["MCPK_OIDC_ISSUER"]
    assert claims["groups"] == ["kafka-operators"]
    assert decode(token)[0]["kid"] not in jwks_kids(oidc)


def test_rotated_keys_sign_new_tokens_while_the_old_key_keeps_verifying(oidc):
    old = oidc.token("alice", RESOURCE)
    old_kid = decode(old)[0]["kid"]
    assert oidc.signing_kid() == old_kid
    with oidc.rotated_keys() as new_kid:
        assert new_kid != old_kid
        new = oidc.token("alice", RESOURCE)
        assert decode(new)[0]["kid"] == new_kid
        assert {old_kid, new_kid} <= jwks_kids(oidc)
        assert verify(oidc, old, RESOURCE)["sub"] == verify(oidc, new, RESOURCE)["sub"]
    assert decode(oidc.token("alice", RESOURCE))[0]["kid"] == old_kid
    assert new_kid not in jwks_kids(oidc)


def test_a_client_registers_itself_and_signs_a_user_in_with_pkce(oidc):
    # What the MCP SDKs send: a public client with a loopback redirect URI
    # (the Python SDK adds application_type); a scope, if any, from the
    # server's scopes_supported.
    client = oidc.register_client(REDIRECT, application_type="native", scope=keycloak_realm.MCP_SCOPE)
    assert client["token_endpoint_auth_method"] == "none"
    url, verifier, state = oidc.authorization_url(client["client_id"], REDIRECT, RESOURCE, scope=keycloak_realm.MCP_SCOPE)
    code = oidc.headless_login(url, "bob")
    tokens = oidc.exchange_code(code, client["client_id"], REDIRECT, verifier, RESOURCE)
    claims = verify(oidc, tokens["access_token"], RESOURCE)
    assert audiences(claims) == [RESOURCE]
    assert claims["azp"] == client["client_id"]
    assert claims["groups"] == ["kafka-viewers"]
    # A code is good once, with its verifier.
    with pytest.raises(TokenError) as replayed:
        oidc.exchange_code(code, client["client_id"], REDIRECT, verifier, RESOURCE)
    assert replayed.value.error == "invalid_grant"


def test_a_client_registered_without_a_scope_gets_the_realms_defaults(oidc):
    client = oidc.register_client("http://localhost:39999/callback")
    url, verifier, _ = oidc.authorization_url(client["client_id"], "http://localhost:39999/callback", OTHER_RESOURCE)
    code = oidc.headless_login(url, "alice")
    tokens = oidc.exchange_code(code, client["client_id"], "http://localhost:39999/callback", verifier, OTHER_RESOURCE)
    claims = verify(oidc, tokens["access_token"], OTHER_RESOURCE)
    assert claims["groups"] == ["kafka-operators"]


def test_registration_is_for_loopback_redirect_uris_only(oidc):
    with pytest.raises(TokenError) as refused:
        oidc.register_client("https://mcp.example.com/callback")
    assert refused.value.status == 403


def test_registration_naming_a_scope_keycloak_lacks_is_refused(oidc):
    # A client registered with scope=openid would get no client scope at
    # all (no groups, no aud): Keycloak's registration policy refuses it.
    with pytest.raises(TokenError) as refused:
        oidc.register_client(REDIRECT, scope="openid")
    assert (refused.value.status, refused.value.error) == (403, "insufficient_scope")


def test_a_wrong_password_is_refused_on_the_login_page(oidc):
    client = oidc.register_client(REDIRECT)
    url, _, _ = oidc.authorization_url(client["client_id"], REDIRECT, RESOURCE)
    with pytest.raises(LoginError, match="Invalid username or password"):
        oidc.headless_login(url, "alice", password="not-" + uuid.uuid4().hex)


def test_a_stopped_keycloak_answers_nothing_until_it_is_resumed(oidc):
    discovery = oidc.issuer() + "/.well-known/openid-configuration"
    with oidc.stopped():
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            urllib.request.urlopen(discovery, context=oidc.ssl, timeout=2)
    with urllib.request.urlopen(discovery, context=oidc.ssl, timeout=30) as answer:
        assert answer.status == 200


def test_setting_the_realms_up_again_changes_nothing(oidc):
    # What a warm restart of e2e/stack does: the same objects, the same
    # passwords and keys.
    admin = oidc.admin()

    def snapshot(realm):
        # Registered resources are pruned by setup: they are the tests', not the realm's.
        return ({c["clientId"]: c["id"] for c in admin.get(f"/{realm}/clients")
                 if not c["clientId"].startswith(keycloak_realm.RESOURCE_CLIENT_PREFIX)},
                {u["username"]: u["id"] for u in admin.get(f"/{realm}/users")},
                keycloak_realm.active_signing_kid(admin, realm))

    before = {realm: snapshot(realm) for realm in keycloak_realm.REALMS}
    state = keycloak_realm.state_secrets(oidc.state_dir)
    for realm in keycloak_realm.REALMS:
        keycloak_realm.setup_realm(admin, realm, state)
    assert {realm: snapshot(realm) for realm in keycloak_realm.REALMS} == before
    # The resource is registered again on the first invalid_target.
    assert verify(oidc, oidc.token("alice", RESOURCE), RESOURCE)["groups"] == ["kafka-operators"]


def test_the_python_sdk_handlers_hand_over_the_redirects_code_state_and_issuer(oidc):
    import anyio

    client = oidc.register_client(REDIRECT)
    url, verifier, state = oidc.authorization_url(client["client_id"], REDIRECT, RESOURCE)
    sign_in = oidc_ground.SdkSignIn("alice")

    async def run():
        await sign_in.redirect(url)
        return await sign_in.callback()

    result = anyio.run(run)
    assert (result.state, result.iss) == (state, oidc.issuer())
    tokens = oidc.exchange_code(result.code, client["client_id"], REDIRECT, verifier, RESOURCE)
    assert verify(oidc, tokens["access_token"], RESOURCE)["preferred_username"] == "alice"
