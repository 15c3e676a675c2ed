//! The organization's identity provider, set once by the platform team:
//! servers whose `spec.auth.oidc` names no issuer use it as it is (its CA,
//! claim mappings and scopes), so that a tenant only says where its server
//! is reachable (`resource`). Servers without `spec.auth.oidc` are not
//! touched by it.

use serde::{Deserialize, Serialize};

use crate::crd::{ClaimMappings, ConfigMapKeyRef};

/// `auth` of the operator's config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorAuth {
    /// The default identity provider; absent: a server's spec.auth.oidc
    /// must name its own issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<DefaultIdentityProvider>,
}

/// The organization's OpenID Connect provider. Its CA must reach every
/// server's sidecar (the sidecar fetches the provider's keys itself), so it
/// is given as PEM here (the operator writes it into each server's own
/// ConfigMap) or as a ConfigMap of one name present in every server's
/// namespace (what cert-manager's trust-manager distributes) — never as a
/// file of the operator's pod, which no sidecar can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultIdentityProvider {
    /// The issuer URL (`https://`), exactly as its tokens' `iss`.
    pub issuer: String,
    /// The PEM CA bundle that signs the provider's certificate (a CA is
    /// public). Absent, and no caConfigMapRef: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// A ConfigMap key holding the CA bundle, read from the server's own
    /// namespace (e.g. a trust-manager Bundle's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
    /// Claims to Kubernetes user and groups; default `sub` and `groups`,
    /// prefix `oidc:`. Keep them as the apiserver's AuthenticationConfiguration
    /// maps the same provider, so that one person has one name in RBAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimMappings>,
    /// Scopes clients should ask for (published as `scopes_supported`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl DefaultIdentityProvider {
    /// What is wrong with it, as (field below `auth.oidc`, problem): the
    /// operator refuses to start with it rather than render a config every
    /// sidecar would refuse.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !self.issuer.starts_with("https://")
            || self
                .issuer
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@'))
            || self.issuer.len() <= "https://".len()
        {
            return Some((
                "issuer",
                "must be an https:// URL without credentials, query or fragment".into(),
            ));
        }
        if self.ca_bundle.is_some() && self.ca_config_map_ref.is_some() {
            return Some((
                "caBundle",
                "name the CA in caBundle or caConfigMapRef, not both".into(),
            ));
        }
        if let Some(pem) = &self.ca_bundle
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            return Some((
                "caBundle",
                "must hold PEM certificates (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let mappings = self.claims.clone().unwrap_or_default();
        for (field, mapping) in [
            ("claims.username", &mappings.username),
            ("claims.groups", &mappings.groups),
        ] {
            if let Some(m) = mapping {
                if m.claim.trim().is_empty() || m.claim.chars().any(char::is_whitespace) {
                    return Some((field, "must name a claim".into()));
                }
                if m.prefix
                    .as_deref()
                    .is_some_and(|p| p.chars().any(char::is_whitespace))
                {
                    return Some((field, "a prefix holds no whitespace".into()));
                }
            }
        }
        if self.scopes.iter().any(|s| {
            s.is_empty()
                || s.chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        }) {
            return Some(("scopes", "each is one scope token (RFC 6749)".into()));
        }
        None
    }
}
