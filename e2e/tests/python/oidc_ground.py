"""The test ground's identity provider (Keycloak, e2e/stack) as sign-in tests use it.

    import oidc_ground
    tok = oidc_ground.token("alice", "http://127.0.0.1:PORT/mcp")      # aud == that URL
    code = oidc_ground.headless_login(authorization_url, "alice")     # the redirect's code
    with oidc_ground.rotated_keys():  ...                             # new tokens, new kid
    with oidc_ground.stopped():  ...                                  # Keycloak answers nothing

Everything comes from the stack's env file (MCPK_OIDC_*, MCPK_KEYCLOAK_*);
the admin API calls are e2e/lib/keycloak_realm.py's, so the realm's layout is
described in one place. No function here logs or returns a password or a
client secret; tokens are returned to the caller only.
"""

import base64
import contextlib
import hashlib
import html.parser
import http.cookiejar
import json
import os
import pathlib
import secrets
import signal
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

from conftest import E2E_DIR, read_stack_env

sys.path.insert(0, str(E2E_DIR / "lib"))
import keycloak_realm  # noqa: E402  (e2e/lib is not a package)

REALM = keycloak_realm.REALMS[0]
OTHER_REALM = keycloak_realm.REALMS[1]


class TokenError(Exception):
    """The token endpoint refused: `error` is OAuth's code (e.g. invalid_target)."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(f"HTTP {status}: {error}: {description}")
        self.status, self.error, self.description = status, error, description


class LoginError(Exception):
    """The headless sign-in did not end in a redirect with a code."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer to read (Location), never one to follow: the
    # last one points at the client's redirect URI, which nobody serves.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Forms(html.parser.HTMLParser):
    """The forms of a page: action, fields (hidden and text inputs with their
    values) and submit buttons (name -> value)."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.errors = []
        self._in_error = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"id": a.get("id"), "action": a.get("action"), "fields": {}, "buttons": {}})
        elif tag in ("input", "button") and self.forms:
            name = a.get("name")
            kind = a.get("type", "submit" if tag == "button" else "text")
            if name and kind == "submit":
                self.forms[-1]["buttons"][name] = a.get("value", "")
            elif name and (kind not in ("checkbox", "radio") or "checked" in a):
                self.forms[-1]["fields"][name] = a.get("value", "")
        # Keycloak's message under a field ("Invalid username or password.")
        if tag == "span" and "kc-feedback-text" in (a.get("class") or ""):
            self._in_error = True

    def handle_data(self, data):
        if self._in_error and data.strip():
            self.errors.append(data.strip())
            self._in_error = False


def decode(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWT, not verified: for asserting what was issued."""
    def part(s):
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    header, claims, _ = token.split(".")
    return part(header), part(claims)


def audiences(claims: dict) -> list[str]:
    """aud as a list: Keycloak writes one audience as a string, several as a list."""
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else list(aud)


