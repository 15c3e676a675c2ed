//! `spec.schemaRegistry` rendered: the sidecar's `schemaRegistry` config,
//! with each credential and the CA as a file of a volume mounted from its
//! Secret (or the CA's ConfigMap), one key each under a fixed name, so that
//! nothing else in those objects reaches the pod.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use mcp_kafka_sidecar::config::{BasicAuthFiles, SchemaRegistryConfig};

use crate::crd::SchemaRegistrySpec;

const BASIC_AUTH_DIR: &str = "/etc/mcp-kafka/schema-registry-basic-auth";
const TOKEN_DIR: &str = "/etc/mcp-kafka/schema-registry-token";
const CA_DIR: &str = "/etc/mcp-kafka/schema-registry-ca";

fn file(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(format!("{dir}/{name}"))
}

/// The sidecar's registry settings (paths of the mounted files).
pub(super) fn config(spec: &SchemaRegistrySpec) -> SchemaRegistryConfig {
    SchemaRegistryConfig {
        url: spec.url.clone(),
        basic_auth: spec.basic_auth_secret_ref.as_ref().map(|_| BasicAuthFiles {
            username_file: file(BASIC_AUTH_DIR, "username"),
            password_file: file(BASIC_AUTH_DIR, "password"),
        }),
        bearer_token_file: spec
            .bearer_token_secret_ref
            .as_ref()
            .map(|_| file(TOKEN_DIR, "token")),
        ca_file: (spec.ca_secret_ref.is_some() || spec.ca_config_map_ref.is_some())
            .then(|| file(CA_DIR, "ca.crt")),
        // Admission keeps it within 100..=30000.
        timeout_ms: spec
            .timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .unwrap_or_else(SchemaRegistryConfig::default_timeout_ms),
    }
}

/// The volumes and mounts those files come from.
pub(super) fn volumes(spec: &SchemaRegistrySpec) -> Vec<(Volume, VolumeMount)> {
    let items = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(key, path)| KeyToPath {
                    key: (*key).into(),
                    path: (*path).into(),
                    mode: None,
                })
                .collect(),
        )
    };
    // Readable by the pod's group (fsGroup) only, as the other Secrets.
    let secret = |name: &str, items: Option<Vec<KeyToPath>>| SecretVolumeSource {
        secret_name: Some(name.to_string()),
        items,
        default_mode: Some(0o440),
        optional: None,
    };
    let mount = |name: &str, dir: &str| VolumeMount {
        name: name.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut out = Vec::new();
    if let Some(basic) = &spec.basic_auth_secret_ref {
        let name = "schema-registry-basic-auth";
        out.push((
            Volume {
                name: name.into(),
                secret: Some(secret(
                    &basic.name,
                    items(&[("username", "username"), ("password", "password")]),
                )),
                ..Default::default()
            },
            mount(name, BASIC_AUTH_DIR),
        ));
    }
    if let Some(token) = &spec.bearer_token_secret_ref {
        let name = "schema-registry-token";
        out.push((
            Volume {
                name: name.into(),
                secret: Some(secret(&token.name, items(&[(&token.key, "token")]))),
                ..Default::default()
            },
            mount(name, TOKEN_DIR),
        ));
    }
    let name = "schema-registry-ca";
    if let Some(ca) = &spec.ca_secret_ref {
        out.push((
            Volume {
                name: name.into(),
                secret: Some(secret(&ca.name, items(&[(&ca.key, "ca.crt")]))),
                ..Default::default()
            },
            mount(name, CA_DIR),
        ));
    } else if let Some(ca) = &spec.ca_config_map_ref {
        out.push((
            Volume {
                name: name.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: ca.name.clone(),
                    items: items(&[(&ca.key, "ca.crt")]),
                    // A CA is public: the default mode is fine.
                    ..Default::default()
                }),
                ..Default::default()
            },
            mount(name, CA_DIR),
        ));
    }
    out
}
