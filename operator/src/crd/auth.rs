//! `spec.auth`: how people sign in to a server besides Kubernetes tokens.
//! With `spec.auth.oidc` the sidecar is an OAuth resource server (the MCP
//! authorization spec): it publishes Protected Resource Metadata naming the
//! identity provider, verifies the provider's access tokens itself, and
//! asks the same SubjectAccessReview per tool for the user and groups the
//! token names (with a prefix).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigMapKeyRef, SecretKeyRef};

/// Sign-in settings of a server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Sign-in with an OpenID Connect identity provider (the MCP
    /// authorization spec). Kubernetes tokens keep working alongside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSpec>,
}

/// An identity provider whose access tokens this server accepts, and the
/// server's public URL. Without `issuer`, the operator's default identity
/// provider (its config's `auth.oidc`) is used as the platform team set it
/// up: its CA, claim mappings and scopes; the server then names only
/// `resource` (and `audiences`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.caSecretRef) || !has(self.caConfigMapRef)")
        .message("name the CA in caSecretRef or caConfigMapRef, not both"),
    validation = Rule::new("has(self.issuer) || !(has(self.caSecretRef) || has(self.caConfigMapRef) || has(self.claims) || has(self.scopes))")
        .message("caSecretRef, caConfigMapRef, claims and scopes describe an issuer: set issuer too, or leave them out to use the operator's default identity provider as it is"),
    validation = Rule::new("self.resource.startsWith('https://') || self.resource.matches('^http://(localhost|127[.]((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){2}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|\\\\[::1\\\\])([:/].*)?$')")
        .message("resource must be an https:// URL unless its host is loopback (localhost, 127.x.x.x, [::1])")
)]
pub struct OidcSpec {
    /// The provider's issuer URL (`https://`), exactly as its tokens'
    /// `iss` (e.g. `https://sso.example.com/realms/acme`). Absent: the
    /// operator's default identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^https://[^\s?#@/]+(/[^\s?#@]*)?$"),
        length(max = 2048)
    )]
    pub issuer: Option<String>,
    /// A Secret key holding the PEM CA bundle that signs the provider's
    /// certificate. Absent (and no caConfigMapRef): the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A ConfigMap key holding that CA bundle instead (a CA is not secret;
    /// trust bundles are often ConfigMaps, e.g. cert-manager's trust-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
    /// This server's public MCP URL, exactly as clients connect to it (e.g.
    /// `https://orders-mcp.example.com/mcp`, through your Ingress or
    /// Gateway): the `resource` of its Protected Resource Metadata (RFC
    /// 9728) and the audience (RFC 8707) a token must carry. `http://` only
    /// on a loopback host (a port-forward). Its host is accepted in the
    /// `Host` header.
    #[schemars(
        regex(pattern = r"^https?://[^\s?#@/]+(/[^\s?#@]*)?$"),
        length(max = 2048)
    )]
    pub resource: String,
    /// Further `aud` values accepted besides `resource` (for a provider
    /// that sets the audience by a mapper rather than from the `resource`
    /// parameter). Each should name this server alone: a token with any of
    /// them is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = 8),
        inner(regex(pattern = r"^\S+$"), length(min = 1, max = 2048))
    )]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("audiences must not repeat"))]
    pub audiences: Vec<String>,
    /// How a token's claims become the Kubernetes user and groups that
    /// RBAC authorizes, as the apiserver's AuthenticationConfiguration
    /// `claimMappings`. Default: username from `sub`, groups from
    /// `groups`, both with the prefix `oidc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimMappings>,
    /// Scopes clients should ask for (published as `scopes_supported`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = 16),
        // RFC 6749's scope-token.
        inner(regex(pattern = r"^[!#-\[\]-~]+$"), length(min = 1, max = 128))
    )]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))").message("scopes must not repeat"))]
    pub scopes: Vec<String>,
}

/// Claims to Kubernetes identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMappings {
    /// The user. Default: claim `sub`, prefix `oidc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<ClaimMapping>,
    /// The groups (a string or a list of strings). Default: claim
    /// `groups`, prefix `oidc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<ClaimMapping>,
}

/// One claim and the prefix put before its value(s).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// The claim's name (a top-level claim of the token).
    #[schemars(regex(pattern = r"^\S+$"), length(min = 1, max = 256))]
    pub claim: String,
    /// Put before the value, so that the provider's users cannot pass for
    /// Kubernetes users or ServiceAccounts (`oidc:alice`). Default
    /// `oidc:`; `""` puts none (then a provider user named like a
    /// Kubernetes user is that user, for this server's tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\S*$"), length(max = 64))]
    pub prefix: Option<String>,
}

/// The sign-in the sidecar's config wires, as status reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// The identity provider whose tokens are accepted.
    pub issuer: String,
    /// The server's public MCP URL (what clients connect to).
    pub resource: String,
    /// Where its Protected Resource Metadata (RFC 9728) is served: what an
    /// MCP client discovers the identity provider from.
    pub metadata_url: String,
}