class OidcGround:
    """One test ground's Keycloak (the env file's MCPK_* variables)."""

    def __init__(self, env: dict[str, str]):
        missing = [k for k in ("MCPK_KEYCLOAK_URL", "MCPK_OIDC_ISSUER", "MCPK_OIDC_CA_FILE") if k not in env]
        if missing:
            raise RuntimeError(f"the test ground has no identity provider ({', '.join(missing)}): restart it with `e2e/stack up`")
        self.env = env
        self.url = env["MCPK_KEYCLOAK_URL"]
        self.ca_file = env["MCPK_OIDC_CA_FILE"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        self.state_dir = env["MCPK_KEYCLOAK_STATE_DIR"]
        self._admin = None
        self._resources: set[tuple[str, str]] = set()

    # --- where things are ---------------------------------------------------

    def issuer(self, realm: str = REALM) -> str:
        return f"{self.url}/realms/{realm}"

    def metadata(self, realm: str = REALM) -> dict:
        """The realm's OpenID Provider metadata (discovery document)."""
        return self._json("GET", self.issuer(realm) + "/.well-known/openid-configuration")

    def jwks(self, realm: str = REALM) -> dict:
        return self._json("GET", self.metadata(realm)["jwks_uri"])

    def password(self, user: str) -> str:
        with open(self.env["MCPK_OIDC_USERS_FILE"]) as f:
            return json.load(f)[user]["password"]

    def groups(self, user: str) -> list[str]:
        with open(self.env["MCPK_OIDC_USERS_FILE"]) as f:
            return json.load(f)[user]["groups"]

    def admin(self) -> keycloak_realm.Admin:
        if self._admin is None:
            self._admin = keycloak_realm.admin_from_state(self.url, self.ca_file, self.state_dir)
        return self._admin

    # --- HTTP ---------------------------------------------------------------

    def _open(self, opener, method, url, form=None, body=None, timeout=30.0):
        data, headers = keycloak_realm.encode_body(form, body, {"Accept": "application/json, text/html"})
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def _opener(self, jar=None):
        handlers = [urllib.request.HTTPSHandler(context=self.ssl), _NoRedirect()]
        if jar is not None:
            handlers.append(urllib.request.HTTPCookieProcessor(jar))
        return urllib.request.build_opener(*handlers)

    def _json(self, method, url, form=None, body=None, timeout=30.0):
        status, _, raw = self._open(self._opener(), method, url, form=form, body=body, timeout=timeout)
        answer = json.loads(raw) if raw else {}
        if status >= 400:
            raise TokenError(status, answer.get("error", "?"), answer.get("error_description", ""))
        return answer

    # --- resources and tokens -------------------------------------------------

    def register_resource(self, url: str, realms=keycloak_realm.REALMS) -> None:
        """Let tokens be asked for `resource=url` (RFC 8707) in these realms;
        idempotent, and cached for this process. A sign-in test registers its
        server's URL before the client asks for a code; every Keycloak start
        forgets them all again (keycloak_realm.prune_resources)."""
        for realm in realms:
            if (realm, url) not in self._resources:
                keycloak_realm.add_resource(self.admin(), realm, url)
                self._resources.add((realm, url))

    def unregister_resource(self, url: str, realms=keycloak_realm.REALMS) -> None:
        for realm in realms:
            keycloak_realm.remove_resource(self.admin(), realm, url)
            self._resources.discard((realm, url))

    def token_response(self, user: str, resource: str | None, short_lived: bool = False, realm: str = REALM,
                       register: bool = True, password: str | None = None) -> dict:
        """The token endpoint's answer to a password grant of the test client
        (the short-lived one if asked) for `user`, with `resource` (aud)."""
        if resource is not None and register:
            self.register_resource(resource, realms=(realm,))
        client = self.env["MCPK_OIDC_SHORT_CLIENT_ID" if short_lived else "MCPK_OIDC_TEST_CLIENT_ID"]
        secret = pathlib.Path(self.env["MCPK_OIDC_TEST_CLIENT_SECRET_FILE"]).read_text().strip()
        form = {"grant_type": "password", "client_id": client, "client_secret": secret, "username": user,
                "password": password if password is not None else self.password(user)}
        if resource is not None:
            form["resource"] = resource
        try:
            return self._json("POST", self.metadata(realm)["token_endpoint"], form=form)
        except TokenError as e:
            # Keycloak forgot the resource (a restart's setup prunes them):
            # register it again, once.
            if not (register and resource is not None and e.error == "invalid_target"):
                raise
            self._resources.discard((realm, resource))
            self.register_resource(resource, realms=(realm,))
            return self._json("POST", self.metadata(realm)["token_endpoint"], form=form)

    def token(self, user: str, resource: str | None, short_lived: bool = False, realm: str = REALM) -> str:
        """An access token for `user` whose aud is exactly `resource` (None:
        no resource indicator; aud is then the registered resources' client
        IDs and `account`). short_lived: it expires after
        MCPK_OIDC_SHORT_TOKEN_SECONDS."""
        return self.token_response(user, resource, short_lived=short_lived, realm=realm)["access_token"]

    # --- dynamic registration and the code flow ------------------------------

    def register_client(self, redirect_uri: str, realm: str = REALM, **metadata) -> dict:
        """Anonymous dynamic client registration (RFC 7591), as MCP clients
        send it (a public client with a loopback redirect URI, by default)."""
        body = {"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                "client_name": "mcpk e2e", **metadata}
        return self._json("POST", self.metadata(realm)["registration_endpoint"], body=body)

    def authorization_url(self, client_id: str, redirect_uri: str, resource: str | None, realm: str = REALM,
                          scope: str | None = None) -> tuple[str, str, str]:
        """An authorization request with PKCE S256: (url, code_verifier, state)."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                 "code_challenge": challenge, "code_challenge_method": "S256", "state": state}
        if scope:
            query["scope"] = scope
        if resource:
            query["resource"] = resource
        return self.metadata(realm)["authorization_endpoint"] + "?" + urllib.parse.urlencode(query), verifier, state

    def exchange_code(self, code: str, client_id: str, redirect_uri: str, verifier: str, resource: str | None,
                      realm: str = REALM) -> dict:
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        if resource:
            form["resource"] = resource
        return self._json("POST", self.metadata(realm)["token_endpoint"], form=form)

    def headless_login(self, authorization_url: str, user: str, password: str | None = None, timeout: float = 30.0) -> str:
        """Sign `user` in as a browser would, without one: GET the
        authorization URL (Keycloak's login page), post its form with the
        cookies it set, accept the consent page if one comes, and return the
        `code` of the redirect to the client (never followed). Raises
        LoginError with Keycloak's message if the sign-in fails."""
        return self.headless_redirect(authorization_url, user, password=password, timeout=timeout)["code"]

    def headless_redirect(self, authorization_url: str, user: str, password: str | None = None,
                          timeout: float = 30.0) -> dict[str, str]:
        """headless_login's redirect to the client, as its query parameters
        (code, state, iss: Keycloak sends RFC 9207's iss, which the Python
        SDK checks)."""
        jar = http.cookiejar.CookieJar()
        opener = self._opener(jar)
        origin = urllib.parse.urlsplit(self.url)
        page_url = authorization_url
        status, headers, raw = self._open(opener, "GET", page_url, timeout=timeout)
        form = {"username": user, "password": password if password is not None else self.password(user)}
        for _ in range(6):
            if status in (301, 302, 303, 307, 308):
                location = urllib.parse.urljoin(page_url, headers["Location"])
                target = urllib.parse.urlsplit(location)
                if (target.scheme, target.netloc) == (origin.scheme, origin.netloc):
                    page_url = location
                    status, headers, raw = self._open(opener, "GET", page_url, timeout=timeout)
                    continue
                query = urllib.parse.parse_qs(target.query)
                if "code" in query:
                    return {k: v[0] for k, v in query.items()}
                raise LoginError(f"redirected to the client without a code: error={query.get('error', ['?'])[0]}, "
                                 f"{query.get('error_description', [''])[0]}")
            if status != 200:
                raise LoginError(f"HTTP {status} from the identity provider")
            page = _Forms()
            page.feed(raw.decode(errors="replace"))
            login = next((f for f in page.forms if f["id"] == "kc-form-login"), None)
            consent = next((f for f in page.forms if "accept" in f["buttons"]), None)
            if login is not None and form is not None:
                fields = {**login["fields"], **form}
                form = None  # the credentials are posted once; a second login page is a refusal
                page_url = urllib.parse.urljoin(page_url, login["action"])
                status, headers, raw = self._open(opener, "POST", page_url, form=fields, timeout=timeout)
            elif consent is not None:
                fields = {**consent["fields"], "accept": consent["buttons"]["accept"] or "Yes"}
                page_url = urllib.parse.urljoin(page_url, consent["action"])
                status, headers, raw = self._open(opener, "POST", page_url, form=fields, timeout=timeout)
            else:
                raise LoginError("sign-in refused: " + ("; ".join(page.errors) or "an unexpected page"))
        raise LoginError("too many steps before the redirect to the client")

    # --- signing keys -----------------------------------------------------------

    def signing_kid(self, realm: str = REALM) -> str:
        return keycloak_realm.active_signing_kid(self.admin(), realm)

    def rotate_keys(self, realm: str = REALM) -> str:
        """A new RSA signing key above the others: new tokens carry its kid
        (returned); the old key stays in the JWKS and keeps verifying."""
        return keycloak_realm.rotate_key(self.admin(), realm)

    def restore_keys(self, realm: str = REALM) -> None:
        """Undo rotate_keys (the added keys leave the JWKS)."""
        keycloak_realm.restore_keys(self.admin(), realm)

    @contextlib.contextmanager
    def rotated_keys(self, realm: str = REALM):
        try:
            yield self.rotate_keys(realm)
        finally:
            self.restore_keys(realm)

    # --- the identity provider unreachable ---------------------------------------

    def java_pid(self) -> int:
        """Keycloak's java process (the PID file e2e/stack wrote), checked to
        still be this ground's."""
        pid = int(pathlib.Path(self.env["MCPK_KEYCLOAK_PID_FILE"]).read_text())
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if self.state_dir not in cmdline:
            raise RuntimeError(f"PID {pid} is not this ground's Keycloak any more")
        return pid

    def stop(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered
        (a hung identity provider). resume() undoes it."""
        os.kill(self.java_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.java_pid(), signal.SIGCONT)

    @contextlib.contextmanager
    def stopped(self):
        self.stop()
        try:
            yield
        finally:
            self.resume()


_ground = None


def ground() -> OidcGround:
    """The ground of the stack's env file (MCPK_STACK_ENV), made once."""
    global _ground
    if _ground is None:
        _ground = OidcGround(read_stack_env())
    return _ground


def token(user: str, resource: str | None, short_lived: bool = False, realm: str = REALM) -> str:
    return ground().token(user, resource, short_lived=short_lived, realm=realm)


def headless_login(authorization_url: str, user: str, password: str | None = None) -> str:
    return ground().headless_login(authorization_url, user, password=password)


def register_resource(url: str) -> None:
    ground().register_resource(url)


def rotate_keys(realm: str = REALM) -> str:
    return ground().rotate_keys(realm)


def restore_keys(realm: str = REALM) -> None:
    ground().restore_keys(realm)


def rotated_keys(realm: str = REALM):
    return ground().rotated_keys(realm)


def stop() -> None:
    ground().stop()


def resume() -> None:
    ground().resume()


def stopped():
    return ground().stopped()


class SdkSignIn:
    """The Python SDK's redirect and callback handlers (for
    mcp.client.auth.OAuthClientProvider), with Keycloak's login form posted
    instead of a browser: the redirect's code, state and iss (RFC 9207,
    which the SDK checks) come back as they would to the client's loopback
    redirect URI. Keeps what it saw, for assertions."""

    def __init__(self, user: str, password: str | None = None):
        self.user, self.password = user, password
        self.authorization_urls: list[str] = []
        self.redirects: list[dict[str, str]] = []

    async def redirect(self, authorization_url: str) -> None:
        import anyio

        self.authorization_urls.append(authorization_url)
        # headless_redirect blocks: in a thread, as a browser is beside the client.
        self.redirects.append(await anyio.to_thread.run_sync(
            lambda: ground().headless_redirect(authorization_url, self.user, password=self.password)))

    async def callback(self):
        from mcp.shared.auth import AuthorizationCodeResult

        if not self.redirects:
            raise LoginError("the SDK asked for the code before sending the user to sign in")
        last = self.redirects[-1]
        return AuthorizationCodeResult(code=last["code"], state=last.get("state"), iss=last.get("iss"))


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def signed_in_session(url: str, user: str, work):
    """Runs `work(session)` in an MCP session of the official Python SDK on
    the server at `url` (its MCP endpoint), which signs `user` in by itself
    (it starts with no token: 401, metadata, registration, PKCE). Returns
    (work's result, the SdkSignIn, the MemoryStorage)."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata

    sign_in, storage = SdkSignIn(user), MemoryStorage()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(client_name="mcpk e2e (python sdk)", redirect_uris=["http://127.0.0.1:33418/callback"],
                                            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                            token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=sign_in.redirect, callback_handler=sign_in.callback)
    client = httpx2.AsyncClient(auth=provider, verify=ground().ssl, timeout=60)
    async with client:
        async with streamable_http_client(url, http_client=client) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session), sign_in, storage


if __name__ == "__main__":
    # e2e/run: `oidc_ground.py sign-in URL USER` signs USER in with the
    # Python SDK and prints the tools the server lists for them.
    import anyio

    if sys.argv[1:2] != ["sign-in"] or len(sys.argv) != 4:
        sys.exit("usage: oidc_ground.py sign-in MCP_URL USER")

    async def tools(session):
        return sorted(t.name for t in (await session.list_tools()).tools)

    listed, _, _ = anyio.run(signed_in_session, sys.argv[2], sys.argv[3], tools)
    print(" ".join(listed))
