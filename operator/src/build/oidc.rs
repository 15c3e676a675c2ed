//! `spec.auth.oidc` rendered: the identity provider the sidecar verifies
//! tokens of (the server's own, or the operator's default), its CA as a
//! mounted file, the public host the sidecar must accept, and the names
//! the provider's users and groups have in RBAC.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use mcp_kafka_sidecar::config::OidcConfig;

use crate::config::OperatorConfig;
use crate::crd::{ClaimMappings, ConfigMapKeyRef, McpKafkaServerSpec, SecretKeyRef};

const CA_DIR: &str = "/etc/mcp-kafka/oidc-ca";
/// The key of the operator default's inline CA in the server's ConfigMap,
/// which is mounted at the config's directory.
pub(super) const INLINE_CA_KEY: &str = "oidc-ca.crt";

/// Where the provider's CA comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    /// The system's roots.
    System,
    Secret(SecretKeyRef),
    ConfigMap(ConfigMapKeyRef),
    /// PEM from the operator's config, written into the server's ConfigMap.
    Inline(String),
}

/// The sign-in a server gets: the sidecar's `auth.oidc`, and its CA.
#[derive(Debug, Clone, PartialEq)]
pub struct SignIn {
    pub config: OidcConfig,
    pub ca: CaSource,
}

/// Why a server asking for sign-in does not get it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignInProblem {
    #[error(
        "spec.auth.oidc names no issuer and the operator's config sets no default identity provider (auth.oidc): sign-in is not wired, Kubernetes tokens keep working"
    )]
    NoIssuer,
}

/// The sign-in of a server: None without spec.auth.oidc (exactly as
/// before); the spec's own provider when it names an issuer; else the
/// operator's default one, as the platform team set it up.
pub fn resolve(
    spec: &McpKafkaServerSpec,
    config: &OperatorConfig,
) -> Result<Option<SignIn>, SignInProblem> {
    let Some(oidc) = spec.auth.as_ref().and_then(|a| a.oidc.as_ref()) else {
        return Ok(None);
    };
    let (issuer, ca, claims, scopes) = match &oidc.issuer {
        Some(issuer) => {
            let ca = match (&oidc.ca_secret_ref, &oidc.ca_config_map_ref) {
                (Some(secret), _) => CaSource::Secret(secret.clone()),
                (None, Some(config_map)) => CaSource::ConfigMap(config_map.clone()),
                (None, None) => CaSource::System,
            };
            (issuer.clone(), ca, oidc.claims.clone(), oidc.scopes.clone())
        }
        None => {
            let default = config.auth.oidc.as_ref().ok_or(SignInProblem::NoIssuer)?;
            let ca = match (&default.ca_bundle, &default.ca_config_map_ref) {
                (Some(pem), _) => CaSource::Inline(pem.clone()),
                (None, Some(config_map)) => CaSource::ConfigMap(config_map.clone()),
                (None, None) => CaSource::System,
            };
            (
                default.issuer.clone(),
                ca,
                default.claims.clone(),
                default.scopes.clone(),
            )
        }
    };
    let ClaimMappings { username, groups } = claims.unwrap_or_default();
    let mapping = |m: Option<crate::crd::ClaimMapping>, default_claim: String| match m {
        Some(m) => (m.claim, m.prefix.unwrap_or_else(OidcConfig::default_prefix)),
        None => (default_claim, OidcConfig::default_prefix()),
    };
    let (username_claim, username_prefix) = mapping(username, OidcConfig::default_username_claim());
    let (groups_claim, groups_prefix) = mapping(groups, OidcConfig::default_groups_claim());
    let ca_file = match &ca {
        CaSource::System => None,
        CaSource::Secret(_) | CaSource::ConfigMap(_) => {
            Some(PathBuf::from(format!("{CA_DIR}/ca.crt")))
        }
        CaSource::Inline(_) => Some(PathBuf::from(format!(
            "{}/{INLINE_CA_KEY}",
            super::workload::CONFIG_DIR
        ))),
    };
    Ok(Some(SignIn {
        config: OidcConfig {
            issuer,
            ca_file,
            resource: oidc.resource.clone(),
            audiences: oidc.audiences.clone(),
            username_claim,
            username_prefix,
            groups_claim,
            groups_prefix,
            scopes,
            clock_skew_seconds: OidcConfig::default_clock_skew_seconds(),
            refresh_seconds: OidcConfig::default_refresh_seconds(),
            keys_max_age_seconds: OidcConfig::default_keys_max_age_seconds(),
            fetch_timeout_ms: OidcConfig::default_fetch_timeout_ms(),
        },
        ca,
    }))
}

/// The host of the public resource URL, as rmcp's DNS-rebinding guard
/// compares `Host` (lowercase, without the port: a proxy in front may send
/// the public port or none).
pub fn public_host(resource: &str) -> Option<String> {
    let rest = resource.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        // An IPv6 literal: up to its closing bracket.
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The volume and mount of a CA from a Secret or ConfigMap of the server's
/// namespace (an inline CA rides in the server's ConfigMap, already mounted).
pub(super) fn volumes(sign_in: &SignIn) -> Vec<(Volume, VolumeMount)> {
    let name = "oidc-ca";
    let item = |key: &str| {
        Some(vec![KeyToPath {
            key: key.into(),
            path: "ca.crt".into(),
            mode: None,
        }])
    };
    let volume = match &sign_in.ca {
        CaSource::System | CaSource::Inline(_) => return Vec::new(),
        CaSource::Secret(secret) => Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: item(&secret.key),
                // Readable by the pod's group (fsGroup) only, as the other Secrets.
                default_mode: Some(0o440),
                optional: None,
            }),
            ..Default::default()
        },
        CaSource::ConfigMap(config_map) => Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.name.clone(),
                items: item(&config_map.key),
                // A CA is public: the default mode is fine.
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    vec![(
        volume,
        VolumeMount {
            name: name.into(),
            mount_path: CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )]
}

/// The Kubernetes name of a provider's user or group: its prefix, then the
/// name as the provider gives it (what the sidecar asks RBAC about).
pub fn prefixed(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}
